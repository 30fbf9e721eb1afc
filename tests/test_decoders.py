"""Fast-dLLM, SSD and PSD-style decoding: the properties each one claims."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ssd.config import CacheMode, FastDLLMConfig, ParallelRule, PSDConfig, SSDConfig, StepwiseConfig
from ssd.decoders.fast_dllm import FastDLLM
from ssd.decoders.policy import FactorPolicy, StepwisePolicy, ThresholdPolicy
from ssd.decoders.psd import PSD
from ssd.decoders.ssd import SelfSpeculative
from ssd.decoders.stepwise import Stepwise
from ssd.errors import SSDError
from ssd.models.cache import BlockForward
from ssd.models.tiny import tiny_model
from tests.helpers import CountingModel, random_prompt

MODELS: dict[tuple[str, int], torch.nn.Module] = {}


def model_for(arch: str, seed: int):
    if (arch, seed) not in MODELS:
        MODELS[arch, seed] = tiny_model(arch, seed=seed)
    return MODELS[arch, seed]


setups = st.fixed_dictionaries(
    {
        "arch": st.sampled_from(["llada", "dream"]),
        "seed": st.integers(0, 5),
        "prompt_seed": st.integers(0, 10_000),
        "prompt_length": st.integers(1, 20),
        "block_length": st.sampled_from([1, 2, 4, 8, 16]),
        "cache": st.sampled_from(list(CacheMode)),
    }
)


def stepwise(model, prompt, gen_length: int, s: dict):
    cfg = StepwiseConfig(gen_length=gen_length, block_length=s["block_length"], cache=s["cache"])
    return Stepwise(cfg).generate(model, prompt)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(s=setups, draft_length=st.integers(1, 8))
def test_ssd_equals_stepwise_and_never_costs_more_forwards(s: dict, draft_length: int) -> None:
    model = model_for(s["arch"], s["seed"])
    prompt = random_prompt(len(model.tokenizer), s["prompt_seed"], s["prompt_length"])
    ref = stepwise(model, prompt, 16, s)
    cfg = SSDConfig(
        gen_length=16, block_length=s["block_length"], cache=s["cache"], draft_length=draft_length
    )
    out = SelfSpeculative(cfg).generate(model, prompt)
    assert out.tokens == ref.tokens
    assert out.nfe <= ref.nfe
    assert sum(out.accepted) == 16 and all(a >= 1 for a in out.accepted)
    assert max(out.forward_batch_sizes) <= draft_length
    if draft_length == 1:
        assert out.nfe == ref.nfe


@pytest.mark.parametrize("arch", ["llada", "dream"])
@pytest.mark.parametrize("cache", list(CacheMode))
def test_an_ssd_iteration_makes_at_most_one_forward(
    arch: str, cache: CacheMode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verification forwards run at strictly advancing states, one per iteration that needs one."""
    states: list[torch.Tensor] = []
    original = BlockForward.__call__

    def recording(self, candidates, rows=None):
        states.append(candidates.clone())
        return original(self, candidates, rows)

    monkeypatch.setattr(BlockForward, "__call__", recording)
    model = CountingModel(tiny_model(arch, seed=2, init_std=1.5))  # peaked: long accepted runs
    prompt = random_prompt(len(model.tokenizer), 3)
    cfg = SSDConfig(gen_length=24, block_length=8, cache=cache, draft_length=4)
    out = SelfSpeculative(cfg).generate(model, prompt)
    assert len(model.calls) == out.nfe == 3 + len(states)  # 3 block refreshes + the verifications
    # row 0 of a verification is s_0 + d_1: tokens committed before the iteration = its count - 1
    before = [int((s[0, len(prompt) :] != model.mask_id).sum()) - 1 for s in states]
    done = [sum(out.accepted[:i]) for i in range(len(out.accepted))]
    assert before == sorted(set(before)), "two forwards at one state: an iteration called the model twice"
    assert set(before) <= set(done)
    assert max(out.accepted) > 1, "the peaked model should accept more than one draft somewhere"


def test_fast_dllm_above_one_threshold_is_stepwise() -> None:
    for arch in ("llada", "dream"):
        for cache in CacheMode:
            model = model_for(arch, 1)
            prompt = random_prompt(len(model.tokenizer), 7)
            s = {"block_length": 4, "cache": cache}
            cfg = FastDLLMConfig(gen_length=16, block_length=4, cache=cache, threshold=1.01)
            out = FastDLLM(cfg).generate(model, prompt)
            ref = stepwise(model, prompt, 16, s)
            assert out.tokens == ref.tokens and out.nfe == ref.nfe


def direct_factor_rule(confidence: list[float], f: float) -> set[int]:
    """algorithms.md, transcribed: sort the masked confidences descending; commit the top n, n the
    largest with (n'+1)(1 - c_(n')) < f for all n' <= n; the first always."""
    masked = [(c, i) for i, c in enumerate(confidence) if c != float("-inf")]
    ranked = sorted(masked, key=lambda t: (-t[0], t[1]))
    n = 1
    for k in range(2, len(ranked) + 1):
        if all((j + 1) * (1 - ranked[j - 1][0]) < f for j in range(1, k + 1)):
            n = k
    return {i for _, i in ranked[:n]}


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    conf=st.lists(st.one_of(st.floats(0, 1), st.just(float("-inf"))), min_size=1, max_size=16).filter(
        lambda c: any(x != float("-inf") for x in c)
    ),
    f=st.floats(0.05, 4.0),
    tau=st.floats(0.0, 1.2),
)
def test_parallel_rules_match_their_definitions(conf: list[float], f: float, tau: float) -> None:
    c = torch.tensor(conf, dtype=torch.float64)
    rows = torch.stack([c, c.flip(0), c])  # a policy decides each row on its own
    top = max(range(len(conf)), key=lambda i: (conf[i], -i))
    expected = {
        FactorPolicy(f): direct_factor_rule(conf, f),
        ThresholdPolicy(tau): {i for i, x in enumerate(conf) if x >= tau} | {top},
        StepwisePolicy(): {top},
    }
    for policy, want in expected.items():
        got = policy.select(rows)
        assert set(got[0].nonzero()[:, 0].tolist()) == want == set(got[2].nonzero()[:, 0].tolist())
        assert torch.equal(got[1], policy.select(c.flip(0)[None])[0])


@settings(max_examples=25, deadline=None, derandomize=True)
@given(s=setups, rule=st.sampled_from(list(ParallelRule)), knob=st.floats(0.3, 1.0))
def test_psd_without_drafts_is_fast_dllm_and_fills_every_position(s: dict, rule: ParallelRule, knob: float):
    model = model_for(s["arch"], s["seed"])
    prompt = random_prompt(len(model.tokenizer), s["prompt_seed"], s["prompt_length"])
    common = dict(
        gen_length=16,
        block_length=s["block_length"],
        cache=s["cache"],
        rule=rule,
        threshold=knob,
        factor=knob * 2,
    )
    fast = FastDLLM(FastDLLMConfig(**common)).generate(model, prompt)
    flat = PSD(PSDConfig(**common, draft_length=0)).generate(model, prompt)
    assert flat.tokens == fast.tokens and flat.nfe == fast.nfe
    deep = PSD(PSDConfig(**common, draft_length=4)).generate(model, prompt)
    assert model.mask_id not in deep.tokens and sum(deep.accepted) == 16
    assert deep.nfe <= fast.nfe + 16 // s["block_length"]


def test_bad_knobs_are_one_line_errors() -> None:
    with pytest.raises(SSDError, match="draft_length must be at least 1"):
        SelfSpeculative(SSDConfig(gen_length=8, block_length=4, draft_length=0))
    with pytest.raises(SSDError, match="temperature must be >= 0"):
        SelfSpeculative(SSDConfig(gen_length=8, block_length=4, temperature=-0.5))
    with pytest.raises(SSDError, match="factor must be positive"):
        FastDLLM(FastDLLMConfig(gen_length=8, block_length=4, rule=ParallelRule.factor, factor=0))
