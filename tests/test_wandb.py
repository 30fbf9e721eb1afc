"""The W&B mirror in offline mode: one W&B run per job, grouped by sweep, holding the run folder's config,
summary and samples; online without a key falls back to offline with one warning; a failing W&B never
costs a result. What is checked is what wandb wrote offline: the run's `.wandb` record log (wandb 0.31
keeps the config and summary only there until `wandb sync`) and the samples table under files/.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ssd.config import CacheMode, GSM8KConfig, ModelConfig, RunConfig, StepwiseConfig, WandbConfig, WandbMode
from ssd.results import wandb_mirror
from ssd.run import run_job

wandb = pytest.importorskip("wandb")
SWEEP = "wandb-test"


def job(ckpt: Path, data: Path, out: Path, cache: str, mode: str = "offline") -> RunConfig:
    return RunConfig(
        model=ModelConfig(name="llada", path=str(ckpt)),
        decoder=StepwiseConfig(gen_length=16, block_length=8, cache=CacheMode(cache)),
        benchmark=GSM8KConfig(num_fewshot=0, data_dir=str(data)),
        limit=2,
        output_dir=str(out),
        sweep=SWEEP,
        wandb=WandbConfig(mode=WandbMode(mode)),
    )


@pytest.fixture
def wandb_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Everything wandb writes goes below tmp_path; no API key anywhere it looks. wandb reads its
    environment once per process (a singleton), so it is torn down around each test."""
    wandb.teardown()
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_GROUP"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "wandb-home"
    for var, sub in (("WANDB_DIR", "dir"), ("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache")):
        monkeypatch.setenv(var, str(root / sub))
        (root / sub).mkdir(parents=True)
    monkeypatch.setenv("WANDB_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("NETRC", str(root / "no-netrc"))
    monkeypatch.setattr(wandb_mirror, "_warned", set())
    yield root / "dir"
    wandb.teardown()


def offline_runs(root: Path) -> list[Path]:
    return sorted((root / "wandb").glob("offline-run-*"))


def runs_for(root: Path, folders: list[Path]) -> list[Path]:
    """The offline run of each run folder, in the folders' order. Offline run directories are named by
    the second they started and a random id, so two runs started within a second sort either way."""
    by_name = {offline_run(d)["run"].display_name: d for d in offline_runs(root)}
    assert sorted(by_name) == sorted(f.name for f in folders)
    return [by_name[f.name] for f in folders]


def read_records(path: Path) -> list[Any]:
    """The records of a `.wandb` file: a 7-byte header, then LevelDB-log framing (32 KiB blocks; each
    chunk has a 4-byte checksum, a 2-byte length and a type: full, first, middle, last) around protobufs."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a .wandb file"
    pos, block, chunks, payloads = 7, 32768, [], []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:
            payloads.append(chunk)
        elif kind == 2:
            chunks = [chunk]
        elif kind == 3:
            chunks.append(chunk)
        elif kind == 4:
            payloads.append(b"".join([*chunks, chunk]))
    return [wandb_internal_pb2.Record.FromString(p) for p in payloads]


def finished_records(run_dir: Path, timeout: float = 60) -> list[Any]:
    """The run's records once its exit record is on disk (wandb's service process writes the file
    asynchronously: `finish()` can return before the last records land)."""
    deadline = time.monotonic() + timeout
    while True:
        logs = list(run_dir.glob("run-*.wandb"))
        records = read_records(logs[0]) if len(logs) == 1 else []
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def offline_run(run_dir: Path) -> dict[str, Any]:
    """What an offline run holds: its run record, config and final summary (as JSON values)."""
    found: dict[str, Any] = {"config": {}, "summary": {}}
    for record in finished_records(run_dir):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            found["run"] = record.run
            found["config"] |= {i.key: json.loads(i.value_json) for i in record.run.config.update}
        elif kind == "config":
            found["config"] |= {i.key: json.loads(i.value_json) for i in record.config.update}
        elif kind == "summary":
            for item in record.summary.update:
                found["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    (table,) = run_dir.glob("files/media/table/samples_*.table.json")
    found["table"] = json.loads(table.read_text())
    return found


def check_mirrored(run_dir: Path, folder: Path) -> None:
    """The offline run is the run folder's copy: config, summary metrics, one table row per sample."""
    mirrored = offline_run(run_dir)
    run = mirrored["run"]
    assert (run.display_name, run.run_group, run.project) == (folder.name, SWEEP, "ssd")
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config.pop("wandb")
    summary = json.loads((folder / "summary.json").read_text())
    environment = summary.pop("environment")
    assert {k: mirrored["config"][k] for k in config} == config
    assert mirrored["config"]["environment"] == environment
    assert mirrored["config"]["run_folder"] == str(folder.resolve())
    for key in ("accuracy", "n_samples", "tokens_per_forward", "config_hash", "peak_memory_bytes"):
        assert mirrored["summary"][key] == summary[key], key
    samples = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    table = mirrored["table"]
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    assert [(r["id"], r["correct"], r["nfe"]) for r in rows] == [
        (s["id"], s["correct"], s["nfe"]) for s in samples
    ]


def test_offline_one_run_per_job_grouped_by_sweep(
    tiny_checkpoints: dict[str, Path],
    data_dir: Path,
    tmp_path: Path,
    wandb_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Two jobs in one process, as the basic launcher runs a sweep: two W&B runs, not one reused.
    folders = [
        run_job(job(tiny_checkpoints["llada"], data_dir, tmp_path / "runs", cache))
        for cache in ("none", "dual")
    ]
    assert len(offline_runs(wandb_dir)) == 2
    for run_dir, folder in zip(runs_for(wandb_dir, folders), folders, strict=True):
        check_mirrored(run_dir, folder)
        # The run folder stays exactly what it is without W&B.
        assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "samples.jsonl", "summary.json"]
    printed = capsys.readouterr()
    assert "warning" not in printed.err
    wrote = [line.split()[3] for line in printed.out.splitlines() if line.startswith("wandb: written to ")]
    assert len(wrote) == 2 and all(Path(w).is_dir() for w in wrote)  # the job says where W&B wrote
    # A finished job is skipped, and not mirrored twice.
    run_job(job(tiny_checkpoints["llada"], data_dir, tmp_path / "runs", "none"))
    assert len(offline_runs(wandb_dir)) == 2


def test_online_without_a_key_falls_back_to_offline_with_one_warning(
    tiny_checkpoints: dict[str, Path],
    data_dir: Path,
    tmp_path: Path,
    wandb_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folders = [
        run_job(job(tiny_checkpoints["llada"], data_dir, tmp_path / "runs", cache, mode="online"))
        for cache in ("none", "prefix")
    ]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "wandb" in line.lower()]
    assert len(warnings) == 1, warnings  # once per process, not once per job
    assert warnings[0].startswith("warning: wandb: wandb.mode=online but no API key")
    assert len(offline_runs(wandb_dir)) == 2
    for run_dir, folder in zip(runs_for(wandb_dir, folders), folders, strict=True):
        check_mirrored(run_dir, folder)


def test_a_failing_wandb_never_costs_a_result(
    tiny_checkpoints: dict[str, Path],
    data_dir: Path,
    tmp_path: Path,
    wandb_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("api.wandb.ai unreachable")

    monkeypatch.setattr(wandb, "init", down)
    folder = run_job(job(tiny_checkpoints["llada"], data_dir, tmp_path / "runs", "none"))
    assert json.loads((folder / "summary.json").read_text())["n_samples"] == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: wandb: {folder.name} not mirrored (ConnectionError: api.wandb.ai unreachable)"]
    assert offline_runs(wandb_dir) == []


def test_disabled_logs_nothing(tmp_path: Path, wandb_dir: Path) -> None:
    assert wandb_mirror.mirror(tmp_path, {"mode": "disabled"}) is None
    assert wandb_mirror.mirror(tmp_path, None) is None
    assert not (wandb_dir / "wandb").exists()
