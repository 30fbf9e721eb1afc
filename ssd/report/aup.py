"""AUP, accuracy under parallelism (d3LLM, ICML 2026): how the field now ranks parallel decoders.

A method's points (ρ = tokens per forward, y = accuracy %) are sorted by ρ (ties: lower accuracy first);
only those with y ≥ y₁ − 5 are kept (y₁: the accuracy at the smallest ρ); then

    AUP = ρ₁·y₁ + Σᵢ ½ (ρᵢ − ρᵢ₋₁) (yᵢ·W(yᵢ) + yᵢ₋₁·W(yᵢ₋₁)),   W(y) = min(exp(−3 (1 − y / y_max)), 1)

with y_max the best accuracy of any method on that task. It is the area under the accuracy-TPF curve
with accuracy below the task's best discounted, so it rewards parallelism only while accuracy holds, and
it needs no hardware: TPF counts forwards, not their cost. A single point scores ρ₁·y₁ (unweighted).

Here a method is a decoder *family* (`family`): the runs of one setting (`SETTING`: the tables' pairing
key, i.e. sweep, device, model, benchmark and samples, cache, block, gen length, temperature) whose
decoders differ only in their knobs (Fast-dLLM's τ arms, SSD's draft lengths and trees), anchored at the
setting's baseline run (stepwise; the AR target for DiffuSpec) as its ρ ≈ 1 point, as every method on
d3LLM's leaderboard starts at its ρ = 1 run (`families`). y_max is the best accuracy of any run of that
setting, every decoder counted (the autoregressive target too, as d3LLM counts its AR baselines).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ssd.report.runs import PAIRING_KEY, missing, with_baselines

ALPHA = 3.0  # W's steepness (d3LLM's)
DROP = 5.0  # accuracy points below y₁ a kept point may lose
SETTING = PAIRING_KEY
# decoder name -> family; a decoder not named here is a family of its own name
FAMILIES = {
    "stepwise": "stepwise",
    "fast_dllm": "Fast-dLLM",
    "ssd": "SSD",
    "psd": "PSD",
    "diffuspec": "DiffuSpec",
    "target_greedy": "target_greedy (AR)",
}
Point = tuple[float, float]
COLUMNS = ("model", "benchmark", "cache", "block_length", "gen_length", "temperature", "sweep", "device")
COLUMNS += ("setting", "family", "runs", "anchor", "points", "kept", "tpf_lo", "tpf_hi", "y1", "y_max", "aup")
COLUMNS += ("curve", "own")  # all the points (the anchor's first), the family's own (not in aup.csv)


def family(run: Mapping[str, Any]) -> str:
    """The family of a run (a report row: `decoder`, `rule`, `policy`), the one rule to extend.

    SSD speculating over Fast-dLLM (`decoder.policy: fast_dllm`) is "speculative Fast-dLLM"; a run
    without the key speculates over stepwise. Fast-dLLM's two commit rules are two families, since a
    factor and a threshold are not points of one curve: "(factor)" marks the factor rule's.
    """
    decoder = str(run.get("decoder"))
    name = FAMILIES.get(decoder, decoder)
    if decoder == "ssd" and run.get("policy") == "fast_dllm":
        name = "speculative Fast-dLLM"
    return name + (" (factor)" if run.get("rule") == "factor" else "")


def weight(y: float, y_max: float) -> float:
    """W(y) = min(exp(−3 (1 − y / y_max)), 1): 1 at the task's best accuracy, less below it."""
    return 1.0 if y >= y_max else math.exp(-ALPHA * (1.0 - y / y_max))


def kept(points: Sequence[Point]) -> list[Point]:
    """The points AUP integrates: sorted by ρ, those within 5 points of the accuracy at the smallest ρ."""
    ordered = sorted((float(r), float(y)) for r, y in points)
    if not ordered:
        return []
    floor = ordered[0][1] - DROP
    return [(r, y) for r, y in ordered if y >= floor]


def aup(points: Sequence[Point], y_max: float) -> float:
    """AUP of one method's (TPF, accuracy %) points, with the task's best accuracy `y_max` (%)."""
    curve = kept(points)
    if not curve:
        raise ValueError("AUP of no points")
    total = curve[0][0] * curve[0][1]
    for (r0, y0), (r, y) in zip(curve, curve[1:], strict=False):
        total += 0.5 * (r - r0) * (y * weight(y, y_max) + y0 * weight(y0, y_max))
    return total


def _points(rows: Sequence[Mapping[str, Any]]) -> list[Point]:
    return [
        (float(r["tokens_per_forward"]), 100.0 * float(r["accuracy"]))
        for r in rows
        if not (missing(r["tokens_per_forward"]) or missing(r["accuracy"]))
    ]


def setting_key(run: Mapping[str, Any]) -> tuple:
    return tuple(None if missing(run[k]) else run[k] for k in SETTING)


def _anchor(runs: list[dict[str, Any]], by_run: Mapping[str, dict[str, Any]]) -> tuple[str, dict | None]:
    """The family's ρ ≈ 1 point and what it is: its runs' baseline run (stepwise; the AR target for
    DiffuSpec); "itself" for the baseline's own family, "none" where the setting has no baseline run."""
    base = by_run.get(str(runs[0].get("baseline_run")))
    if base is None:
        return "none", None
    if any(r["run"] == base["run"] for r in runs):
        return "itself", None
    return family(base), base


def families(frame: pd.DataFrame, y_max: Mapping[tuple, float] | None = None) -> pd.DataFrame:
    """One row per setting and family, in the frame's order: its runs, its anchor, its points (the anchor's
    first) and those kept, y₁, y_max, AUP.

    Each family's curve starts at its anchor, the baseline run of its setting (ssd/report/runs.py,
    `with_baselines`), as each method on d3LLM's leaderboard starts at its ρ = 1 run: our families' knobs
    (τ, N, tree) all reach stepwise at the limit, and without that point AUP's unweighted first term ρ₁·y₁
    would let a single lossy point score as if its accuracy held from ρ = 0. `y_max` may give a setting's
    best accuracy (%) from outside the frame (the published leaderboard's methods); the frame's own best
    counts too. Runs without an accuracy or a TPF take no part.
    """
    if "baseline_run" not in frame.columns:
        frame = with_baselines(frame)
    records = frame.to_dict("records")
    by_run = {str(r["run"]): r for r in records}
    groups: dict[tuple, dict[str, list[dict[str, Any]]]] = {}
    for r in records:
        groups.setdefault(setting_key(r), {}).setdefault(family(r), []).append(r)
    rows = []
    for key, by_family in groups.items():
        every = _points([r for runs in by_family.values() for r in runs])
        best = max([y for _, y in every] + [(y_max or {}).get(key, -math.inf)], default=-math.inf)
        for name, runs in by_family.items():
            anchored, anchor = _anchor(runs, by_run)
            points = _points(([anchor] if anchor else []) + runs)
            curve = kept(points)
            rows.append(
                {
                    **{k: runs[0][k] for k in COLUMNS[:8]},
                    "setting": key,
                    "family": name,
                    "runs": len(runs),
                    "anchor": anchored,
                    "points": len(points),
                    "kept": len(curve),
                    "tpf_lo": curve[0][0] if curve else None,
                    "tpf_hi": curve[-1][0] if curve else None,
                    "y1": curve[0][1] if curve else None,
                    "y_max": best if curve else None,
                    "aup": aup(points, best) if curve else None,
                    "curve": points,
                    "own": _points(runs),
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def with_families(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame plus each run's `family`, the family's `family_aup` and whether its point was kept
    (`aup_kept`: within 5 points of y₁, the accuracy at the smallest TPF of the family's curve)."""
    table = families(frame)
    scores = {(r["setting"], r["family"]): r for r in table.to_dict("records")}
    fams, aups, keeps = [], [], []
    for r in frame.to_dict("records"):
        found = scores.get((setting_key(r), family(r)))
        fams.append(family(r))
        aups.append(None if found is None else found["aup"])
        point, y1 = _points([r]), None if found is None else found["y1"]
        keeps.append(bool(point) and not missing(y1) and point[0][1] >= y1 - DROP)
    out = frame.copy()
    out["family"] = pd.Series(fams, index=frame.index, dtype=object)
    out["family_aup"] = pd.Series(aups, index=frame.index, dtype=float)
    out["aup_kept"] = pd.Series(keeps, index=frame.index, dtype=bool)
    return out


def _fmt(value: Any, spec: str) -> str:
    return "n/a" if missing(value) else f"{value:{spec}}"


HEADERS = ("model", "benchmark", "cache", "block", "gen", "T", "sweep", "device", "family", "runs", "anchor")
HEADERS += ("kept", "TPF range", "y₁ %", "y_max %", "AUP")
RIGHT = (
    False,
    False,
    False,
    True,
    True,
    True,
    False,
    False,
    False,
    True,
    False,
    True,
    True,
    True,
    True,
    True,
)
LEGEND = (
    "AUP (accuracy under parallelism, d3LLM): a family's runs of one setting as (TPF, accuracy %) points, "
    "with its anchor (the setting's baseline run, stepwise or the AR target: its TPF ≈ 1 point, as each "
    "method on d3LLM's leaderboard starts at its TPF-1 run; itself for the baseline's family, none where "
    "the setting has no baseline run), "
    "sorted by TPF, those within 5 points of y₁ (the accuracy at the smallest TPF) kept; AUP = ρ₁y₁ + "
    "Σ ½(ρᵢ − ρᵢ₋₁)(yᵢW(yᵢ) + yᵢ₋₁W(yᵢ₋₁)), W(y) = min(exp(−3(1 − y/y_max)), 1), y_max the best accuracy "
    "of any run of the setting. Higher is better; hardware-independent. kept: points kept of those with an "
    "accuracy and a TPF, the anchor's included. Families: ssd/report/aup.py (`family`)."
)


def display_rows(table: pd.DataFrame) -> list[list[str]]:
    rows = []
    for r in table.to_dict("records"):
        span = "n/a" if missing(r["tpf_lo"]) else f"{r['tpf_lo']:.2f}–{r['tpf_hi']:.2f}"
        if not missing(r["tpf_lo"]) and r["tpf_lo"] == r["tpf_hi"]:
            span = f"{r['tpf_lo']:.2f}"
        rows.append(
            [str(r["model"]), str(r["benchmark"]), str(r["cache"]), str(r["block_length"])]
            + [str(r["gen_length"]), f"{r['temperature']:g}", str(r["sweep"]), str(r["device"])]
            + [str(r["family"]), str(r["runs"]), str(r["anchor"]), f"{r['kept']}/{r['points']}", span]
            + [_fmt(r["y1"], ".1f"), _fmt(r["y_max"], ".1f"), _fmt(r["aup"], ".1f")]
        )
    return rows
