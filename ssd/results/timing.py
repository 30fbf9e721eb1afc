"""Timings that can be trusted: pinned CPU threads, a meter around every timed decode, paired timing.

A CPU job's tokens/s is only meaningful when the job got the CPU it asked for. On a shared machine torch's
default (one intra-op thread per core) makes every job fight the others for the same cores; one job on
a loaded 2-core machine was measured ~180x slower with 2 threads than with 1. So, while a job decodes:

- the runner sets torch's thread count (`timing.threads`, default 1) before anything is timed;
- every timed decode is metered: process CPU time against wall time, and the time its threads spent
  runnable but waiting for a CPU (the run-queue delay Linux keeps per thread in /proc/self/task/*/
  schedstat), recorded with each sample. The 1-minute load average is recorded too, but it trails the
  machine by about a minute in both directions (seen here: 1.07 during a burst that cost a job 36% of its
  wall time), so it is the verdict only where the run-queue delay cannot be read;
- `timing.paired=true` times the decoder's reference on the same prompt right next to each sample,
  alternating which goes first, and records both (`paired_record`): both sides of every ratio saw the
  same machine state, so the ratio survives load that the plain tokens/s ratio of two separately timed
  runs does not.

What these readings add up to (the `contended` flag that tables and plots mark, the median paired speedup
with its bootstrap interval) is the summary's arithmetic: ssd/results/summary.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


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


def pair_speedup(tokens: int, wall: float, reference_tokens: int, reference_wall: float) -> float | None:
    """One sample's speedup: its generated tokens/s over its reference's on the same prompt (None when
    either generated nothing or took no time)."""
    if min(tokens, reference_tokens) <= 0 or min(wall, reference_wall) <= 0:
        return None
    return (tokens / wall) / (reference_tokens / reference_wall)


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
