"""Pareto plots of finished runs (`make plots`, `python -m ssd.report.plots [--runs DIR ...] [--out DIR]`).

Three figures under `results/plots/`: accuracy against throughput (tokens/s, log x), against tokens per
forward, and against the *projected* speedup over stepwise on the device of a forward-cost table
(ssd/report/projection.py: a projection, not a measurement, and labelled so), one panel per model ×
benchmark, one marker per decoder, each point labelled with its knob (N, τ, f) and with whatever else
varies inside its panel (cache, block, gen length, device, sweep).
The Pareto frontier (no other run both more accurate and faster) of the dLLM decoders is drawn as a step
line (the autoregressive target_greedy is a point of comparison, off it); stepwise, the lossless
reference, is the black star. In the throughput plot a hollow marker is a run timed while the machine was
oversubscribed (summary.json timing.contended): its speed is not to be trusted. Beside them,
`aup_tpf.png`: the AUP curves of each decoder family (ssd/report/aup_plot.py).

The same run folders give byte-identical PNGs: the Agg canvas is used directly (no pyplot, no global
backend), the style is matplotlib's default whatever the user's matplotlibrc, points are drawn in the
frame's fixed order, and the PNG carries no software or time metadata.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import matplotlib.style
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.ticker import LogFormatter
from matplotlib.transforms import Bbox

from ssd.cost import CostTable
from ssd.errors import SSDError, fail
from ssd.report import aup_plot, projection
from ssd.report.runs import DECODER_ORDER, DEFAULT_RUNS, Runs, load_runs, missing, with_baselines
from ssd.report.tables import write_files

DEFAULT_OUT = Path("results/plots")
DPI = 150
# x column, axis label, log scale, file name
AXES = {
    "throughput": ("throughput_tokens_per_s", "throughput (generated tokens/s, log scale)", True),
    "tpf": ("tokens_per_forward", "tokens per forward (TPF)", False),
    "projected_speedup": (
        "projected_speedup",
        "projected speedup over stepwise on {device} (a projection)",
        False,
    ),
}
STYLE: dict[str, dict[str, Any]] = {
    # Large and drawn under the others: a run at the very same spot shows inside the star.
    "stepwise": {"marker": "*", "color": "black", "s": 260, "label": "stepwise (reference)", "zorder": 2.5},
    "target_greedy": {"marker": "P", "color": "0.45", "s": 80, "label": "target_greedy (AR reference)"},
    "fast_dllm": {"marker": "o", "color": "tab:blue", "s": 50},
    "ssd": {"marker": "s", "color": "tab:orange", "s": 50},
    "psd": {"marker": "^", "color": "tab:green", "s": 60},
    "diffuspec": {"marker": "D", "color": "tab:purple", "s": 45},
}
SPARE = [("v", "tab:red"), ("X", "tab:brown"), ("h", "tab:pink"), ("<", "tab:olive"), (">", "tab:cyan")]
# Context shown in a point's label when it varies within its panel: (column, how to show it).
CONTEXT = (
    ("cache", lambda v: "no cache" if v == "none" else str(v)),
    ("block_length", lambda v: f"block {v}"),
    ("gen_length", lambda v: f"gen {v}"),
    ("device", str),
    ("sweep", lambda v: f"[{v}]"),
)


BLOCK_CONTEXT = ("cache", "block_length", "gen_length")
BLOCKLESS = ("target_greedy", "diffuspec")  # decoders of an autoregressive target: no blocks, no cache
AUTOREGRESSIVE = ("target_greedy",)  # baselines shown beside the dLLM decoders, off their frontier


def style(decoder: str, others: Sequence[str]) -> dict[str, Any]:
    """Marker, colour, size and legend label of a decoder (decoders unknown here get spare markers in
    name order, so the same set of decoders always looks the same)."""
    if decoder in STYLE:
        found = dict(STYLE[decoder])
    else:
        spare = sorted(d for d in set(others) if d not in STYLE)
        marker, color = SPARE[spare.index(decoder) % len(SPARE)]
        found = {"marker": marker, "color": color, "s": 50}
    found.setdefault("label", decoder)
    found.setdefault("zorder", 3)
    return found


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points (larger x and larger y are better), by ascending x."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1], i))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return sorted(front, key=lambda i: (points[i][0], i))


def point_labels(panel: pd.DataFrame) -> list[str]:
    """Each point's knob, plus the context columns that are not constant within the panel (cache, block
    and gen length only among the block decoders: the autoregressive target has none of them)."""
    block = ~panel["decoder"].isin(BLOCKLESS)
    varying = [
        (c, show)
        for c, show in CONTEXT
        if panel.loc[block if c in BLOCK_CONTEXT else slice(None), c].nunique(dropna=False) > 1
    ]
    labels = []
    for r in panel.to_dict("records"):
        parts = [r["knob"]] if r["knob"] else []
        parts += [show(r[c]) for c, show in varying if not (c in BLOCK_CONTEXT and r["decoder"] in BLOCKLESS)]
        labels.append(", ".join(parts))
    return labels


def _limits(values: Sequence[float], log: bool, min_span: float) -> tuple[float, float]:
    vals = [math.log10(v) for v in values] if log else list(values)
    lo, hi = min(vals), max(vals)
    pad = max(0.12 * (hi - lo), min_span / 2)
    lo, hi = lo - pad, hi + pad
    return (10**lo, 10**hi) if log else (lo, hi)


def _candidates() -> list[tuple[float, float, str, str]]:
    """Label offsets (points) around a marker, nearest first."""
    out = []
    for d in (7, 15, 24, 34):
        h = 0.6 * d
        out += [(0, d, "center", "bottom"), (0, -d, "center", "top"), (d, h, "left", "bottom")]
        out += [(d, -h, "left", "top"), (-d, h, "right", "bottom"), (-d, -h, "right", "top")]
    for d in (46, 58, 70):  # crowded: stack further above and below
        out += [(0, d, "center", "bottom"), (0, -d, "center", "top")]
    return out


def _overlap(a: Bbox, boxes: Sequence[Bbox]) -> float:
    total = 0.0
    for b in boxes:
        w = min(a.x1, b.x1) - max(a.x0, b.x0)
        h = min(a.y1, b.y1) - max(a.y0, b.y0)
        if w > 0 and h > 0:
            total += w * h
    return total


def _label_points(ax: Any, renderer: Any, xy: list[tuple[float, float]], labels: list[str]) -> None:
    """Place each label where it overlaps no marker, no earlier label and stays inside the axes (the
    least overlapping spot when there is none); far labels get a thin leader line."""
    frame = ax.get_window_extent(renderer)
    pix = [ax.transData.transform(p) for p in xy]
    r = 5.0 * DPI / 72  # a marker's half size, in pixels
    taken = [Bbox.from_extents(x - r, y - r, x + r, y + r) for x, y in pix]
    for (x, y), text in zip(xy, labels, strict=True):
        if not text:
            continue
        best = None
        for dx, dy, ha, va in _candidates():
            leader = {"arrowstyle": "-", "lw": 0.5, "color": "0.55"} if abs(dx) + abs(dy) > 12 else None
            note = ax.annotate(
                text,
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                ha=ha,
                va=va,
                fontsize=7,
                color="0.15",
                arrowprops=leader,
                zorder=5,
            )
            note.update_positions(renderer)
            box = Text.get_window_extent(note, renderer).padded(2)  # the text, not its leader line
            outside = box.x0 < frame.x0 or box.x1 > frame.x1 or box.y0 < frame.y0 or box.y1 > frame.y1
            cost = _overlap(box, taken) + (1e9 if outside else 0.0)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, note, box)
            else:
                note.remove()
            if cost == 0:
                break
        taken.append(best[2])


def _panel(ax: Any, renderer: Any, panel: pd.DataFrame, x: str, log: bool, decoders: Sequence[str]) -> None:
    xs = panel[x].astype(float).tolist()
    ys = (100 * panel["accuracy"].astype(float)).tolist()
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(LogFormatter())  # 20, 50, 100 rather than 2×10¹
        ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    ax.set_xlim(*_limits(xs, log, 0.3 if log else 0.5))
    lo, hi = _limits(ys, False, 6.0)
    ax.set_ylim(max(lo, -0.1 * (hi - lo)), min(hi, 100 + 0.1 * (hi - lo)))
    ax.set_yticks([y for y in ax.get_yticks() if 0 <= y <= 100])  # a margin, but no tick below 0 or above 100
    # The frontier is the dLLM decoders': an autoregressive baseline is a point of comparison, not an option.
    on = [i for i, d in enumerate(panel["decoder"]) if d not in AUTOREGRESSIVE]
    front = [on[i] for i in pareto_front([(xs[i], ys[i]) for i in on])]
    fx, fy = [xs[i] for i in front], [ys[i] for i in front]
    contended = [bool(c) for c in panel["contended"]]
    ax.plot(fx, fy, drawstyle="steps-post", color="0.6", lw=1.2, ls="--", zorder=1)
    ax.scatter(fx, fy, s=260, facecolors="none", edgecolors="0.6", lw=0.8, zorder=2)
    for decoder in sorted(set(panel["decoder"]), key=lambda d: (DECODER_ORDER + (d,)).index(d)):
        s = style(decoder, decoders)
        for hollow in (False, True):  # hollow: timed under CPU contention, its speed is not to be trusted
            rows = [i for i, d in enumerate(panel["decoder"]) if d == decoder and contended[i] == hollow]
            if rows:
                ax.scatter(
                    [xs[i] for i in rows],
                    [ys[i] for i in rows],
                    marker=s["marker"],
                    facecolors="none" if hollow else s["color"],
                    edgecolors=s["color"] if hollow else "white",
                    s=s["s"],
                    zorder=s["zorder"],
                    linewidths=1.2 if hollow else 0.6,
                )
    ax.grid(True, which="major", color="0.9", lw=0.6)
    if log:
        ax.grid(True, which="minor", color="0.95", lw=0.4)
    _label_points(ax, renderer, list(zip(xs, ys, strict=True)), point_labels(panel))


def figure(frame: pd.DataFrame, kind: str, cost: CostTable | None = None) -> Figure:
    """The figure of one kind ("throughput", "tpf", "projected_speedup": priced with `cost`, default the
    recorded H100 table): a panel per model × benchmark."""
    x, xlabel, log = AXES[kind]
    title = "Accuracy vs throughput" if kind == "throughput" else "Accuracy vs tokens per forward"
    subtitle = ""
    if kind == "projected_speedup":
        cost = cost if cost is not None else projection.default_table()
        if cost is None:
            raise SSDError("no forward-cost table to project speedups with: pass one (results/forward_cost/)")
        frame = projection.with_projection(with_baselines(frame), cost)
        xlabel = xlabel.format(device=cost.device)
        title = f"Accuracy vs PROJECTED speedup on {cost.device}"
        subtitle = (
            f"a projection, not a measurement: each recorded forward priced with "
            f"results/forward_cost/{cost.name}.json"
        )
    usable = [
        not (missing(a) or missing(v) or v <= 0) for a, v in zip(frame["accuracy"], frame[x], strict=True)
    ]
    frame = frame[usable]
    if kind != "throughput":  # TPF and the projection count forwards: load does not change them
        frame = frame.assign(contended=False)
    if frame.empty:
        raise SSDError(f"no finished run has both an accuracy and a {x}: nothing to plot")
    groups = list(dict.fromkeys(zip(frame["model"], frame["benchmark"], strict=True)))
    ncols = min(2, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    decoders = sorted(set(frame["decoder"]), key=lambda d: (DECODER_ORDER + (d,)).index(d))
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(6.4 * ncols, 4.6 * nrows + 0.9), dpi=DPI)
        renderer = FigureCanvasAgg(fig).get_renderer()
        axes = fig.subplots(nrows, ncols, squeeze=False)
        fig.suptitle(title, fontsize=13, fontweight="bold")
        below = 0.3 / fig.get_figheight() if subtitle else 0.0  # a projection says so under its title
        if subtitle:
            fig.text(0.5, 0.975 - 0.35 / fig.get_figheight(), subtitle, ha="center", va="top", fontsize=7.5)
        handles = [
            Line2D(
                [],
                [],
                ls="",
                marker=style(d, decoders)["marker"],
                color=style(d, decoders)["color"],
                markersize=11 if d == "stepwise" else 7,
                label=style(d, decoders)["label"],
            )
            for d in sorted(decoders, key=lambda d: d != "stepwise")  # the reference first
        ]
        frontier = {"markerfacecolor": "none", "markersize": 13, "marker": "o"}
        front = "Pareto frontier (dLLM)"
        handles.append(Line2D([], [], ls="--", color="0.6", label=front, **frontier))
        if kind == "throughput" and frame["contended"].any():
            hollow = {"marker": "o", "markerfacecolor": "none", "markeredgecolor": "0.3", "markersize": 7}
            handles.append(Line2D([], [], ls="", label="hollow: CPU contended", **hollow))
        per_row = 4 if ncols > 1 else 3  # one panel is 6.4 inches wide: three entries fit a row
        legend_rows = math.ceil(len(handles) / per_row)
        bottom = (0.25 + 0.22 * legend_rows) / fig.get_figheight()
        fig.legend(
            handles=handles, loc="lower center", ncol=min(per_row, len(handles)), frameon=False, fontsize=9
        )
        for ax in axes.flat[len(groups) :]:
            ax.set_visible(False)
        for ax, (model, benchmark) in zip(axes.flat, groups, strict=False):
            ax.set_title(f"{model} · {benchmark}", fontsize=10)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("accuracy (%)")
        fig.tight_layout(rect=(0, bottom, 1, 0.97 - below))
        for ax, (model, benchmark) in zip(axes.flat, groups, strict=False):
            panel = frame[(frame["model"] == model) & (frame["benchmark"] == benchmark)]
            _panel(ax, renderer, panel.reset_index(drop=True), x, log, decoders)
    return fig


def save_png(fig: Figure, path: Path | BinaryIO) -> None:
    """Write the PNG (to a path or a binary file) without metadata that would differ between renderings."""
    FigureCanvasAgg(fig)
    with matplotlib.style.context("default"):  # some settings are read when drawing
        fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})


def write_plots(runs: Runs, out_dir: str | Path = DEFAULT_OUT, cost: CostTable | None = None) -> list[Path]:
    """The Pareto plots and the AUP curves. The projected-speedup plot is left out, and said so on
    stdout, when there is no cost table or no run it can price (DiffuSpec's, a run without a baseline)."""
    if runs.frame.empty:
        raise SSDError(
            f"no finished run folders ({runs.note()}): run some jobs first (make sweep), or pass --runs "
            f"with the folder that holds them"
        )
    cost = cost if cost is not None else projection.default_table()
    figures = {}
    for kind in AXES:
        try:
            figures[f"pareto_{kind}.png"] = figure(runs.frame, kind, cost)
        except SSDError as e:
            if kind != "projected_speedup":
                raise
            print(f"plots: pareto_{kind}.png not written: {e}", flush=True)
    figures["aup_tpf.png"] = aup_plot.figure(runs.frame)
    pngs = {}
    for name, fig in figures.items():
        png = io.BytesIO()
        save_png(fig, png)
        pngs[name] = png.getvalue()
    return write_files(out_dir, pngs)


def main(argv: Sequence[str] | None = None) -> None:
    from ssd.report.select import choose
    from ssd.report.tables import parser

    args = parser("Pareto plots of finished runs, from run folders only.", DEFAULT_OUT).parse_args(argv)
    try:
        runs, scope = choose(load_runs(args.runs or [DEFAULT_RUNS]), args.sweep, args.all_sweeps)
        paths = write_plots(runs, args.out)
    except SSDError as e:
        fail(e)
    print(f"plots: {scope}: {runs.note()} -> {', '.join(map(str, paths))}")


if __name__ == "__main__":
    main()
