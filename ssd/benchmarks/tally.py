"""`tally`: a running total mod 10, arith's dependent chain at the papers' shape (answers of ~96 tokens).

A problem is a start digit and forty-seven digits from 1 to 3 to add; the answer writes the running total
mod 10 after every addition, and the last one is the final answer:

    prompt      "0 2 1 1 2 ... 3 3 ="
    completion  " 2 3 4 6 7 ... 0 3"       (94 characters; then EOS: gen 96, three blocks of 32)

Every character of the answer sits exactly one prompt length less one after the digit it adds, and every
total needs the one before it. A block of 32 holds sixteen totals; the shipped model (ssd/assets/tally-
dream) adds a few digits ahead in one forward, so Fast-dLLM's threshold rule commits several totals at a
time and needs 3-4 forwards per block (τ 0.9: 10.7 per answer), and it commits wrong ones too (62.5%
against stepwise's 99.5%, results/spec_sweep/tally.md): a block-32 frame, where arith's block 8 leaves
Fast-dLLM's refresh 7 of 8 tokens and little else to do.

Steps of 1 to 3 keep each total within three of the one before, so a small model learns the chain from
it (with steps of 1 to 9, a total mod 10 says nothing of the next without the step, nor the step without
the total, and training sat on the plateau of per-position marginals). Score: the final total (the last
number of the completion); `details.trace_correct` says whether every total was right.

Splits, seeds and sizes work as for arith (ssd/benchmarks/arith.py: a problem is test-only iff the sha256
of its prompt falls in a fixed tenth of the hash space), from the task's own stream (`tally/<split>/<seed>`);
`problems("train", n, seed)` gives scripts/train_tiny.py its data.
"""

from __future__ import annotations

import random

from ssd.benchmarks import arith
from ssd.benchmarks.arith import Arith, distinct

N_STEPS = 47  # digits added per problem: 94 answer characters, with EOS 95 of gen 96


class Problem(arith.Problem):
    """Arith's problem (start, steps; completion and answer written the same way) with steps 1..3 mod 10."""

    @property
    def values(self) -> list[int]:
        out, v = [], self.start
        for d in self.steps:
            v = (v + d) % 10
            out.append(v)
        return out

    @property
    def prompt(self) -> str:
        return f"{self.start}" + "".join(f" {d}" for d in self.steps) + " ="


def random_problem(rng: random.Random) -> Problem:
    return Problem(rng.randint(0, 9), tuple(rng.randint(1, 3) for _ in range(N_STEPS)))


def problems(split: str, count: int, seed: int) -> list[Problem]:
    """`count` distinct problems of `split`, in a fixed order determined by (split, seed)."""
    return distinct("tally", split, count, seed, random_problem)


class Tally(Arith):
    """Arith's benchmark (seeds, sizes, scoring) over tally's problems."""

    name = "tally"
    draw = staticmethod(problems)
