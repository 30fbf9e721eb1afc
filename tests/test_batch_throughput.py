"""scripts/batch_throughput.py: its arms compose on the base config, batched forwards are counted as the
batch made them, identity to B = 1 is read from the run folders, and the report says what it cannot price."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from ssd.config import register
from ssd.cost import CostTable
from ssd.run import CONF_DIR
from tests.helpers import load_script

bt = load_script("batch_throughput")


def test_every_arm_composes_on_the_embedded_model_in_its_frame() -> None:
    register()
    names = []
    for _, overrides in bt.ARMS:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[*overrides, "batch_size=16"])
        assert (cfg.model.path, cfg.benchmark.name, cfg.batch_size) == ("ssd/assets/arith-llada", "arith", 16)
        assert (cfg.decoder.gen_length, cfg.decoder.block_length, str(cfg.decoder.cache.value)) == (
            24,
            8,
            "dual",
        )
        policy = cfg.decoder.get("policy", "")
        names.append(f"{cfg.decoder.name}[{getattr(policy, 'value', policy)}]")
    assert names == ["stepwise[]", "fast_dllm[]", "ssd[stepwise]", "ssd[stepwise]", "psd[]", "ssd[fast_dllm]"]
    assert bt.BATCH_SIZES == (1, 2, 4, 8, 16)


def test_a_batch_counts_its_shared_forwards_and_equals_batch_size_one(tmp_path: Path) -> None:
    cost = CostTable.load(bt.COST)
    models: dict = {}
    overrides = ("decoder=ssd", "decoder.draft_length=4")
    one_path, one_rows = bt.job(overrides, 1, 4, str(tmp_path), models)
    one = bt.record("ssd", 1, one_path, one_rows, None, cost)
    four_path, four_rows = bt.job(overrides, 4, 4, str(tmp_path), models)
    four = bt.record("ssd", 4, four_path, four_rows, one, cost)
    assert one["identical_to_bs1"] is None and four["identical_to_bs1"] == 1.0
    assert four["tpf"] == one["tpf"] and four["accuracy"] == one["accuracy"]
    # alone, the counted calls are the runner's own accounting; together, 4 sequences share each call
    assert one["tokens_per_batched_forward"] == pytest.approx(one["tpf"])
    assert one["max_rows"] <= 4 and four["max_rows"] > 4
    assert four["batched_forwards"] < one["batched_forwards"]
    assert four["tokens_per_batched_forward"] > 2 * one["tokens_per_batched_forward"]
    assert one["projected_tokens_per_s"] > 0 and four["projected_tokens_per_s"] is None
    assert one["tokens_per_cpu_s"] > 0


def test_the_report_prices_batch_size_one_only_and_says_why() -> None:
    cost = CostTable.load(bt.COST)
    base = {"n": 2, "accuracy": 1.0, "contended": False, "tpf": 1.0, "identical_to_bs1": None}
    base |= {"tokens_per_batched_forward": 1.0, "mean_rows": 1.0, "max_rows": 1}
    rows = [
        {**base, "arm": "stepwise", "batch_size": 1, "tokens_per_s": 10.0, "tokens_per_cpu_s": 20.0}
        | {"projected_tokens_per_s": 100.0},
        {**base, "arm": "stepwise", "batch_size": 2, "tokens_per_s": 15.0, "tokens_per_cpu_s": 30.0}
        | {"projected_tokens_per_s": None, "identical_to_bs1": 1.0, "contended": True},
        {**base, "arm": "fast", "batch_size": 1, "tokens_per_s": 30.0, "tokens_per_cpu_s": 60.0}
        | {"projected_tokens_per_s": 250.0, "max_rows": 12},
    ]
    data = {
        "command": "c",
        "cpus": 2,
        "uptime_before": "u0",
        "uptime_after": "u1",
        "seconds": 1.0,
        "rows": rows,
    }
    text = bt.report(data, cost)
    lines = [line for line in text.splitlines() if line.startswith("| stepwise") or line.startswith("| fast")]
    assert "1.00× stepwise" in lines[0] and "2.50× stepwise" in lines[2]
    assert "15.0†" in lines[1] and "1.50×" in lines[1] and "not priced (B caches)" in lines[1]
    assert "extrapolated, for: fast" in text and "Not priced at B > 1" in text and "u0" in text
