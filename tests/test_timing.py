"""Honest timings: pinned threads, the contention flag, paired speedups, and how reports show them."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir

from ssd.config import register
from ssd.errors import SSDError
from ssd.report import load_runs, with_baselines
from ssd.report.plots import figure
from ssd.report.select import choose, latest_sweep
from ssd.report.tables import render
from ssd.results import timing
from ssd.results.summary import bootstrap_median, contention, paired_summary
from ssd.run import CONF_DIR, run_job
from tests.test_report import write_run


def sample(
    cpu: float, wall: float, load: float = 0.5, speedup: float | None = None, wait: float | None = None
) -> dict[str, Any]:
    metered = {"cpu_seconds": cpu, "wall_seconds": wall, "load_average": load, "wait_seconds": wait}
    record: dict[str, Any] = {"timing": metered}
    if speedup is not None:  # CPU-time speedup as given, the wall-clock one inflated by waiting
        ours, theirs = (20, 2.0 * wall, wall), (20, 3.0 * speedup * wall, speedup * wall)
        record["paired"] = timing.paired_record("stepwise", ours, theirs)
    return record


def test_contention_from_cpu_share_and_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ssd.results.summary.usable_cores", lambda: 2)
    quiet = contention([sample(0.95, 1.0), sample(1.0, 1.0)], threads=1, device="cpu")
    assert not quiet["contended"] and quiet["cpu_utilization"] == 0.975 and quiet["usable_cores"] == 2
    starved = contention([sample(0.4, 1.0), sample(0.5, 1.0)], threads=1, device="cpu")
    assert starved["contended"] and "45% of a core" in starved["contended_why"]
    loaded = contention([sample(1.0, 1.0, load=4.0)], threads=1, device="cpu")
    assert loaded["contended"] and "load average 4.0 on 2 usable cores" in loaded["contended_why"]
    # Where the run-queue delay was read, it is the verdict and the (trailing) load average is not.
    waited = contention([sample(1.0, 1.0, wait=0.3, load=0.5)], threads=2, device="cuda")
    assert waited["contended"] and "waited for a CPU 15% of the time" in waited["contended_why"]
    stale = contention([sample(1.0, 1.0, load=4.0, wait=0.01)], threads=1, device="cpu")
    assert not stale["contended"] and stale["wait_share"] == 0.01
    # With several threads, or on a GPU, a low CPU share alone is no verdict (serial parts, waiting).
    assert not contention([sample(0.5, 1.0)], threads=2, device="cpu")["contended"]
    assert not contention([sample(0.1, 1.0)], threads=1, device="cuda")["contended"]
    assert contention([], threads=1, device="cpu")["cpu_utilization"] is None


def test_meter_sees_cpu_work_and_sleep() -> None:
    import time

    with timing.meter() as busy:
        end = time.perf_counter() + 0.05
        while time.perf_counter() < end:
            pass
    with timing.meter() as idle:
        time.sleep(0.05)
    assert busy["cpu_seconds"] > 0.5 * busy["wall_seconds"]
    assert idle["cpu_seconds"] < 0.5 * idle["wall_seconds"]


@pytest.mark.skipif(timing.run_queue_waits() is None, reason="no per-thread schedstat here (not Linux)")
def test_meter_sees_waiting_for_a_cpu() -> None:
    """Pinned to one CPU beside a process spinning on it, this process waits about half the time."""
    import subprocess
    import sys
    import time

    cpu = min(os.sched_getaffinity(0))
    saved = os.sched_getaffinity(0)
    spin = "import time\nend = time.time() + 3\nwhile time.time() < end: pass"  # bounded by itself
    burner = subprocess.Popen([sys.executable, "-c", spin])
    try:
        os.sched_setaffinity(burner.pid, {cpu})
        os.sched_setaffinity(0, {cpu})
        time.sleep(0.2)
        with timing.meter() as shared:
            end = time.perf_counter() + 0.5
            while time.perf_counter() < end:
                pass
    finally:
        os.sched_setaffinity(0, saved)
        burner.kill()
        burner.wait()
    assert shared["wait_seconds"] is not None and shared["wait_seconds"] > 0.2 * shared["wall_seconds"]
    verdict = contention([{"timing": shared}], threads=1, device="cpu")
    assert verdict["contended"] and "waited for a CPU" in verdict["contended_why"]


def test_paired_speedup_median_and_bootstrap_interval() -> None:
    assert timing.pair_speedup(20, 1.0, 20, 2.0) == 2.0
    assert timing.pair_speedup(10, 1.0, 20, 2.0) == 1.0  # tokens/s over tokens/s
    assert timing.pair_speedup(0, 1.0, 20, 2.0) is None
    values = [1.0 + 0.01 * i for i in range(41)] + [50.0]  # one wild sample barely moves a median
    records = [sample(1, 1, speedup=v) for v in values] + [{"timing": {}}]
    summary = paired_summary(records, "cpu", 1)
    assert summary is not None and summary["n"] == 42 and summary["reference_decoder"] == "stepwise"
    assert summary["basis"] == "cpu"
    assert summary["median_speedup"] == pytest.approx(statistics.median(values), abs=1e-4)
    assert summary["median_wall_speedup"] == pytest.approx(1.5 * statistics.median(values), abs=1e-4)
    lo, hi = summary["ci95"]
    assert lo < summary["median_speedup"] < hi and hi - lo < 0.3
    # Several threads or a GPU: the wall clock is what the user waits.
    for device, threads in (("cpu", 2), ("cuda", 1)):
        wall = paired_summary(records, device, threads)
        assert wall["basis"] == "wall" and wall["median_speedup"] == summary["median_wall_speedup"]
    assert paired_summary([sample(1, 1)], "cpu", 1) is None
    assert bootstrap_median([1.0, 2.0, 3.0]) == bootstrap_median([1.0, 2.0, 3.0])


def arith_job(out: Path, *extra: str) -> Any:
    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            "config",
            overrides=["+experiment=default", "limit=4", f"output_dir={out}", *extra],
        )


def test_runner_pins_threads_records_timing_and_pairs(tmp_path: Path, capsys: Any) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        folder = run_job(arith_job(tmp_path, "+experiment/arith=ssd_n4", "timing.paired=true"))
        assert torch.get_num_threads() == 1  # timing.threads defaults to 1
    finally:
        torch.set_num_threads(before)
    out = capsys.readouterr().out
    assert "reference: stepwise, the yardstick" in out and "ETA" in out
    assert "paired speedup" in out and "(CPU time, 95% CI" in out and "tokens/s=" not in out
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["timing"]["threads"] == 1 and summary["timing"]["timed_samples"] == 4
    assert isinstance(summary["timing"]["contended"], bool)
    paired = summary["paired_speedup"]
    assert paired["n"] == 4 and paired["reference_decoder"] == "stepwise" and paired["basis"] == "cpu"
    assert paired["ci95"][0] <= paired["median_speedup"] <= paired["ci95"][1]
    records = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    assert all(
        r["paired"]["reference_generated_tokens"] == r["generated_tokens"] for r in records
    )  # lossless
    assert all(r["timing"]["wall_seconds"] >= r["wall_seconds"] for r in records)
    # The sweep label is part of a run's identity: another label, another folder.
    assert (
        run_job(arith_job(tmp_path, "+experiment/arith=ssd_n4", "timing.paired=true", "sweep=again"))
        != folder
    )


def test_runner_rejects_zero_threads(tmp_path: Path) -> None:
    with pytest.raises(SSDError, match=r"timing.threads=0 is out of range: pass a value >= 1 or null"):
        run_job(arith_job(tmp_path, "timing.threads=0"))


def mark(folder: Path, **fields: Any) -> None:
    path = folder / "summary.json"
    summary = json.loads(path.read_text())
    for key, value in fields.items():
        if key == "timestamp":
            summary["environment"]["timestamp"] = value
        else:
            summary[key] = value
    path.write_text(json.dumps(summary))


def test_reports_default_to_the_latest_sweep_and_mark_contention(tmp_path: Path) -> None:
    old = write_run(tmp_path, "stepwise", sweep="first", tps=10.0)
    mark(old, timestamp="2026-01-02T00:00:00+00:00")
    write_run(tmp_path, "stepwise", sweep="second", tps=10.0)
    loaded = write_run(tmp_path, "ssd", sweep="second", tps=30.0, identical=1.0)
    paired = {"n": 4, "median_speedup": 1.5, "ci95": [1.4, 1.6], "reference_decoder": "stepwise"}
    mark(loaded, timing={"contended": True, "contended_why": "load average 4.0 on 2 usable cores"})
    mark(loaded, paired_speedup=paired, timestamp="2026-01-03T00:00:00+00:00")
    adhoc = write_run(tmp_path, "stepwise", sweep="adhoc", tps=1.0, model="elsewhere/other")
    mark(adhoc, timestamp="2026-01-04T00:00:00+00:00")
    runs = load_runs(tmp_path)
    assert latest_sweep(runs.frame) == "second"  # ad-hoc runs are not a sweep
    shown, scope = choose(runs)
    assert set(shown.frame["sweep"]) == {"second"}
    assert scope.startswith("sweep second (the latest; also here: first, adhoc")
    assert set(choose(runs, all_sweeps=True)[0].frame["sweep"]) == {"first", "second", "adhoc"}
    assert set(choose(runs, ["first"])[0].frame["sweep"]) == {"first"}
    md = render(shown, scope=scope)["runs.md"]
    assert "Runs of sweep second" in md
    ssd_line = next(line for line in md.splitlines() if "| ssd" in line)
    assert "30.0†" in ssd_line and "3.00×†" in ssd_line and "1.50× (1.40–1.60)" in ssd_line
    csv = render(shown, scope=scope)["runs.csv"]
    assert "paired_speedup" in csv.splitlines()[0] and ",1.5,1.4,1.6,True," in csv


def test_throughput_frontier_leaves_out_autoregressive_baselines(tmp_path: Path) -> None:
    write_run(tmp_path, "stepwise", tps=10.0, accuracy=0.5)
    write_run(tmp_path, "target_greedy", tps=100.0, accuracy=1.0)  # faster and better: would hide all
    write_run(tmp_path, "ssd", tps=30.0, accuracy=0.5, identical=1.0)
    fig = figure(with_baselines(load_runs(tmp_path).frame), "throughput")
    (ax,) = [a for a in fig.axes if a.get_visible()]
    frontier = next(line for line in ax.get_lines() if line.get_linestyle() == "--")
    assert sorted(frontier.get_xdata()) == [30.0]


def test_progress_eta_and_heartbeat(capsys: Any) -> None:
    import time

    from ssd.results.progress import Progress, clock, headline, heartbeat

    assert [clock(s) for s in (7, 750, 3723)] == ["0:07", "12:30", "1:02:03"]
    progress = Progress(3)
    assert progress.step().startswith("ETA 0:0") and progress.step().startswith("ETA")
    assert progress.step().startswith("job ")
    with heartbeat("sample x", every=0.05):
        time.sleep(0.18)
    beats = capsys.readouterr().out.splitlines()
    assert 2 <= len(beats) <= 4 and all("sample x: still decoding" in b for b in beats)
    line = headline({"accuracy": 0.98, "throughput_tokens_per_s": 1561.912345678901})
    assert line == "accuracy 98.0%, 1561.9 tokens/s"


def test_a_speedup_over_a_contended_baseline_is_marked_too(tmp_path: Path) -> None:
    base = write_run(tmp_path, "stepwise", tps=10.0)
    mark(base, timing={"contended": True, "contended_why": "load average 5.0 on 2 usable cores"})
    write_run(tmp_path, "ssd", tps=30.0, identical=1.0)
    md = render(load_runs(tmp_path))["runs.md"]
    ssd_line = next(line for line in md.splitlines() if "| ssd" in line)
    assert "30.0 |" in ssd_line and "30.0†" not in ssd_line  # its own timing is fine ...
    assert "3.00×†" in ssd_line  # ... its baseline's is not


@pytest.mark.slow
def test_a_first_job_runs_on_the_embedded_model_in_seconds(tmp_path: Path) -> None:
    """`python -m ssd.run decoder=fast_dllm limit=10` in an empty folder: offline, on the base config (the
    embedded model), its stepwise reference run first."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "ssd.run", "decoder=fast_dllm", "limit=10"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "reference: stepwise" in out and "summary:" in out.splitlines()[-1]
    summaries = sorted((tmp_path / "results" / "runs").glob("llada-arith-*/summary.json"))
    assert [p.parent.name.split("-")[2] for p in summaries] == ["fast_dllm", "stepwise"]
    assert all(json.loads(p.read_text())["n_samples"] == 10 for p in summaries)
