"""A sweep killed with SIGKILL part-way and launched again ends exactly as an uninterrupted sweep does.

The sweep (`python -m ssd.run -m ...`, the basic launcher) is a small grid spelt out on the command line, so
that it does not change when conf/experiment/default.yaml does: stepwise decoding under each cache mode,
on a tiny checkpoint and real GSM8K problems, a few samples per job. The kill lands after the first job
has finished and while the second one is part-written; the rerun must skip the first, continue the
second and run the third, leaving every sample once and the same tokens, grades and summaries as the
uninterrupted sweep (timings aside).
The uninterrupted sweep is shared with tests/test_slurm.py, which compares the Slurm launcher against it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from ssd.models.tiny import make_tiny_checkpoint

REPO = Path(__file__).resolve().parent.parent
LIMIT = 8
# What differs between two runs of the same job: clocks, memory, and where/when it ran.
TIMING_SUMMARY = {
    "throughput_tokens_per_s",
    "mean_wall_seconds",
    "total_wall_seconds",
    "peak_memory_bytes",
    "environment",
    "computed_from",  # the samples file's sha256: its records hold wall_seconds
    "timing",  # CPU share and load average while timed
    "paired_speedup",
}
TIMING_SAMPLE = {"wall_seconds", "timing", "paired"}  # timing: metered CPU/wall seconds, load
_SWEEPS: dict[str, tuple[Path, Path]] = {}


def sweep_env(**extra: str) -> dict[str, str]:
    """One intra-op thread: cheaper on a shared CI machine, and the same arithmetic in every launcher."""
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def sweep_command(ckpt: Path, data: Path, root: Path, *extra: str, gen: int = 32) -> list[str]:
    """Three jobs (decoder.cache: none, prefix, dual): a tiny checkpoint, zero-shot GSM8K prompts, `gen`
    tokens, LIMIT samples a job (the later ones run long enough to be interrupted at will)."""
    return [
        sys.executable,
        "-m",
        "ssd.run",
        "-m",
        "model=tiny_llada",
        f"model.path={ckpt}",
        "benchmark=gsm8k",
        f"benchmark.data_dir={data}",
        "benchmark.num_fewshot=0",
        "decoder=stepwise",
        f"decoder.gen_length={gen}",
        "decoder.block_length=8",
        "decoder.cache=none,prefix,dual",
        f"limit={LIMIT}",
        "sweep=resume-test",
        f"output_dir={root / 'runs'}",
        f"hydra.sweep.dir={root / 'sweep'}",
        *extra,
    ]


def basic_sweep(data: Path, tmp_path_factory: pytest.TempPathFactory, gen: int = 32) -> tuple[Path, Path]:
    """The grid's checkpoint, and the runs folder of its uninterrupted sweep through the basic launcher
    (made once per session and generation length)."""
    key = f"{data}/{gen}"
    if key not in _SWEEPS:
        root = tmp_path_factory.mktemp("basic-sweep")
        # Longer than the shared tiny checkpoints allow: some GSM8K prompts alone fill 512 positions.
        ckpt = make_tiny_checkpoint(root / "tiny-llada-2k", "llada", max_sequence_length=2048)
        done = subprocess.run(
            sweep_command(ckpt, data, root, gen=gen),
            cwd=REPO,
            env=sweep_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        _SWEEPS[key] = (ckpt, root / "runs")
    return _SWEEPS[key]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def comparable(runs: Path) -> dict[str, dict[str, Any]]:
    """Per run folder (named by the config's hash, so equal across output dirs): summary and samples
    without timings, memory or provenance."""
    found = {}
    for folder in sorted(p for p in runs.iterdir() if p.is_dir()):
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        samples = read_jsonl(folder / "samples.jsonl")
        found[folder.name] = {
            "summary": {k: v for k, v in summary.items() if k not in TIMING_SUMMARY},
            "samples": [{k: v for k, v in r.items() if k not in TIMING_SAMPLE} for r in samples],
        }
    return found


def assert_same_results(runs: Path, reference: Path) -> None:
    """Same jobs, every sample exactly once, the same tokens, grades and summaries as the reference."""
    got, want = comparable(runs), comparable(reference)
    assert sorted(got) == sorted(want) and len(want) == 3
    for name, ref in want.items():
        ids = [r["id"] for r in got[name]["samples"]]
        assert len(ids) == len(set(ids)) == LIMIT, f"{name}: samples duplicated or lost: {ids}"
        assert ids == [r["id"] for r in ref["samples"]]
        for mine, theirs in zip(got[name]["samples"], ref["samples"], strict=True):
            assert (mine["tokens"], mine["correct"], mine["completion"]) == (
                theirs["tokens"],
                theirs["correct"],
                theirs["completion"],
            ), f"{name}: sample {mine['id']} differs"
        assert got[name]["samples"] == ref["samples"]
        assert got[name]["summary"] == ref["summary"]
        assert got[name]["summary"]["n_samples"] == LIMIT


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def test_sweep_killed_mid_job_resumes_to_the_uninterrupted_result(
    data_dir: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ckpt, reference = basic_sweep(data_dir, tmp_path_factory)
    command = sweep_command(ckpt, data_dir, tmp_path)
    runs = tmp_path / "runs"
    log = (tmp_path / "killed.log").open("wb")
    proc = subprocess.Popen(
        command, cwd=REPO, env=sweep_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline, state = time.monotonic() + 300, None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            folders = [p for p in runs.glob("*") if p.is_dir()] if runs.is_dir() else []
            done = [p for p in folders if (p / "summary.json").is_file()]
            partial = [p for p in folders if p not in done and lines(p / "samples.jsonl") >= 1]
            if len(done) == 1 and partial:
                state = (done[0], partial[0])
                break
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        log.close()
    output = (tmp_path / "killed.log").read_text(errors="replace")
    assert state is not None, f"never saw one job done and the next part-written:\n{output[-3000:]}"
    first, second = state
    assert proc.returncode == -signal.SIGKILL
    assert not (second / "summary.json").exists(), "the second job finished before the kill landed"
    kept = lines(second / "samples.jsonl")
    assert 1 <= kept < LIMIT
    before = (second / "samples.jsonl").read_bytes()
    assert len([p for p in runs.iterdir() if p.is_dir()]) == 2  # the third job never started

    again = subprocess.run(command, cwd=REPO, env=sweep_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert f"done: {first}" in again.stdout
    # The second job continues after its last complete line (a line torn by the kill would be dropped).
    complete = before[: before.rfind(b"\n") + 1]
    resumed_at = complete.count(b"\n")
    assert f"run: {second} ({resumed_at} of {LIMIT} samples already done)" in again.stdout
    assert (second / "samples.jsonl").read_bytes().startswith(complete)
    assert again.stdout.count("run: ") == 2 and again.stdout.count("done: ") == 1
    assert_same_results(runs, reference)
    configs = [yaml.safe_load((p / "config.yaml").read_text()) for p in runs.iterdir()]
    assert sorted(c["decoder"]["cache"] for c in configs) == ["dual", "none", "prefix"]


def test_every_summary_records_its_provenance_and_peak_memory(
    data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _, runs = basic_sweep(data_dir, tmp_path_factory)
    for folder in runs.iterdir():
        summary = json.loads((folder / "summary.json").read_text())
        env = summary["environment"]
        assert env["config_hash"] == summary["config_hash"] and folder.name.endswith(env["config_hash"][:8])
        assert env["seed"] == 0 and env["git"].keys() == {"commit", "dirty"}
        assert {"torch", "hydra-core", "submitit", "ssd"} <= env["versions"].keys()
        assert env["hardware"]["device"] == "cpu" and env["slurm_job"] == os.environ.get("SLURM_JOB_ID")
        # On CPU: the process's peak RSS (a model and torch: tens of MB at least), in bytes.
        assert summary["peak_memory_kind"] == "cpu"
        assert isinstance(summary["peak_memory_bytes"], int) and summary["peak_memory_bytes"] > 20 * 2**20


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_peak_memory_window_starts_at_each_job() -> None:
    """The basic launcher runs a sweep's jobs in one process: a job's peak must not be an earlier one's."""
    from ssd.results.provenance import peak_memory, reset_peak_memory

    block = bytearray(256 * 2**20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page
    before = peak_memory("cpu")["peak_memory_bytes"]
    del block
    reset_peak_memory("cpu")
    after = peak_memory("cpu")["peak_memory_bytes"]
    assert before > 256 * 2**20 and after < before - 128 * 2**20


def test_a_job_whose_folder_is_in_use_waits_for_it_then_continues(
    tiny_checkpoints: dict[str, Path], data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Jobs of a Slurm sweep run at once and may share a folder (a reference run): wait, do not fail."""
    from omegaconf import OmegaConf

    from ssd.config import GSM8KConfig, ModelConfig, RunConfig, StepwiseConfig
    from ssd.results.runfolder import RunFolder, run_name
    from ssd.run import resolve, run_job

    cfg = RunConfig(
        model=ModelConfig(name="llada", path=str(tiny_checkpoints["llada"])),
        decoder=StepwiseConfig(gen_length=16, block_length=8),
        benchmark=GSM8KConfig(num_fewshot=0, data_dir=str(data_dir)),
        limit=2,
        output_dir=str(tmp_path),
    )
    folder = RunFolder(tmp_path / run_name(resolve(OmegaConf.structured(cfg))))
    held, printed = threading.Event(), []

    def holder() -> None:  # another job, holding the folder until this one says it waits
        with folder.lock():
            held.set()
            deadline = time.monotonic() + 120
            while "waiting: " not in "".join(printed) and time.monotonic() < deadline:
                printed.append(capsys.readouterr().out)
                time.sleep(0.05)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(30)
    try:
        assert run_job(cfg) == folder.path
    finally:
        thread.join()
    out = "".join(printed) + capsys.readouterr().out
    assert f"waiting: {folder.path} is in use by another job" in out
    assert out.index("waiting: ") < out.index("run: ")
    assert len(folder.read_samples()) == 2 and folder.is_done()
