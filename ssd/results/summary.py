"""A job's summary: everything summary.json derives from the job's sample records, and nothing else.

Pure functions of the records (no files: ssd/results/runfolder.py reads and writes them), so the same
records always give the same summary. One entry point, `aggregate`, for every place a summary is made:
the runner writing a finished job (with the device and threads it timed on), and `recorded_aggregate`
(the same call with the device, threads and cores the job recorded) for checking a finished run
(ssd/results/verify.py) and merging shards back (ssd/report/shards.py), so none of them falls behind.

What it holds (definitions: docs/algorithms.md, "Metrics"):
- the metrics: accuracy, tokens/s, tokens per forward, NFE, the histograms of tokens accepted per
  iteration, rows per forward and draft lengths, and token identity with the reference decoder;
- the sandbox a code benchmark's programs ran in;
- the contention verdict (`contention`): whether the job waited for a CPU while it was timed, from the
  meter readings each sample recorded (ssd/results/timing.py);
- the paired speedup (`paired_summary`): the median per-sample speedup over the reference timed beside
  each sample, with a bootstrap interval.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from typing import Any

from ssd.results.timing import usable_cores

# A single-threaded CPU job that got less than this share of a core while it was timed waited for a CPU.
MIN_UTILIZATION = 0.8
# Threads that waited in the run queue for more than this share of the wall time (per thread): oversubscribed.
MAX_WAIT_SHARE = 0.1
# Without the run-queue delay: the 1-minute load average (this job included) above the usable cores by
# more than this: oversubscribed.
LOAD_SLACK = 0.5
BOOTSTRAP_RESAMPLES = 2000


def aggregate(
    samples: list[dict[str, Any]], device: str, threads: int, cores: int | None = None
) -> dict[str, Any]:
    """Everything summary.json derives from sample records: the metrics, the sandbox of a code benchmark,
    whether the job was oversubscribed while timed and its paired speedup. One place for a job's summary,
    its shards merged back and its verification, so none falls behind. `device` (`cpu`, `cuda`) and
    `threads`: what the samples were timed on; `cores`: the usable cores of the machine that timed them
    (default: this one's)."""
    return {
        **summarize(samples),
        **isolation_used(samples),
        "timing": contention(samples, threads, device, cores),
        "paired_speedup": paired_summary(samples, device, threads),
    }


def recorded_aggregate(samples: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Any]:
    """`aggregate` as the job that wrote `summary` computed it: its device, threads and usable cores."""
    timing = summary.get("timing") if isinstance(summary.get("timing"), dict) else {}
    threads, cores = timing.get("threads") or 1, timing.get("usable_cores")
    return aggregate(samples, recorded_device(summary), threads, cores)


def recorded_device(summary: dict[str, Any]) -> str:
    """`cpu` or `cuda`: the kind of device a job ran on, from its summary's recorded environment."""
    hardware = (summary.get("environment") or {}).get("hardware") or {}
    return str(hardware.get("device") or "cpu").split(":")[0]


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate metrics of a job, from its sample records only (algorithms.md, "Metrics")."""
    tokens = sum(s["generated_tokens"] for s in samples)
    nfe = sum(s["nfe"] for s in samples)
    wall = sum(s["wall_seconds"] for s in samples)
    accepted = [a for s in samples for a in s.get("accepted", [])]
    return {
        "n_samples": len(samples),
        "accuracy": _mean([float(bool(s["correct"])) for s in samples]),
        "throughput_tokens_per_s": _ratio(tokens, wall),
        "tokens_per_forward": _ratio(tokens, nfe),
        "mean_nfe": _mean([s["nfe"] for s in samples]),
        "mean_wall_seconds": _mean([s["wall_seconds"] for s in samples]),
        "mean_generated_tokens": _mean([s["generated_tokens"] for s in samples]),
        "mean_accepted": _mean(accepted),
        "total_generated_tokens": tokens,
        "total_nfe": nfe,
        "total_forward_rows": sum(sum(s["forward_batch_sizes"]) for s in samples),
        "total_wall_seconds": wall,
        "accepted_histogram": histogram(accepted),
        "forward_batch_size_histogram": histogram([b for s in samples for b in s["forward_batch_sizes"]]),
        "forward_shape_histogram": shape_histogram(samples),
        "draft_length_histogram": histogram(
            [d for s in samples for d in s.get("extra", {}).get("draft_lengths", [])]
        ),
        **_identity(samples),
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def histogram(values: list[int]) -> dict[str, int]:
    """Counts per value, keyed by the value as a string (JSON object keys), in ascending order."""
    counts: dict[int, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return {str(k): counts[k] for k in sorted(counts)}


def shape_histogram(samples: list[dict[str, Any]]) -> dict[str, int]:
    """Forwards counted by "rows/full" (rows, of which `full` ran the whole sequence: refreshes, rows
    without a cache, states seeding the next block); {} unless every sample recorded its full rows."""
    shapes: dict[tuple[int, int], int] = {}
    for s in samples:
        full = s.get("forward_full_rows") or []
        if len(full) != len(s["forward_batch_sizes"]) or not full:
            return {}
        for shape in zip(s["forward_batch_sizes"], full, strict=True):
            shapes[shape] = shapes.get(shape, 0) + 1
    return {f"{r}/{f}": shapes[r, f] for r, f in sorted(shapes)}


def _identity(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Token identity with the reference decoder, where it was checked."""
    checked = [s for s in samples if s.get("identical") is not None]
    if not checked:
        return {"lossless_checked": False}
    diverging = [s["first_diverging_position"] for s in checked if not s["identical"]]
    return {
        "lossless_checked": True,
        "identical_rate": _mean([float(s["identical"]) for s in checked]),
        "n_identical": len(checked) - len(diverging),
        "earliest_divergence": min(diverging) if diverging else None,
    }


def first_difference(tokens: list[int], reference: list[int]) -> int | None:
    """The first position where two token sequences differ (a length difference counts), or None."""
    for i, (a, b) in enumerate(zip(tokens, reference, strict=False)):
        if a != b:
            return i
    return None if len(tokens) == len(reference) else min(len(tokens), len(reference))


def isolation_used(records: list[dict[str, Any]]) -> dict[str, str]:
    """{"sandbox": isolation} of a code benchmark's sample records ("a+b" if a resumed run mixed them); {}
    for other benchmarks."""
    used = sorted({str(r["details"]["isolation"]) for r in records if "isolation" in r.get("details", {})})
    return {"sandbox": "+".join(used)} if used else {}


def single_threaded_cpu(device: str, threads: int) -> bool:
    """A job whose CPU seconds measure it alone: one thread on a CPU (on a quiet machine they are its wall
    seconds; with more threads serial stretches lower them, and on a GPU the host mostly waits)."""
    return device == "cpu" and threads == 1


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


def paired_basis(device: str, threads: int) -> str:
    """Which clock the paired speedup is read on. A single-threaded CPU job's CPU seconds are its wall
    seconds on a quiet machine (measured: 98-100% of a core), and they leave out the time spent waiting
    for a core on a busy one, which time slicing does not hand out in proportion to a sample's length.
    With more threads, or on a GPU, only the wall clock says what the user waits."""
    return "cpu" if single_threaded_cpu(device, threads) else "wall"


def bootstrap_median(values: Sequence[float], level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval for the median (fixed seed: the same records give the same bounds)."""
    rng = random.Random(seed)
    n = len(values)
    medians = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(BOOTSTRAP_RESAMPLES))
    tail = (1 - level) / 2
    lo = medians[int(tail * (BOOTSTRAP_RESAMPLES - 1))]
    hi = medians[int(round((1 - tail) * (BOOTSTRAP_RESAMPLES - 1)))]
    return lo, hi


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
