"""The `arith` benchmark: deterministic generation, disjoint splits, the problem format, scoring."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ssd.benchmarks import BENCHMARKS
from ssd.benchmarks.arith import HIGH, LOW, N_STEPS, Arith, Problem, problems, split_of
from ssd.config import ArithConfig, register
from ssd.errors import SSDError
from ssd.models.tiny import char_tokenizer
from ssd.run import CONF_DIR, prompt_ids


def bench(**kw) -> Arith:
    return Arith(ArithConfig(**kw))


def test_generation_is_deterministic() -> None:
    assert problems("test", 300, 0) == problems("test", 300, 0)
    assert problems("train", 300, 5) == problems("train", 300, 5)
    assert problems("test", 300, 0) != problems("test", 300, 1)
    a, b = bench().samples(), bench().samples()
    assert a == b and len(a) == 200
    assert len({s.id for s in a}) == 200
    # a larger test set starts with the smaller one: `size` only truncates
    assert bench(size=300).samples()[:200] == a


def test_splits_are_disjoint() -> None:
    test = {p.prompt for seed in range(3) for p in problems("test", 1000, seed)}
    train = {p.prompt for p in problems("train", 20000, 0)}
    assert not test & train
    assert all(split_of(p) == "test" for p in test) and all(split_of(p) == "train" for p in train)
    # the split is a property of the problem, not of the seed that drew it
    assert {split_of(p.prompt) for p in problems("train", 100, 123)} == {"train"}


def test_problem_format() -> None:
    p = Problem(23, (7, -5, 8, -9, 4, -2, 6))
    assert p.prompt == "23 +7 -5 +8 -9 +4 -2 +6 ="
    assert p.completion == " 30 25 33 24 28 26 32"
    assert p.answer == "32"
    for q in problems("test", 500, 0):
        assert len(q.steps) == N_STEPS and all(1 <= abs(d) <= 9 for d in q.steps)
        assert all(LOW <= v <= HIGH for v in [q.start, *q.values])
        # one shape for all: step k of the prompt sits one prompt length before value k of the answer
        assert len(q.prompt) == 2 + 3 * N_STEPS + 2 and len(q.completion) == 3 * N_STEPS


def test_prompt_is_plain_text_by_default() -> None:
    b = bench()
    sample = b.samples()[0]
    tok = char_tokenizer("llada")
    text, ids = prompt_ids(b, tok, sample)
    assert text == sample.question and len(ids) == len(sample.question)
    assert tok.decode(ids) == sample.question
    chat_text, _ = prompt_ids(bench(chat=True), tok, sample)
    assert sample.question in chat_text and chat_text != sample.question


@pytest.mark.parametrize(
    ("completion", "correct", "extracted", "trace"),
    [
        (" 30 25 33 24 28 26 32", True, "32", True),
        ("30 25 33 24 28 26 32  ", True, "32", True),  # surrounding whitespace is not the answer
        (" 30 25 33 24 28 26 31", False, "31", False),
        (" 31 26 34 25 29 27 32", True, "32", False),  # exact *final* answer; the trace is a detail
        (" 30 25 33", False, "33", False),
        ("", False, None, False),
        (" 30 25 33 24 28 26 32 5", False, "5", False),  # the last number is the answer
    ],
)
def test_score(completion: str, correct: bool, extracted: str | None, trace: bool) -> None:
    b = bench()
    p = Problem(23, (7, -5, 8, -9, 4, -2, 6))
    sample = next(iter(b.samples()))
    sample = type(sample)(id="x", question=p.prompt, target=p.answer, meta={"completion": p.completion})
    score = b.score(sample, completion)
    assert (score.correct, score.extracted, score.details["trace_correct"]) == (correct, extracted, trace)


def test_gold_completions_score_correct() -> None:
    b = bench()
    assert all(b.score(s, b.gold_completion(s)).correct for s in b.samples())


def test_bad_settings_fail_with_one_line() -> None:
    with pytest.raises(SSDError, match="num_fewshot"):
        bench(num_fewshot=2)
    with pytest.raises(SSDError, match="size"):
        bench(size=0)


def test_registry_and_config() -> None:
    assert BENCHMARKS.get("arith") is Arith
    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["benchmark=arith", "model=arith_llada"])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["benchmark"] == {
        "name": "arith",
        "num_fewshot": 0,
        "chat": False,
        "data_dir": "data",
        "seed": 0,
        "size": 200,
    }
    assert resolved["model"]["path"].endswith("ssd/assets/arith-llada")


def test_a_job_draws_only_the_samples_it_reads(monkeypatch) -> None:
    """benchmark.size=10000 limit=2 draws 2 problems, not 10,000 (each takes ~0.5 ms); the first `limit`
    of a larger size are those of a smaller one. A size past the bound is refused in one line."""
    import ssd.benchmarks.arith as arith
    from ssd.validate import check_config

    drawn = []
    draw = staticmethod(lambda split, n, seed: drawn.append(n) or problems(split, n, seed))
    monkeypatch.setattr(arith.Arith, "draw", draw)
    assert bench(size=10_000).head(2) == bench(size=5).samples()[:2] and drawn == [2, 5]
    assert [i for i, _ in bench(size=5).selected(None, (1, 2))] == [1, 3] and drawn[-1] == 5
    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "config", overrides=["benchmark=arith", "model=arith_llada", "benchmark.size=100000000"]
        )
    with pytest.raises(
        SSDError, match=r"^benchmark.size=100000000 is out of range: pass a value in \[1, 10000\]"
    ):
        check_config(OmegaConf.to_container(cfg, resolve=True))
