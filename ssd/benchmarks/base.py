"""The benchmark axis: where samples come from, how a prompt is built, how a completion is graded."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ssd.config import BenchmarkConfig
from ssd.errors import SSDError


@dataclass(frozen=True)
class Sample:
    id: str
    question: str
    target: str  # the gold answer, in the form the grader compares against
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Prompt:
    """One prompt in both forms; the runner picks by `benchmark.chat`."""

    text: str  # plain text, as lm-eval builds it (few-shot examples included)
    messages: list[dict[str, str]]  # the same as chat turns (few-shot examples as earlier turns)


@dataclass(frozen=True)
class Score:
    correct: bool
    extracted: str | None  # what the grader read out of the completion (None: nothing found)
    details: dict[str, Any] = field(default_factory=dict)


class Benchmark(ABC):
    name: ClassVar[str]
    # Generation is cut at the first of these (the stop strings lm-eval uses for the task); a variant
    # of a benchmark may set its own per instance.
    stop_strings: tuple[str, ...] = ()

    def __init__(self, cfg: BenchmarkConfig) -> None:
        self.cfg = cfg

    @property
    def data_dir(self) -> Path:
        return Path(self.cfg.data_dir)

    @abstractmethod
    def samples(self) -> list[Sample]:
        """All samples of the test set, in a fixed order."""

    def head(self, limit: int | None) -> list[Sample]:
        """The first `limit` samples (all of them where None). A generated benchmark builds no more."""
        return self.samples()[:limit]

    def selected(self, limit: int | None, shard: tuple[int, int] | None) -> list[tuple[int, Sample]]:
        """What a job reads: (index, sample) of the first `limit` samples, or with shard (i, n) every n-th
        of them from the i-th; a sample keeps its index, and so its seed, in any shard. SSDError if that
        is none: a finished run of nothing would report no accuracy at all."""
        chosen = self.head(limit)
        first, step = shard or (0, 1)
        indexed = list(enumerate(chosen))[first::step]
        if not chosen:
            raise SSDError(f"benchmark {self.name} has no samples: check its data (make data)")
        if not indexed:
            n = len(chosen)
            raise SSDError(
                f"shard={first}/{step} selects none of the job's {n} samples of {self.name}: split them into "
                f"at most {n} shards (shard=i/n with n <= {n})"
            )
        return indexed

    @abstractmethod
    def prompt(self, sample: Sample) -> Prompt: ...

    @abstractmethod
    def score(self, sample: Sample, completion: str) -> Score: ...

    def gold_completion(self, sample: Sample) -> str:
        """A completion a perfect model would write; grading it must score correct (the gold check)."""
        raise NotImplementedError(f"{self.name} has no gold completion")

    def cut(self, completion: str) -> str:
        """The completion up to (excluding) the first stop string."""
        ends = [i for s in self.stop_strings if (i := completion.find(s)) >= 0]
        return completion[: min(ends)] if ends else completion
