"""Self-verifying run folders: a finished run whose files disagree is refused by the rerun and by every
report (tables, plots, paper tables, the notebook), in one line naming the folder."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ssd.errors import SSDError
from ssd.report import load_runs
from ssd.report.paper import main as paper_main
from ssd.report.plots import main as plots_main
from ssd.report.tables import main as tables_main
from ssd.results.runfolder import RunFolder
from ssd.results.summary import recorded_aggregate
from ssd.results.verify import verify
from ssd.run import run_job
from tests.helpers import execute_notebook, tiny_job


@pytest.fixture(scope="module")
def finished(tiny_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_job(tiny_job(tiny_checkpoints["llada"], tmp_path_factory.mktemp("runs")))


def copy_run(finished: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "runs" / finished.name
    shutil.copytree(finished, folder)
    return folder


def edit_summary(folder: Path, **changes: Any) -> None:
    summary = json.loads((folder / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps(summary | changes, indent=2))


def edit_line(folder: Path, index: int, edit: Callable[[str], str]) -> None:
    lines = (folder / "samples.jsonl").read_text().splitlines()
    lines[index] = edit(lines[index])
    (folder / "samples.jsonl").write_text("\n".join(lines) + "\n")


def drop_last_line(folder: Path) -> None:
    lines = (folder / "samples.jsonl").read_text().splitlines(keepends=True)
    (folder / "samples.jsonl").write_text("".join(lines[:-1]))


def flip_correct(line: str) -> str:
    record = json.loads(line)
    return json.dumps(record | {"correct": not record["correct"]}, ensure_ascii=False)


def test_the_summary_records_what_it_was_computed_from(finished: Path) -> None:
    summary = json.loads((finished / "summary.json").read_text())
    data = (finished / "samples.jsonl").read_bytes()
    assert summary["computed_from"] == {
        "file": "samples.jsonl",
        "records": 3,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    verify(finished)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "edited accuracy": lambda f: edit_summary(f, accuracy=0.123),
    "edited accuracy, no digest": lambda f: edit_summary(f, accuracy=0.123, computed_from=None),
    "edited sample": lambda f: edit_line(f, 1, flip_correct),
    "corrupt middle line": lambda f: edit_line(f, 1, lambda line: line[: len(line) // 2]),
    "a sample removed": drop_last_line,
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_the_rerun_refuses_a_damaged_finished_run(
    damage: str, finished: Path, tmp_path: Path, tiny_checkpoints: dict[str, Path], capsys: Any
) -> None:
    folder = copy_run(finished, tmp_path)
    DAMAGE[damage](folder)
    with pytest.raises(SSDError) as info:
        run_job(tiny_job(tiny_checkpoints["llada"], folder.parent))
    message = str(info.value)
    assert str(folder) in message and "\n" not in message
    assert "done:" not in capsys.readouterr().out


@pytest.fixture(scope="module")
def paired(tiny_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished SSD job timed paired against its stepwise reference."""
    out = tmp_path_factory.mktemp("paired")
    return run_job(tiny_job(tiny_checkpoints["llada"], out, decoder="ssd", **{"timing.paired": "true"}))


def nested_edit(folder: Path, section: str, **changes: Any) -> None:
    summary = json.loads((folder / "summary.json").read_text())
    edit_summary(folder, **{section: summary[section] | changes})


def test_verify_recomputes_with_the_writers_aggregation(paired: Path, tmp_path: Path) -> None:
    """What the runner wrote is exactly what the summary's aggregation gives the samples with the recorded
    device, threads and cores; a run written before the timing figures existed is checked by the same
    aggregation, on the keys it holds."""
    summary = json.loads((paired / "summary.json").read_text())
    expected = recorded_aggregate(RunFolder(paired).read_samples(), summary)
    assert {key: summary[key] for key in expected} == expected
    folder = copy_run(paired, tmp_path)
    older = {k: v for k, v in summary.items() if k not in ("timing", "paired_speedup", "computed_from")}
    (folder / "summary.json").write_text(json.dumps(older, indent=2))
    verify(folder)
    edit_summary(folder, mean_nfe=summary["mean_nfe"] + 1)
    with pytest.raises(SSDError, match="mean_nfe"):
        verify(folder)


@pytest.mark.parametrize(
    "edit",
    [
        {"paired_speedup": {"median_speedup": 9.99}},
        {"paired_speedup": {"ci95": [9.0, 11.0]}},
        {"timing": {"contended": True, "contended_why": "edited"}},
        {"timing": {"wait_share": 0.5}},
    ],
    ids=["paired median", "paired interval", "contention verdict", "wait share"],
)
def test_an_edited_speed_verdict_is_refused(paired: Path, tmp_path: Path, edit: dict[str, Any]) -> None:
    """The paired speedup and the contention verdict are recomputed from the samples, with the device,
    threads and cores the job recorded: a summary that claims other ones is damaged."""
    verify(paired)
    summary = json.loads((paired / "summary.json").read_text())
    assert summary["paired_speedup"]["n"] == 3 and "usable_cores" in summary["timing"]
    folder = copy_run(paired, tmp_path)
    ((section, changes),) = edit.items()
    nested_edit(folder, section, **changes)
    with pytest.raises(SSDError, match=section) as info:
        verify(folder)
    assert str(folder) in str(info.value) and "\n" not in str(info.value)


def test_deleting_the_edited_summary_and_rerunning_recomputes_it(
    finished: Path, tmp_path: Path, tiny_checkpoints: dict[str, Path]
) -> None:
    folder = copy_run(finished, tmp_path)
    edit_summary(folder, accuracy=0.123)
    (folder / "summary.json").unlink()  # what the message says to do
    run_job(tiny_job(tiny_checkpoints["llada"], folder.parent))
    original = json.loads((finished / "summary.json").read_text())
    assert json.loads((folder / "summary.json").read_text())["accuracy"] == original["accuracy"]
    assert (folder / "samples.jsonl").read_bytes() == (finished / "samples.jsonl").read_bytes()


@pytest.mark.parametrize("damage", ["edited accuracy", "edited sample"])
def test_every_report_refuses_an_edited_finished_run(
    damage: str, finished: Path, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = copy_run(finished, tmp_path)
    runs = folder.parent
    for report in (tables_main, plots_main, paper_main):  # intact: every report reads it
        report(["--runs", str(runs), "--out", str(tmp_path / "out")])
    DAMAGE[damage](folder)
    with pytest.raises(SSDError, match=str(folder)):
        load_runs(runs)
    for report in (tables_main, plots_main, paper_main):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            report(["--runs", str(runs), "--out", str(tmp_path / "refused")])
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and len(err.splitlines()) == 1, err
        assert err.startswith("error: run folder ") and str(folder) in err
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").iterdir())
    with pytest.raises(Exception, match="is damaged"):  # nbclient's CellExecutionError, with our line
        execute_notebook(monkeypatch, SSD_RUNS=str(runs))
