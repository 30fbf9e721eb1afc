"""Projected speedups: what a run's forwards would cost on another device, from a recorded cost table.

A CPU run measures TPF and the rows of every forward exactly; what it cannot measure is what those
forwards cost on a GPU, where a verification forward of several candidate rows costs little more than
one (ssd/cost.py). The projection prices each recorded forward with a cost table (ms per forward by rows,
for a named device and model shape) and divides the run's generated tokens by that time:

    projected seconds = sum over a run's forwards of cost(forward)
        cost = refresh_ms * rows               rows that all run the whole sequence: a block-start
                                               refresh (1 row), a forward without a cache
               rows_ms(rows)                   a cached forward over `rows` candidate blocks (of another
                                               block length than the table's: priced by query tokens,
                                               rows * block / the table's block)
               rows_ms(cached) + full * refresh_ms
                                               `full` whole-sequence rows (states that fill the block,
                                               seeding the next) beside `cached` cached rows: a second
                                               call, as the harness runs them (CostTable.forward_ms)
    projected speedup = (tokens / projected seconds) / (the baseline's tokens / its projected seconds)

Runs that recorded which rows ran whole (summary `forward_shape_histogram`) are priced forward by forward;
older ones from their rows histogram, a refresh per block per sample (CostTable.forward_ms).
The baseline is the run's measured-speedup baseline (ssd/report/runs.py: stepwise, same setting). It is
a projection, not a measurement: it assumes the table's model shape, context and layout, and it ignores
host work between forwards. Decoders whose forwards are not the masked model's (DiffuSpec's target,
target_greedy) get none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ssd.cost import CostTable

DEFAULT_COST = Path(__file__).resolve().parents[2] / "results/forward_cost/h100_llada8b.json"
NOT_PROJECTED = frozenset({"diffuspec", "target_greedy"})


def default_table() -> CostTable | None:
    return CostTable.load(DEFAULT_COST) if DEFAULT_COST.is_file() else None


def projected_seconds(
    histogram: dict[str, int],
    n_samples: int,
    blocks: int,
    cache: str,
    table: CostTable,
    shapes: dict[str, int] | None = None,
    block: int | None = None,
) -> float:
    """Projected decoding time of a run: from `shapes` ("rows/full": forwards) when recorded, else from
    its histogram of rows per forward (refreshes recorded as 1-row forwards: one per block per sample
    with a cache; without one every forward is priced as full-sequence rows)."""
    if shapes:
        return shapes_seconds(shapes, table, block)
    counts = {int(k): int(v) for k, v in histogram.items()}
    if cache == "none":  # every forward runs the whole sequence: refreshes (however many) and rows alike
        return sum(table.forward_ms(rows, rows) * n for rows, n in counts.items()) / 1000.0
    refreshes = n_samples * blocks
    if counts.get(1, 0) < refreshes:
        raise ValueError(f"{refreshes} refreshes expected, only {counts.get(1, 0)} one-row forwards recorded")
    counts[1] -= refreshes
    forwards = sum(table.ms(rows, block) * n for rows, n in counts.items())
    return (refreshes * table.refresh_ms + forwards) / 1000.0


def shapes_seconds(shapes: dict[str, int], table: CostTable, block: int | None = None) -> float:
    """Projected time of forwards counted by shape ("rows/whole": forwards, summary.json's
    forward_shape_histogram) over blocks of `block` tokens (default: the table's)."""
    return sum(table.forward_ms(*map(int, k.split("/")), block) * n for k, n in shapes.items()) / 1000.0


def _throughput(r: dict[str, Any], table: CostTable) -> float | None:
    hist, tokens = r.get("forward_rows_histogram"), r.get("total_generated_tokens")
    if r["decoder"] in NOT_PROJECTED or not hist or tokens is None or pd.isna(tokens):
        return None
    histogram = json.loads(hist) if isinstance(hist, str) else hist
    raw = r.get("forward_shapes")
    shapes = json.loads(raw) if isinstance(raw, str) else raw if isinstance(raw, dict) else None
    if not r["block_length"] or not r["n_samples"]:
        return None
    blocks = int(r["gen_length"]) // int(r["block_length"])
    try:
        seconds = projected_seconds(
            histogram,
            int(r["n_samples"]),
            blocks,
            str(r["cache"]),
            table,
            shapes or None,
            int(r["block_length"]),
        )
    except ValueError:
        return None
    return float(tokens) / seconds if seconds > 0 else None


def with_projection(frame: pd.DataFrame, table: CostTable | None) -> pd.DataFrame:
    """The frame (with baselines) plus `projected_tokens_per_s`, `projected_speedup` and `projection`
    (the cost table's name); NaN where there is no table, no rows record or no projected baseline."""
    out = frame.copy()
    records = frame.to_dict("records")
    tps = {r["run"]: (_throughput(r, table) if table is not None else None) for r in records}
    speedups = []
    for r in records:
        mine, base = tps[r["run"]], tps.get(r.get("baseline_run"))
        speedups.append(mine / base if mine and base else None)
    out["projected_tokens_per_s"] = pd.Series(
        [tps[r["run"]] for r in records], index=frame.index, dtype=float
    )
    out["projected_speedup"] = pd.Series(speedups, index=frame.index, dtype=float)
    out["projection"] = table.name if table is not None else ""
    return out


def header(table: CostTable | None) -> str:
    return f"projected speedup on {table.device}" if table is not None else "projected speedup"


def legend(table: CostTable | None) -> str:
    if table is None:
        return "projected speedup: n/a (no forward-cost table; see ssd/report/projection.py)."
    return (
        f"projected speedup on {table.device}: a PROJECTION, not a measurement: each recorded forward priced "
        f"with the cost table results/forward_cost/{table.name}.json ({table.model_shape}; ms per forward by "
        f"rows, extrapolated beyond {table.max_rows} rows; rows of another block than {table.block_length} "
        "priced by query tokens; a whole-sequence row beside cached ones, a state seeding the next block, "
        "adds a refresh), tokens over that time, over the baseline's."
    )
