"""`arith`: a synthetic chain of additions and subtractions, the embedded default's benchmark.

A problem is a two-digit start value and seven single-digit steps; the answer writes every running value
out, and the last one is the final answer:

    prompt      "23 +7 -5 +8 -9 +4 -2 +6 ="
    completion  " 30 25 33 24 28 26 32"      then EOS        final answer: 32

Running values stay in 10..99, so every problem has the same shape (a 25-character prompt, a
21-character answer: with EOS 22 tokens, fitting `decoder.gen_length` 24 with EOS padding) and step k of
the prompt sits exactly one prompt length before value k of the answer. Each value depends on the one
before it: a small model computes it from the previous value, not from the prompt alone, so committing
several values at once on guesses (low-threshold parallel decoding) visibly costs accuracy, while the
lossless decoders cannot lose any. Score: the exact final answer (the last number of the completion);
`details.trace_correct` says whether every running value was right.

Splits are disjoint by construction: a problem belongs to the test split iff the sha256 of its prompt
falls in a fixed tenth of the hash space, whatever the seed. `samples()` is the test split drawn from
`benchmark.seed` (`benchmark.size` problems, at most 10,000; a job draws only the first `limit`);
`problems("train", n, seed)` gives training data (scripts/train_tiny.py). Everything is generated,
deterministically, from the seed: no files. Prompts are plain text (`benchmark.chat=false`, what the
shipped model was trained on); with chat true the prompt is one user turn.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ssd.benchmarks.base import Benchmark, Prompt, Sample, Score
from ssd.config import BenchmarkConfig
from ssd.errors import SSDError

N_STEPS = 7  # steps per problem
LOW, HIGH = 10, 99  # running values stay two-digit
TEST_SHARE = 10  # one problem in TEST_SHARE of the problem space is test-only
SPLITS = ("train", "test")
_NUMBER = re.compile(r"\d+")
P = TypeVar("P")  # a task's problem class (prompt, completion, answer): arith's, tally's


@dataclass(frozen=True)
class Problem:
    start: int
    steps: tuple[int, ...]  # signed single digits, e.g. (7, -5, 8)

    @property
    def values(self) -> list[int]:
        out, v = [], self.start
        for d in self.steps:
            v += d
            out.append(v)
        return out

    @property
    def prompt(self) -> str:
        return f"{self.start}" + "".join(f" {d:+d}" for d in self.steps) + " ="

    @property
    def completion(self) -> str:
        """The answer as the model writes it (before EOS): every running value, space-separated."""
        return "".join(f" {v}" for v in self.values)

    @property
    def answer(self) -> str:
        return str(self.values[-1])


def split_of(prompt: str) -> str:
    """The split a problem belongs to, from a hash of its prompt alone (so splits never overlap)."""
    h = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")
    return "test" if h % TEST_SHARE == 0 else "train"


def random_problem(rng: random.Random) -> Problem:
    v = start = rng.randint(LOW, HIGH)
    steps = []
    for _ in range(N_STEPS):
        d = rng.choice([d for d in (*range(-9, 0), *range(1, 10)) if LOW <= v + d <= HIGH])
        steps.append(d)
        v += d
    return Problem(start, tuple(steps))


def distinct(task: str, split: str, count: int, seed: int, draw: Callable[[random.Random], P]) -> list[P]:
    """`count` distinct problems of `split` drawn by `draw`, in a fixed order determined by (task, split,
    seed): a problem is kept when its prompt is new and hashes to `split`."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {SPLITS}")
    rng = random.Random(f"{task}/{split}/{seed}")  # str seeds hash with sha512: stable across runs
    seen: set[str] = set()
    out: list[P] = []
    while len(out) < count:
        p = draw(rng)
        if p.prompt not in seen and split_of(p.prompt) == split:
            seen.add(p.prompt)
            out.append(p)
    return out


def problems(split: str, count: int, seed: int) -> list[Problem]:
    """`count` distinct problems of `split`, in a fixed order determined by (split, seed)."""
    return distinct("arith", split, count, seed, random_problem)


class Arith(Benchmark):
    name = "arith"
    draw = staticmethod(problems)  # a task's problem stream: tally (ssd/benchmarks/tally.py) has its own

    def __init__(self, cfg: BenchmarkConfig) -> None:
        super().__init__(cfg)
        if cfg.num_fewshot:
            raise SSDError(
                f"{self.name} has no few-shot examples: set benchmark.num_fewshot=0 (got {cfg.num_fewshot})"
            )
        self.seed: int = getattr(cfg, "seed", 0)
        self.size: int = getattr(cfg, "size", 200)
        if self.size < 1:
            raise SSDError(f"benchmark.size must be at least 1 (got {self.size})")

    def samples(self) -> list[Sample]:
        return self.head(None)

    def head(self, limit: int | None) -> list[Sample]:
        """The first `limit` of the `size` problems, and only those drawn (each draw is a prefix of a
        longer one: the same seed gives the same sequence)."""
        count = self.size if limit is None else min(limit, self.size)
        return [
            Sample(
                id=f"{self.name}-{self.seed}-{i}",
                question=p.prompt,
                target=p.answer,
                meta={"completion": p.completion},
            )
            for i, p in enumerate(self.draw("test", count, self.seed))
        ]

    def prompt(self, sample: Sample) -> Prompt:
        return Prompt(text=sample.question, messages=[{"role": "user", "content": sample.question}])

    def score(self, sample: Sample, completion: str) -> Score:
        """Exact final answer: the last number of the completion; also whether every value is right."""
        completion = self.cut(completion)
        numbers = _NUMBER.findall(completion)
        extracted = numbers[-1] if numbers else None
        return Score(
            correct=extracted == sample.target,
            extracted=extracted,
            details={"trace_correct": completion.strip() == sample.meta["completion"].strip()},
        )

    def gold_completion(self, sample: Sample) -> str:
        return sample.meta["completion"]
