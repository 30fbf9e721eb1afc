"""The run folder on its own: hashing, atomic writes, the torn-line and corruption rules, the summary."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from ssd.errors import SSDError
from ssd.results.provenance import environment, git_state
from ssd.results.runfolder import RunFolder, atomic_write_text, config_hash, run_name
from ssd.results.summary import summarize


def resolved(**top: Any) -> dict[str, Any]:
    cfg = {
        "model": {"name": "llada", "path": "ckpt", "dtype": "auto", "device": "auto"},
        "decoder": {
            "name": "stepwise",
            "gen_length": 32,
            "block_length": 8,
            "cache": "none",
            "temperature": 0.0,
        },
        "benchmark": {"name": "gsm8k", "num_fewshot": 0, "chat": True, "data_dir": "data"},
        "limit": 3,
        "seed": 0,
        "output_dir": "results/runs",
        "sweep": "adhoc",
        "extra": {},
    }
    cfg.update(top)
    return cfg


def record(
    sample_id: str, correct: bool = True, tokens: int = 4, nfe: int = 8, wall: float = 0.5
) -> dict[str, Any]:
    return {
        "id": sample_id,
        "correct": correct,
        "generated_tokens": tokens,
        "nfe": nfe,
        "wall_seconds": wall,
        "forward_batch_sizes": [1] * nfe,
        "accepted": [1] * tokens,
    }


def test_hash_ignores_where_but_nothing_else() -> None:
    base = config_hash(resolved())
    assert len(base) == 64
    assert config_hash(resolved(output_dir="/elsewhere")) == base
    assert config_hash(resolved(sweep="other")) != base  # a second sweep makes new run folders
    assert config_hash(resolved(seed=1)) != base
    assert config_hash(resolved(limit=4)) != base
    changed = resolved()
    changed["decoder"] = {**changed["decoder"], "cache": "prefix"}
    assert config_hash(changed) != base
    reordered = dict(reversed(list(resolved().items())))
    assert config_hash(reordered) == base


def test_run_name_and_folder() -> None:
    name = run_name(resolved())
    assert name == f"llada-gsm8k-stepwise-{config_hash(resolved())[:8]}"
    assert RunFolder.for_config(resolved(output_dir="/x/runs")).path == Path("/x/runs") / name


def test_append_and_read_back(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    assert folder.read_samples() == []
    folder.append_sample(record("a"))
    folder.append_sample({**record("b"), "completion": "ünïcode\nnewline"})
    assert folder.samples_file.read_text(encoding="utf-8").count("\n") == 2
    assert [r["id"] for r in folder.read_samples(["a", "b", "c"])] == ["a", "b"]
    assert folder.read_samples()[1]["completion"] == "ünïcode\nnewline"


def test_torn_last_line_is_cut_off_the_file(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    folder.append_sample(record("a"))
    good = folder.samples_file.read_bytes()
    with open(folder.samples_file, "ab") as f:
        f.write(json.dumps(record("b")).encode()[:17])
    assert [r["id"] for r in folder.read_samples()] == ["a"]
    assert folder.samples_file.read_bytes() == good
    folder.append_sample(record("b"))
    assert [r["id"] for r in folder.read_samples()] == ["a", "b"]


@pytest.mark.parametrize(
    ("lines", "line", "what"),
    [
        ([json.dumps(record("a")), '{"id": "b", "nfe"', json.dumps(record("c"))], 2, "not a JSON record"),
        ([json.dumps(record("a")), json.dumps(record("a"))], 2, "appears a second time"),
        (["[1, 2]"], 1, "no string 'id'"),
        ([json.dumps(record("a")), ""], 2, "not a JSON record"),
        ([json.dumps(record("zz"))], 1, "not one of this job's samples"),
    ],
)
def test_damage_is_one_line_naming_file_and_line(
    tmp_path: Path, lines: list[str], line: int, what: str
) -> None:
    folder = RunFolder(tmp_path)
    folder.samples_file.write_text("\n".join(lines) + "\n")
    before = folder.samples_file.read_bytes()
    with pytest.raises(SSDError) as info:
        folder.read_samples(["a", "b", "c"])
    message = str(info.value)
    assert f"{folder.samples_file} line {line}: " in message and what in message
    assert f"delete {tmp_path}" in message and "\n" not in message
    assert folder.samples_file.read_bytes() == before  # damage is reported, never "repaired"


def test_write_config_records_once_and_rejects_a_different_one(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    folder.write_config(resolved())
    assert yaml.safe_load(folder.config_file.read_text()) == resolved()
    mtime = folder.config_file.stat().st_mtime_ns
    folder.write_config(resolved(output_dir="/moved"))  # same job, seen from another output folder
    assert folder.config_file.stat().st_mtime_ns == mtime
    with pytest.raises(SSDError, match="differs from this job's config"):
        folder.write_config(resolved(seed=7))
    folder.config_file.write_text("model: [unclosed\n")
    with pytest.raises(SSDError, match="not valid YAML"):
        folder.write_config(resolved())


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_summary_is_a_pure_function_of_the_records() -> None:
    records = [
        record("a", True, tokens=10, nfe=10, wall=1.0),
        record("b", False, tokens=6, nfe=2, wall=3.0),
        record("c", True, tokens=2, nfe=6, wall=0.0),
    ]
    s = summarize(records)
    assert s["n_samples"] == 3
    assert s["accuracy"] == pytest.approx(2 / 3)
    assert s["throughput_tokens_per_s"] == pytest.approx(18 / 4.0)
    assert s["tokens_per_forward"] == pytest.approx(18 / 18)
    assert s["mean_nfe"] == pytest.approx(6.0) and s["mean_wall_seconds"] == pytest.approx(4 / 3)
    assert s["total_forward_rows"] == 18 and s["mean_accepted"] == pytest.approx(1.0)
    assert summarize(records) == s
    empty = summarize([])
    assert empty["n_samples"] == 0 and empty["accuracy"] is None and empty["throughput_tokens_per_s"] is None


def test_forward_shapes_are_counted_only_when_every_sample_recorded_them() -> None:
    a = record("a", True, tokens=8, nfe=3, wall=1.0) | {"forward_batch_sizes": [1, 4, 4]}
    b = record("b", True, tokens=8, nfe=2, wall=1.0) | {"forward_batch_sizes": [1, 5]}
    a["forward_full_rows"], b["forward_full_rows"] = [1, 0, 1], [1, 1]
    assert summarize([a, b])["forward_shape_histogram"] == {"1/1": 2, "4/0": 1, "4/1": 1, "5/1": 1}
    assert summarize([a, b | {"forward_full_rows": []}])["forward_shape_histogram"] == {}


def test_lock_refuses_a_second_holder(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    with folder.lock(), pytest.raises(SSDError, match="in use by another running job"), folder.lock():
        pass
    with folder.lock():  # released
        pass


def test_environment_record_is_complete_and_serialisable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    env = environment("cpu")
    json.dumps(env)
    assert env["slurm_job_id"] == "4242" and env["hostname"] and env["timestamp"]
    assert {"python", "torch", "transformers", "ssd"} <= set(env["versions"])
    assert env["versions"]["ssd"] and env["hardware"]["device"] == "cpu" and env["hardware"]["device_name"]
    assert set(env["git"]) == {"commit", "dirty"}
    package = tmp_path / "ssd"
    package.mkdir()
    assert git_state(package) == {"commit": None, "dirty": None}  # not a checkout: null, not a failure


def test_git_state_of_a_checkout(tmp_path: Path) -> None:
    if os.system("git --version > /dev/null 2>&1") != 0:
        pytest.skip("no git")
    package = tmp_path / "ssd"
    package.mkdir()
    (package / "__init__.py").write_text("")
    git = f"git -C {tmp_path} -c user.email=t@t -c user.name=t"
    assert os.system(f"{git} init -q && {git} add -A && {git} commit -qm init") == 0
    state = git_state(package)
    assert len(state["commit"]) == 40 and state["dirty"] is False
    (package / "new.py").write_text("")
    assert git_state(package)["dirty"] is True


def test_damage_before_a_torn_tail_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    folder.samples_file.write_text('{"id": "a"}\nnot json\n{"id": "c", "to')
    before = folder.samples_file.read_bytes()
    with pytest.raises(SSDError, match="line 2"):
        folder.read_samples()
    assert folder.samples_file.read_bytes() == before
