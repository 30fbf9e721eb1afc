"""The `tally` benchmark: arith's chain at the papers' shape (ssd/benchmarks/tally.py)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from ssd.benchmarks import BENCHMARKS
from ssd.benchmarks.arith import problems as arith_problems
from ssd.benchmarks.arith import split_of
from ssd.benchmarks.tally import N_STEPS, Problem, Tally, problems
from ssd.config import (
    ASSETS,
    ArithConfig,
    CacheMode,
    FastDLLMConfig,
    SSDConfig,
    StepwiseConfig,
    register,
)
from ssd.decoders.fast_dllm import FastDLLM
from ssd.decoders.ssd import SelfSpeculative
from ssd.decoders.stepwise import Stepwise
from ssd.models import MODELS
from ssd.run import CONF_DIR


def test_problem_format_and_shape() -> None:
    p = Problem(8, (3, 1, 2))
    assert p.prompt == "8 3 1 2 =" and p.completion == " 1 2 4" and p.answer == "4"
    for q in problems("test", 300, 0):
        assert len(q.steps) == N_STEPS and all(1 <= d <= 3 for d in q.steps)
        # every answer character one prompt length less one after the digit it adds
        assert len(q.completion) == 2 * N_STEPS and len(q.prompt) == 2 * N_STEPS + 3
        assert all(q.prompt[2 * k + 2] == str(q.steps[k]) for k in range(N_STEPS))
        assert all(q.completion[2 * k + 1] == str(v) for k, v in enumerate(q.values))
        assert len(q.completion) + 1 <= 96  # with EOS, inside gen 96: three blocks of 32


def test_generation_is_deterministic_and_splits_disjoint() -> None:
    assert problems("test", 200, 0) == problems("test", 200, 0) != problems("test", 200, 1)
    test = {p.prompt for seed in range(2) for p in problems("test", 500, seed)}
    train = {p.prompt for p in problems("train", 5000, 0)}
    assert not test & train and all(split_of(p) == "test" for p in test)
    assert not test & {p.prompt for p in arith_problems("test", 500, 0)}  # its own problems


def test_benchmark_draws_scores_and_composes() -> None:
    bench = Tally(ArithConfig(name="tally", size=50))
    samples = bench.samples()
    assert [s.question for s in samples] == [p.prompt for p in problems("test", 50, 0)]
    assert samples[0].id == "tally-0-0" and bench.head(3) == samples[:3]
    gold = samples[0].meta["completion"]
    assert bench.score(samples[0], gold).correct and bench.score(samples[0], gold).details["trace_correct"]
    wrong = gold[:-1] + str((int(gold[-1]) + 1) % 10)
    assert not bench.score(samples[0], wrong).correct
    # a right final total after a wrong one is still the right final answer, but not a right trace
    slip = gold[:2].replace(gold[1], str((int(gold[1]) + 1) % 10)) + gold[2:]
    scored = bench.score(samples[0], slip)
    assert scored.correct and not scored.details["trace_correct"]
    assert BENCHMARKS.get("tally") is Tally
    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["benchmark=tally", "model=tally_dream"])
    assert cfg.benchmark.name == "tally" and cfg.model.path.endswith("tally-dream")
    assert (cfg.decoder.gen_length, cfg.decoder.block_length, cfg.decoder.cache) == (96, 32, "dual")


@pytest.fixture(scope="module")
def tally_dream():
    return MODELS.get("dream").from_pretrained(ASSETS / "tally-dream", dtype="float32", device="cpu")


def test_shipped_tally_model_solves_it_and_leaves_fast_dllm_steps_to_speculate(tally_dream) -> None:
    """The shipped Dream solves held-out problems stepwise in the frame; Fast-dLLM τ 0.9 needs several
    forwards per block of 32 (the room the workload exists for); speculation over it keeps its tokens in
    fewer forwards."""
    model, bench = tally_dream, Tally(ArithConfig(name="tally", size=8))
    frame = dict(gen_length=96, block_length=32, cache=CacheMode.dual)
    fast = FastDLLM(FastDLLMConfig(**frame, threshold=0.9))
    spec = SelfSpeculative(SSDConfig(**frame, policy="fast_dllm", threshold=0.9, tree_budget=16))
    stepwise = Stepwise(StepwiseConfig(**frame))
    correct = fast_nfe = spec_nfe = 0
    for sample in bench.samples():
        ids = model.tokenizer(sample.question)["input_ids"]
        tokens = stepwise.generate(model, ids).tokens
        text = model.tokenizer.decode(tokens[: tokens.index(model.eos_id)], skip_special_tokens=True)
        correct += bench.score(sample, text).correct
        ref, out = fast.generate(model, ids), spec.generate(model, ids)
        assert out.tokens == ref.tokens
        fast_nfe, spec_nfe = fast_nfe + ref.nfe, spec_nfe + out.nfe
    assert correct >= 7
    assert fast_nfe / 8 >= 3 * 3  # at least three forwards per block of 32, on average
    assert spec_nfe < fast_nfe
