"""Projected speedups: a run's recorded forwards priced with a forward-cost table."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ssd.cost import CostTable
from ssd.errors import SSDError
from ssd.report.projection import DEFAULT_COST, projected_seconds, with_projection


def table(tmp_path: Path, **over) -> CostTable:
    d = {"device": "X1", "model_shape": "m", "block_length": 8, "refresh_ms": 30.0} | over
    d.setdefault("rows_ms", {"1": 10.0, "5": 12.0})
    (tmp_path / "x1.json").write_text(json.dumps(d))
    return CostTable.load(tmp_path / "x1.json")


def test_cost_is_interpolated_between_rows_and_extrapolated_beyond(tmp_path: Path) -> None:
    t = table(tmp_path)
    assert t.ms(1) == 10.0 and t.ms(3) == pytest.approx(11.0) and t.ms(5) == 12.0
    assert t.ms(9) == pytest.approx(14.0)  # the slope from 1 to 5 rows continued
    assert t.name == "x1" and t.max_rows == 5


def test_rows_of_another_block_are_priced_by_their_query_tokens(tmp_path: Path) -> None:
    t = table(tmp_path)  # measured at block 8
    assert t.ms(1, 32) == t.ms(4) == pytest.approx(11.5)  # a row of 32 tokens: four rows of 8
    assert t.ms(2, 8) == t.ms(2) and t.ms(1, 4) == t.ms(1)  # half a row costs no less than one
    assert t.forward_ms(3, 1, 16) == pytest.approx(t.ms(4) + 30.0)  # two cached rows of 16, one refresh
    assert projected_seconds({"1": 2, "2": 1}, 1, 2, "dual", t, block=32) == pytest.approx(
        (60 + t.ms(8)) / 1000
    )
    with pytest.raises(SSDError, match="block_length"):
        table(tmp_path, block_length=None)


def test_projected_time_prices_refreshes_cached_and_uncached_forwards(tmp_path: Path) -> None:
    t = table(tmp_path)
    # 2 samples, 3 blocks: 6 refreshes among the 1-row forwards, then 4 one-row and 10 three-row forwards
    hist = {"1": 10, "3": 10}
    assert projected_seconds(hist, 2, 3, "dual", t) == pytest.approx((6 * 30 + 4 * 10 + 10 * 11) / 1000)
    assert projected_seconds(hist, 2, 3, "none", t) == pytest.approx((6 * 30 + 4 * 30 + 10 * 90) / 1000)
    with pytest.raises(ValueError, match="refreshes"):
        projected_seconds({"3": 5}, 2, 3, "dual", t)
    # without a cache, filled blocks that seed the next (seed_next_block) skip refreshes: still priced
    assert projected_seconds({"1": 2, "4": 5}, 2, 3, "none", t) == pytest.approx((2 * 30 + 5 * 120) / 1000)


def test_recorded_forward_shapes_price_each_seeding_row_as_a_refresh(tmp_path: Path) -> None:
    t = table(tmp_path)
    assert t.forward_ms(1, 1) == 30.0 and t.forward_ms(3, 3) == 90.0 and t.forward_ms(3, 0) == t.ms(3)
    assert t.forward_ms(6, 1) == pytest.approx(t.ms(5) + 30.0)  # 5 cached rows + 1 whole row
    # without seeding, the shapes give what the rows histogram gives
    hist, shapes = {"1": 10, "3": 10}, {"1/1": 6, "1/0": 4, "3/0": 10}
    assert projected_seconds(hist, 2, 3, "dual", t, shapes) == pytest.approx(
        projected_seconds(hist, 2, 3, "dual", t)
    )
    # 2 samples, 3 blocks, 4 blocks seeded: 2 refreshes only, 4 forwards of 5 cached + 1 whole row
    seeded = {"1/1": 2, "3/0": 6, "6/1": 4}
    want = 2 * 30 + 6 * 11 + 4 * (12 + 30)
    assert projected_seconds({"1": 2, "3": 6, "6": 4}, 2, 3, "dual", t, seeded) == pytest.approx(want / 1000)


def test_projected_speedup_is_against_the_runs_baseline(tmp_path: Path) -> None:
    t = table(tmp_path)
    common = dict(block_length=8, gen_length=24, cache="dual", n_samples=1, total_generated_tokens=24.0)
    frame = pd.DataFrame(
        [
            dict(run="a", decoder="stepwise", baseline_run="a", forward_rows_histogram='{"1": 24}', **common),
            dict(
                run="b", decoder="ssd", baseline_run="a", forward_rows_histogram='{"1": 3, "5": 3}', **common
            ),
            dict(run="c", decoder="diffuspec", baseline_run="a", forward_rows_histogram='{"1": 9}', **common),
        ]
    )
    out = with_projection(frame, t)
    step, ssd = (3 * 30 + 21 * 10) / 1000, (3 * 30 + 3 * 12) / 1000
    assert out["projected_speedup"].tolist()[:2] == pytest.approx([1.0, step / ssd])
    assert pd.isna(out["projected_speedup"][2])  # another model's forwards: not projected
    assert pd.isna(with_projection(frame, None)["projected_speedup"]).all()


def test_the_recorded_h100_table_loads_and_bad_tables_are_one_line_errors(tmp_path: Path) -> None:
    h100 = CostTable.load(DEFAULT_COST)
    assert h100.device == "H100" and h100.ms(6) < 1.2 * h100.ms(1) < h100.refresh_ms
    (tmp_path / "bad.json").write_text('{"device": "x"}')
    for path, message in ((tmp_path / "bad.json", "needs device"), (tmp_path / "no.json", "not found")):
        with pytest.raises(SSDError, match=message) as e:
            CostTable.load(path)
        assert "\n" not in str(e.value)
    with pytest.raises(SSDError, match="rows 1"):
        table(tmp_path, rows_ms={"2": 3.0})


def test_tree_runs_are_labelled_by_their_tree_not_a_draft_length() -> None:
    from ssd.report.runs import decoder_label

    assert decoder_label({"name": "ssd", "draft_length": 4, "tree": "0-1"})[0] == "ssd tree=0-1"
    label = decoder_label({"name": "ssd", "draft_length": 4, "tree_budget": 8, "tree_cost": "x/h100.json"})
    assert label[0] == "ssd budget=8 cost=h100"
    assert decoder_label({"name": "ssd", "draft_length": 4, "tree": "", "tree_budget": 0})[0] == "ssd N=4"
    seeded = {"name": "ssd", "draft_length": 4, "tree_budget": 16, "seed_next_block": True}
    assert decoder_label(seeded)[0] == "ssd budget=16 seeded"


def test_the_adaptive_tree_cuts_its_budget_where_rows_stop_paying(tmp_path: Path) -> None:
    import torch

    from ssd.decoders.adaptive import AdaptiveTree

    logits = torch.zeros(1, 8, 20)
    logits[0, :, 3] = 6.0  # every position confident: deep trees look likely
    order = torch.arange(8)
    table(tmp_path)  # writes x1.json: a gentle slope
    flat = AdaptiveTree(6, str(tmp_path / "x1.json")).grow(logits, order, 8)[0]
    (tmp_path / "steep.json").write_text(
        json.dumps(
            {
                "device": "S",
                "model_shape": "m",
                "block_length": 8,
                "refresh_ms": 1.0,
                "rows_ms": {"1": 1.0, "2": 50.0},
            }
        )
    )
    steep = AdaptiveTree(6, str(tmp_path / "steep.json")).grow(logits, order, 8)[0]
    assert flat.evaluated == 6 and steep.evaluated == 1
    assert AdaptiveTree(6).grow(logits, order, 8)[0].evaluated == 6
