"""Run folders that verify themselves: a summary is only trusted while its samples still give it.

`summary.json` records what it was computed from (`computed_from`: the record count and sha256 of
`samples.jsonl`, written by RunFolder.write_summary). Before a finished run is skipped by the runner or read
by a report, `verify` checks that record and recomputes the summary from the samples with the writer's
own aggregation (ssd/results/summary.py; the timing verdict and paired speedup with the device, threads
and cores the job recorded); a folder whose files disagree (an edited accuracy or speedup, a changed or
damaged sample line) is refused in one line naming it. Runs written before the record existed are
checked by recomputation alone.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ssd.errors import SSDError
from ssd.results.runfolder import SAMPLES, STAMP, SUMMARY, RunFolder, read_summary, samples_stamp
from ssd.results.summary import recorded_aggregate

# What a record needs for the summary's metrics: runs written by hand (tests, imports) without them are
# only counted.
NEEDED = ("correct", "generated_tokens", "nfe", "wall_seconds", "forward_batch_sizes")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def verify(folder: Path, summary: dict[str, Any] | None = None) -> None:
    """Raise SSDError unless the finished run in `folder` is consistent: its samples give its summary."""
    summary = read_summary(folder / SUMMARY) if summary is None else summary
    samples_file = folder / SAMPLES
    damaged = f"run folder {folder} is damaged"
    redo = "delete the folder and rerun the job"
    data = samples_file.read_bytes() if samples_file.is_file() else b""
    recorded = summary.get(STAMP)
    if isinstance(recorded, dict):
        actual = samples_stamp(samples_file, data)
        if actual != recorded:
            raise SSDError(
                f"{damaged}: {SAMPLES} changed after {SUMMARY} was written ({actual['records']} records, "
                f"sha256 {actual['sha256'][:12]}…; recorded {recorded.get('records')}, "
                f"{str(recorded.get('sha256'))[:12]}…): {redo}"
            )
    if data and not data.endswith(b"\n"):
        raise SSDError(f"{damaged}: the last line of {SAMPLES} is incomplete although it finished: {redo}")
    samples = RunFolder(folder).parse_samples(data)  # the bytes stamped above: the file is read once
    if all(all(k in s for k in NEEDED) for s in samples):
        # the writer's own aggregation, with the device, threads and cores the job recorded; only the keys
        # the summary holds are compared (a run written before a figure existed is checked without it)
        expected = recorded_aggregate(samples, summary)
    else:
        expected = {"n_samples": len(samples)}
    for key, value in expected.items():
        if key in summary and not _same(summary[key], value):
            raise SSDError(
                f"{damaged}: {SUMMARY} says {key}={summary[key]} but its {len(samples)} samples give "
                f"{value} (edited?): delete {folder / SUMMARY} and rerun the job to recompute it from "
                f"{SAMPLES}, or {redo}"
            )


def verified_done(folder: RunFolder) -> bool:
    """Whether the job of `folder` is done, its summary verified against its samples (SSDError if not)."""
    if not folder.is_done():
        return False
    verify(folder.path)
    return True
