"""Which runs a report shows: one sweep by default (the latest, or the one named), never a silent mix.

`results/runs/` collects every job ever run there: the default sweep, a second sweep made to compare with
it, ad-hoc runs of other models. Tables and plots of all of them at once mix unrelated settings, so the
reports take one sweep unless told otherwise, and say which.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ssd.report.runs import Runs

ADHOC = "adhoc"  # the label of runs started outside a sweep (RunConfig.sweep's default)


def sweeps_by_time(frame: pd.DataFrame) -> list[str]:
    """The sweep labels, oldest first by their last finished run (environment.timestamp in summary.json;
    runs without one count as oldest), ties by name."""
    last = frame.groupby("sweep")["finished"].max() if len(frame) else pd.Series(dtype=str)
    return sorted(last.index, key=lambda s: (str(last[s]), s))


def latest_sweep(frame: pd.DataFrame) -> str | None:
    """The most recently finished sweep; an ad-hoc collection only when there is nothing else."""
    ordered = sweeps_by_time(frame)
    named = [s for s in ordered if s != ADHOC]
    return (named or ordered or [None])[-1]


def choose(runs: Runs, sweeps: Sequence[str] | None = None, all_sweeps: bool = False) -> tuple[Runs, str]:
    """The runs a report shows, and a line saying which: the named sweeps, all, or the latest one."""
    known = sweeps_by_time(runs.frame)
    if all_sweeps or len(known) <= 1 and not sweeps:
        what = ", ".join(known) or "none"
        return runs, f"all sweeps ({what})" if len(known) > 1 else f"sweep {what}"
    if sweeps:
        return runs.only(sweeps), f"sweep {', '.join(sweeps)}"
    latest = latest_sweep(runs.frame)
    others = [s for s in known if s != latest]
    return runs.only([latest]), (
        f"sweep {latest} (the latest; also here: {', '.join(others)}; pick one with --sweep NAME, or "
        f"--all-sweeps)"
    )
