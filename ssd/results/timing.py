"""Timings that can be trusted: pinned CPU threads, a contention check, and paired speedups.

A CPU job's tokens/s is only meaningful when the job got the CPU it asked for. On a shared machine torch's
default (one intra-op thread per core) makes every job fight the others for the same cores; one job on
a loaded 2-core machine was measured ~180x slower with 2 threads than with 1. So:

- the runner sets torch's thread count (`timing.threads`, default 1) before anything is timed;
- every timed decode is metered: process CPU time against wall time, and the time its threads spent
  runnable but waiting for a CPU (the run-queue delay Linux keeps per thread in /proc/self/task/*/
  schedstat), so a job that waited for a CPU while it was timed is flagged `contended` in its summary
  (tables and plots mark it). The 1-minute load average is recorded too, but it trails the machine by
  about a minute in both directions (seen here: 1.07 during a burst that cost a job 36% of its wall
  time), so it is the verdict only where the run-queue delay cannot be read;
- `timing.paired=true` times the decoder's reference on the same prompt right next to each sample,
  alternating which goes first, and reports the median per-sample speedup with a bootstrap interval:
  both sides of every ratio saw the same machine state, so the ratio survives load that the plain
  tokens/s ratio of two separately timed runs does not.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

# A single-threaded CPU job that got less than this share of a core while it was timed waited for a CPU.
MIN_UTILIZATION = 0.8
# Threads that waited in the run queue for more than this share of the wall time (per thread): oversubscribed.
MAX_WAIT_SHARE = 0.1
# Without the run-queue delay: the 1-minute load average (this job included) above the usable cores by
# more than this: oversubscribed.
LOAD_SLACK = 0.5
BOOTSTRAP_RESAMPLES = 2000


def single_threaded_cpu(device: str, threads: int) -> bool:
    """A job whose CPU seconds measure it alone: one thread on a CPU (on a quiet machine they are its wall
    seconds; with more threads serial stretches lower them, and on a GPU the host mostly waits)."""
    return device == "cpu" and threads == 1


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a Slurm or cgroup allotment)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def set_threads(threads: int | None) -> int:
    """Pin torch's intra-op threads (None: leave them as they are); return the count in use."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def run_queue_waits() -> dict[str, float] | None:
    """Seconds each thread of this process has spent runnable but waiting for a CPU, by thread id (the
    second field of Linux's per-thread schedstat); None where it cannot be read."""
    waits = {}
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                waits[tid] = int(f.read().split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return waits or None


def _waited(before: dict[str, float] | None, after: dict[str, float] | None) -> float | None:
    """Run-queue seconds between two readings (a thread started in between counts whole)."""
    if before is None or after is None:
        return None
    return sum(max(0.0, wait - before.get(tid, 0.0)) for tid, wait in after.items())


@contextmanager
def meter() -> Iterator[dict[str, float | None]]:
    """Measure the block: wall and process CPU seconds (all threads), the seconds its threads waited for a
    CPU, and the load average at its end."""
    out: dict[str, float | None] = {}
    waits = run_queue_waits()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield out
    finally:
        out["wall_seconds"] = time.perf_counter() - wall
        out["cpu_seconds"] = time.process_time() - cpu
        out["wait_seconds"] = _waited(waits, run_queue_waits())
        out["load_average"] = load_average()


def timed(decoder: Any, model: Any, ids: list[list[int]], seeds: list[int]) -> tuple[list[Any], dict]:
    """A batch's generations, and its metered CPU and wall seconds per sample (`meter`)."""
    with meter() as timing:
        generations = decoder.generate_batch(model, ids, seeds)
    n = len(ids)
    return generations, {k: (v / n if k.endswith("seconds") else v) for k, v in timing.items()}


def paired_reference(decoder: Any) -> Any:
    """The reference decoder timed beside each sample under `timing.paired` (None: it has none)."""
    reference = decoder.reference_config()
    if reference is None:
        return None
    from ssd.decoders import DECODERS

    return DECODERS.get(reference.name)(reference)


def contention(
    samples: Sequence[dict[str, Any]], threads: int, device: str, cores: int | None = None
) -> dict[str, Any]:
    """Whether the job was oversubscribed while timed, from its sample records' `timing` entries.

    cpu_utilization is CPU seconds over (wall seconds x threads): near 1 for a single-threaded job that had
    a core to itself. It is a verdict only on a CPU with one thread (with more, serial stretches lower it
    legitimately; on a GPU the host mostly waits). wait_share is run-queue seconds over (wall seconds x
    threads): the share of the time the job's threads were ready to run but had no CPU, a verdict on any
    device and thread count. The load average is one only for records without run-queue seconds.
    `cores`: the usable cores of the machine that timed them (default: this one's).
    """
    timed = [s["timing"] for s in samples if isinstance(s.get("timing"), dict)]
    cores = cores or usable_cores()
    cpu = sum(t.get("cpu_seconds") or 0.0 for t in timed)
    wall = sum(t.get("wall_seconds") or 0.0 for t in timed)
    loads = [t["load_average"] for t in timed if t.get("load_average") is not None]
    waited = [t["wait_seconds"] for t in timed if t.get("wait_seconds") is not None]
    utilization = cpu / (wall * max(threads, 1)) if wall > 0 else None
    wait_share = sum(waited) / (wall * max(threads, 1)) if wall > 0 and len(waited) == len(timed) else None
    load = statistics.median(loads) if loads else None
    reasons = []
    if single_threaded_cpu(device, threads) and utilization is not None and utilization < MIN_UTILIZATION:
        reasons.append(f"got {utilization:.0%} of a core while timed")
    if wait_share is not None and wait_share > MAX_WAIT_SHARE:
        reasons.append(f"waited for a CPU {wait_share:.0%} of the time")
    if wait_share is None and load is not None and load > cores + LOAD_SLACK:
        reasons.append(f"load average {load:.1f} on {cores} usable cores")
    return {
        "threads": threads,
        "usable_cores": cores,
        "timed_samples": len(timed),
        "cpu_utilization": None if utilization is None else round(utilization, 3),
        "wait_share": None if wait_share is None else round(wait_share, 3),
        "load_average_median": None if load is None else round(load, 2),
        "load_average_max": round(max(loads), 2) if loads else None,
        "contended": bool(reasons),
        "contended_why": "; ".join(reasons) or None,
    }


def pair_speedup(tokens: int, wall: float, reference_tokens: int, reference_wall: float) -> float | None:
    """One sample's speedup: its generated tokens/s over its reference's on the same prompt (None when
    either generated nothing or took no time)."""
    if min(tokens, reference_tokens) <= 0 or min(wall, reference_wall) <= 0:
        return None
    return (tokens / wall) / (reference_tokens / reference_wall)


def bootstrap_median(values: Sequence[float], level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval for the median (fixed seed: the same records give the same bounds)."""
    rng = random.Random(seed)
    n = len(values)
    medians = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(BOOTSTRAP_RESAMPLES))
    tail = (1 - level) / 2
    lo = medians[int(tail * (BOOTSTRAP_RESAMPLES - 1))]
    hi = medians[int(round((1 - tail) * (BOOTSTRAP_RESAMPLES - 1)))]
    return lo, hi


def paired_record(
    reference: str | None, ours: tuple[int, float, float], theirs: tuple[int, float, float]
) -> dict[str, Any]:
    """One sample's paired timing: (generated tokens, wall seconds, CPU seconds) of the decoder and of its
    reference on the same prompt, and the speedup on either clock."""
    return {
        "reference_decoder": reference,
        "reference_generated_tokens": theirs[0],
        "reference_wall_seconds": theirs[1],
        "reference_cpu_seconds": theirs[2],
        "speedup": pair_speedup(ours[0], ours[1], theirs[0], theirs[1]),
        "cpu_speedup": pair_speedup(ours[0], ours[2], theirs[0], theirs[2]),
    }


def paired_basis(device: str, threads: int) -> str:
    """Which clock the paired speedup is read on. A single-threaded CPU job's CPU seconds are its wall
    seconds on a quiet machine (measured: 98-100% of a core), and they leave out the time spent waiting
    for a core on a busy one, which time slicing does not hand out in proportion to a sample's length.
    With more threads, or on a GPU, only the wall clock says what the user waits."""
    return "cpu" if single_threaded_cpu(device, threads) else "wall"


def paired_summary(samples: Sequence[dict[str, Any]], device: str, threads: int) -> dict[str, Any] | None:
    """The median per-sample speedup over the interleaved reference, with its 95% bootstrap interval, on
    the clock `paired_basis` picks (the wall-clock median is kept beside it)."""
    basis = paired_basis(device, threads)
    key = "cpu_speedup" if basis == "cpu" else "speedup"
    paired = [s["paired"] for s in samples if isinstance(s.get("paired"), dict)]
    speedups = [p[key] for p in paired if p.get(key) is not None]
    if not speedups:
        return None
    lo, hi = bootstrap_median(speedups)
    wall = [p["speedup"] for p in paired if p.get("speedup") is not None]
    return {
        "n": len(speedups),
        "basis": basis,
        "median_speedup": round(statistics.median(speedups), 4),
        "ci95": [round(lo, 4), round(hi, 4)],
        "median_wall_speedup": round(statistics.median(wall), 4) if wall else None,
        "reference_decoder": paired[0]["reference_decoder"],
    }
