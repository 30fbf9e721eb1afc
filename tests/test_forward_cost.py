"""scripts/forward_cost.py runs end to end at tiny shapes on a CPU, and its replays follow the records."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ssd.config import CacheMode, FastDLLMConfig, SSDConfig
from ssd.decoders.replay import ReplayFastDLLM, ReplaySSD
from ssd.decoders.ssd import SelfSpeculative
from ssd.models.tiny import tiny_model
from tests.helpers import load_script, random_prompt

forward_cost = load_script("forward_cost")


def test_tiny_run_writes_every_table(tmp_path: Path) -> None:
    args = ["--shapes", "tiny-dream", "--contexts", "48", "--max-candidates", "5", "--repeats", "1"]
    args += ["--prompts", "1", "--gen-length", "16", "--e2e-block", "8", "--ssd-n", "2", "--exact-n", "2"]
    args += ["--record-limit", "3", "--copy-mib", "8", "--records", str(tmp_path / "records")]
    args += ["--out", str(tmp_path / "out"), "--tag", "t"]
    forward_cost.main(args)
    result = json.loads((tmp_path / "out" / "t.json").read_text())
    [f] = result["shapes"]["tiny-dream"]["forwards"]
    assert all(f[f"verify_{v}_{b}_ms"] > 0 for v in ("batch", "tree", "tree_exact") for b in range(1, 6))
    assert f["floor_ms"] > 0 and f["cache_bytes"] > 0 and f["achieved_bw"] > 0
    e2e = {r["decoder"]: r for r in result["shapes"]["tiny-dream"]["end_to_end"]}
    assert set(e2e) == {
        "stepwise",
        "fast_dllm τ=0.9",
        "ssd N=2 batch",
        "ssd N=2 tree",
        "ssd N=2 batch bit-exact",
        "ssd N=2 tree bit-exact",
        "stepwise batch bit-exact (2 rows)",
        "stepwise tree bit-exact (2 rows)",
    }
    assert e2e["stepwise"]["nfe"] == 16 and e2e["stepwise"]["speedup"] == 1.0
    assert e2e["ssd N=2 tree"]["nfe"] == e2e["ssd N=2 batch"]["nfe"]  # the same replayed acceptance
    md = (tmp_path / "out" / "t.md").read_text()
    assert "tree verification of N=5 at ctx 48" in md and "weight-read floor" in md
    assert len(list((tmp_path / "records").iterdir())) >= 2  # the recorded runs it replayed


def test_replayed_ssd_accepts_the_recorded_lengths() -> None:
    """Replaying SSD's own acceptance pattern reproduces its accounting exactly."""
    model = tiny_model("llada", seed=0)
    cfg = SSDConfig(gen_length=16, block_length=8, cache=CacheMode.dual, draft_length=4)
    prompt = random_prompt(60, 3)
    real = SelfSpeculative(cfg).generate(model, prompt)
    replay = ReplaySSD(cfg, real.accepted).generate(model, prompt)
    assert replay.accepted == real.accepted and replay.nfe == real.nfe
    forced = ReplaySSD(cfg, [4]).generate(model, prompt)
    assert forced.accepted == [4, 4, 4, 4]  # clipped by nothing: every draft of each iteration accepted


def test_replayed_fast_dllm_commits_the_recorded_counts() -> None:
    model = tiny_model("llada", seed=0)
    cfg = FastDLLMConfig(gen_length=16, block_length=8, cache=CacheMode.dual)
    out = ReplayFastDLLM(cfg, [3, 2, 5]).generate(model, random_prompt(60, 4))
    assert out.accepted == [3, 2, 3, 3, 2, 3]  # 5 clipped to the 3 left in each block


def test_real_shapes_match_the_published_sizes() -> None:
    """The GPU shapes, built on the meta device: parameter counts of LLaDA-8B and Dream-7B."""
    counts = {}
    for shape in ("llada-8b", "dream-7b"):
        model = forward_cost.build(shape, torch.device("meta"), torch.bfloat16)
        counts[shape] = sum(p.numel() for p in model.parameters())
    assert 8.0e9 < counts["llada-8b"] < 8.1e9
    assert 7.6e9 < counts["dream-7b"] < 7.7e9
