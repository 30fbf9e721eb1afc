"""The AUP curves of finished runs: accuracy against tokens per forward, one line per decoder family.

`make plots` writes it as `results/plots/aup_tpf.png` beside the Pareto plots (ssd/report/plots.py saves
it, metadata-free, so the same run folders give the same bytes). One panel per setting (ssd/report/aup.py,
`SETTING`), one line per family through the points AUP integrates, from its anchor (the setting's
stepwise run, or the AR target for DiffuSpec: ssd/report/aup.py), the family's AUP in the panel's legend;
a point cut by the 5-point rule is drawn hollow and off the line; the dotted line is the setting's y_max.
The x axis starts at 0, where AUP's area starts (its ρ₁·y₁ term).
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib.style
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ssd.errors import SSDError
from ssd.report import aup
from ssd.report.runs import missing

DPI = 150
# family -> (colour, marker); other families get the spare ones in name order
STYLE = {
    "stepwise": ("black", "*"),
    "target_greedy (AR)": ("0.45", "P"),
    "Fast-dLLM": ("tab:blue", "o"),
    "Fast-dLLM (factor)": ("tab:cyan", "o"),
    "SSD": ("tab:orange", "s"),
    "speculative Fast-dLLM": ("tab:red", "v"),
    "speculative Fast-dLLM (factor)": ("tab:pink", "v"),
    "PSD": ("tab:green", "^"),
    "PSD (factor)": ("tab:olive", "^"),
    "DiffuSpec": ("tab:purple", "D"),
}
SPARE = [("tab:brown", "X"), ("tab:gray", "h"), ("gold", "<"), ("teal", ">")]


def family_style(name: str, names: list[str]) -> tuple[str, str]:
    if name in STYLE:
        return STYLE[name]
    spare = sorted(n for n in set(names) if n not in STYLE)
    return SPARE[spare.index(name) % len(SPARE)]


def _title(first: dict[str, Any], several_sweeps: bool) -> str:
    frame = f"{first['cache']} cache, block {first['block_length']}, gen {first['gen_length']}"
    if first["temperature"]:
        frame += f", T={first['temperature']:g}"
    where = f" [{first['sweep']}, {first['device']}]" if several_sweeps else ""
    return f"{first['model']} · {first['benchmark']} · {frame}{where}"


def _panel(ax: Any, table: pd.DataFrame, names: list[str]) -> None:
    y_max = max((y for y in table["y_max"] if not missing(y)), default=None)
    top, low, any_cut = 0.0, 100.0, False
    for r in table.to_dict("records"):
        points, own = list(r["curve"]), list(r["own"])  # all, the anchor's first; the family's own
        if not points:
            continue
        color, marker = family_style(r["family"], names)
        curve = aup.kept(points)
        size = 12 if marker == "*" else 7
        ax.plot([p[0] for p in curve], [p[1] for p in curve], color=color, lw=1.5, zorder=2)
        for hollow in (False, True):
            mine = [p for p in own if (p not in curve) == hollow]
            any_cut |= hollow and bool(mine)
            style = {"markerfacecolor": "none"} if hollow else {}
            ax.plot(
                [p[0] for p in mine],
                [p[1] for p in mine],
                ls="",
                marker=marker,
                markersize=size,
                color=color,
                zorder=3,
                **style,
            )
        label = f"{r['family']}: AUP {r['aup']:.1f}"
        ax.plot([], [], color=color, marker=marker, markersize=size, lw=1.5, label=label)
        top = max(top, *(p[0] for p in points))
        low = min(low, *(p[1] for p in points))
    if y_max is not None:
        ax.axhline(y_max, color="0.5", lw=0.8, ls=":", zorder=0, label=f"y_max {y_max:.1f}%")
    if any_cut:
        hollow = {"marker": "o", "markerfacecolor": "none", "color": "0.3", "ls": ""}
        ax.plot([], [], label="hollow: below y₁ − 5, not counted", **hollow)
    ax.set_xlim(0.0, top * 1.08 + 0.1)
    ax.set_ylim(max(0.0, low - 8.0), 102.0)
    ax.set_xlabel("tokens per forward (TPF, ρ)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(True, color="0.9", lw=0.6)
    ax.legend(loc="lower left", fontsize=7, frameon=True, framealpha=0.85)


def figure(frame: pd.DataFrame) -> Figure:
    """AUP curves, a panel per setting of the frame's runs (those with an accuracy and a TPF)."""
    pairs = zip(frame["accuracy"], frame["tokens_per_forward"], strict=True)
    usable = [not (missing(a) or missing(t)) for a, t in pairs]
    frame = frame[usable]
    if frame.empty:
        raise SSDError("no finished run has both an accuracy and a TPF: no AUP curve to plot")
    table = aup.families(frame)
    settings = list(dict.fromkeys(table["setting"]))
    names = list(dict.fromkeys(table["family"]))
    several = len({(s, d) for s, d in zip(frame["sweep"], frame["device"], strict=True)}) > 1
    ncols = min(2, len(settings))
    nrows = math.ceil(len(settings) / ncols)
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(6.4 * ncols, 4.6 * nrows + 0.6), dpi=DPI)
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        fig.suptitle(
            "AUP (d3LLM): accuracy vs tokens per forward, per decoder family",
            fontsize=12,
            fontweight="bold",
        )
        for ax in axes.flat[len(settings) :]:
            ax.set_visible(False)
        for ax, setting in zip(axes.flat, settings, strict=False):
            rows = table[[s == setting for s in table["setting"]]]
            ax.set_title(_title(rows.iloc[0].to_dict(), several), fontsize=9)
            _panel(ax, rows, names)
        fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig
