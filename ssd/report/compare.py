"""Two sweeps side by side (what notebooks/compare_sweeps.ipynb shows): the same settings, two sets of runs.

A *setting* is everything that determines a run's tokens except where and when it ran: model, benchmark,
samples, decoder and its knobs, block, gen length, cache, temperature. Each side's Δaccuracy and speedup
are against the stepwise run of its own sweep and device (`with_baselines`), so the comparison of
speedups is fair even when the two sweeps ran on different machines.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ssd.errors import SSDError
from ssd.registry import did_you_mean
from ssd.report.select import ADHOC, latest_sweep, sweeps_by_time

SETTING = (
    "model",
    "model_path",
    "dtype",
    "benchmark",
    "benchmark_key",
    "limit",
    "seed",
    "decoder",
    "decoder_label",
    "block_length",
    "gen_length",
    "cache",
    "temperature",
)
METRICS = (
    "accuracy",
    "identical_rate",
    "tokens_per_forward",
    "throughput_tokens_per_s",
    "speedup",
    "paired_speedup",  # robust to load (timing.paired): compare these across machines and sessions
    "contended",
    "device",
)


def repo_root(start: Path | None = None) -> Path:
    """The checkout holding `start` (default: the current folder): the nearest parent with pyproject.toml."""
    here = (start or Path.cwd()).resolve()
    return next((p for p in (here, *here.parents) if (p / "pyproject.toml").is_file()), here)


def plan(frame: pd.DataFrame, a: str | None = None, b: str | None = None) -> tuple[str, ...]:
    """What the notebook shows: two sweeps (`pick_sweeps`) when two were named or two exist, else the one
    sweep there is (its decoders against its stepwise runs). Ad-hoc runs are no sweep: they are shown
    only when named, or when nothing else is there."""
    named = [s for s in sweeps_by_time(frame) if s != ADHOC]
    if a is not None or b is not None or len(named) >= 2:
        return pick_sweeps(frame, a, b)
    only = latest_sweep(frame)
    if only is None:
        raise SSDError("no finished runs to show: run `make sweep` first, or set SSD_RUNS")
    return (only,)


def pick_sweeps(frame: pd.DataFrame, a: str | None = None, b: str | None = None) -> tuple[str, str]:
    """The two sweep labels to compare: the given ones (checked), else the two latest sweeps (older
    first; ad-hoc runs only when named)."""
    known = sweeps_by_time(frame)
    for label in (a, b):
        if label is not None and label not in known:
            raise SSDError(f"no finished run of sweep '{label}': {did_you_mean(label, known)}")
    rest = [s for s in known if s not in (a, b) and s != ADHOC]
    if b is None and rest:
        b = rest.pop()
    if a is None and rest:
        a = rest.pop()
    if a is None or b is None or a == b:
        raise SSDError(
            f"need two different sweeps to compare, found {known or 'none'}: make a second one with "
            f"`make sweep SWEEP=<label>`, or point SSD_RUNS_A and SSD_RUNS_B at two folders"
        )
    return a, b


def decoders_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One sweep's runs (a frame from `with_baselines`): each decoder against its stepwise baseline."""
    columns = {
        "model": "model",
        "benchmark": "benchmark",
        "decoder_label": "decoder",
        "cache": "cache",
        "accuracy": "accuracy",
        "identical_rate": "identical",
        "tokens_per_forward": "TPF",
        "throughput_tokens_per_s": "tokens/s",
        "speedup": "speedup",
        "paired_speedup": "paired speedup",
        "contended": "contended",
    }
    return frame.loc[:, list(columns)].rename(columns=columns).reset_index(drop=True)


def compare_sweeps(a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, str] = ("A", "B")) -> pd.DataFrame:
    """One row per setting that both sides ran (frames from `with_baselines`), each side's metrics in
    columns suffixed with its name, plus `tokens/s ratio` (second over first) and `Δaccuracy` (second minus
    first, in points). Where a side ran a setting more than once (several devices), its first row counts."""
    if names[0] == names[1]:
        raise SSDError(f"the two sides need different names, got {names[0]!r} twice")
    keyed = []
    for frame, name in zip((a, b), names, strict=True):
        side = frame.loc[:, [*SETTING, *METRICS]].drop_duplicates(subset=list(SETTING), keep="first")
        keyed.append(side.rename(columns={m: f"{m} [{name}]" for m in METRICS}))
    for side in keyed:  # merge on NA-free keys (limit=None is a setting too)
        side["limit"] = side["limit"].astype("string").fillna("all")
    both = keyed[0].merge(keyed[1], on=list(SETTING), how="inner", sort=False)
    first, second = names
    tps = "throughput_tokens_per_s"
    both["tokens/s ratio"] = both[f"{tps} [{second}]"] / both[f"{tps} [{first}]"]
    both["Δaccuracy (points)"] = 100 * (both[f"accuracy [{second}]"] - both[f"accuracy [{first}]"])
    shown = ["model", "benchmark", "decoder_label", "block_length", "gen_length", "cache"]
    rest = [c for c in both.columns if c not in SETTING]
    return both.loc[:, shown + rest].rename(columns={"decoder_label": "decoder"}).reset_index(drop=True)
