"""MBPP (Austin et al. 2021) as lm-eval 0.4.x's `mbpp` task runs it: 3-shot, [BEGIN]/[DONE], pass@1.

- Data: the full test split, task_id 11..510 (`make data`).
- Prompt: lm-eval's doc_to_text "You are an expert Python programmer, and here is your task: {text} Your
  code should pass these tests:\\n\\n{test 1}\\n{test 2}\\n{test 3}\\n[BEGIN]\\n"; each few-shot example is
  that text followed directly (target_delimiter "") by "{code}\\n[DONE]" and "\\n\\n"; the examples are
  task_ids 2, 3, 4 of the MBPP prompt split (mbpp_fewshot.json), num_fewshot 3 (0..3). As chat: a user
  turn per problem text and an assistant turn "{code}\\n[DONE]" per example. Stop string: "[DONE]".
- Program: the completion (cut at "[DONE]"; in a chat answer with a ``` block, that block) followed by
  the problem's `test_setup_code` (empty for all but one; it builds inputs), run in the sandbox. Its
  three asserts run in a trusted checker process (ssd/sandbox/grader.py), where the functions they
  call that the reference solution defines, and the setup's objects, are proxies to the candidate's.
  pass@1 = the asserts hold.
"""

from __future__ import annotations

import ast
import json
import warnings
from functools import cache
from pathlib import Path
from typing import Any

from ssd.benchmarks.base import Prompt, Sample
from ssd.benchmarks.data import ensure, read_rows
from ssd.benchmarks.humaneval import CodeBenchmark
from ssd.config import BenchmarkConfig
from ssd.errors import SSDError
from ssd.sandbox import Job

FEWSHOT_FILE = Path(__file__).with_name("mbpp_fewshot.json")
STOP_STRINGS = ("[DONE]",)  # mbpp.yaml generation_kwargs.until


@cache
def fewshot_examples() -> list[dict[str, Any]]:
    with FEWSHOT_FILE.open(encoding="utf-8") as f:
        return json.load(f)["examples"]


def format_task(text: str, tests: list[str]) -> str:
    """lm-eval's mbpp doc_to_text."""
    return (
        f"You are an expert Python programmer, and here is your task: {text} Your code should pass these "
        f"tests:\n\n{tests[0]}\n{tests[1]}\n{tests[2]}\n[BEGIN]\n"
    )


def top_level_names(code: str) -> set[str]:
    """Names a program binds at its top level (functions, classes, assignments, imports)."""
    names = set()
    with warnings.catch_warnings():  # reference solutions hold invalid escapes such as "\w"
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(code)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def called(code: str) -> set[str]:
    """Names the asserts call: the functions under test are among them (never a builtin they merely use,
    unless the reference solution itself defines that name)."""
    calls = [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Call)]
    return {n.func.id for n in calls if isinstance(n.func, ast.Name)}


class MBPP(CodeBenchmark):
    name = "mbpp"
    stop_strings = STOP_STRINGS

    def __init__(self, cfg: BenchmarkConfig) -> None:
        super().__init__(cfg)
        examples = fewshot_examples()
        if not 0 <= cfg.num_fewshot <= len(examples):
            raise SSDError(
                f"mbpp: num_fewshot={cfg.num_fewshot} is out of range: choose 0..{len(examples)} "
                f"(the examples shipped in {FEWSHOT_FILE.name})"
            )
        self.shots = [
            (format_task(ex["text"], ex["test_list"]), ex["code"] + "\n[DONE]")
            for ex in examples[: cfg.num_fewshot]
        ]

    def samples(self) -> list[Sample]:
        return [self.sample(row) for row in read_rows(ensure(self.name, self.data_dir))]

    @staticmethod
    def sample(row: dict[str, Any]) -> Sample:
        return Sample(
            id=str(row["id"]),
            question=row["text"],
            target=row["code"],
            meta={"test_list": row["test_list"], "test_setup_code": row["test_setup_code"]},
        )

    def prompt(self, sample: Sample) -> Prompt:
        query = format_task(sample.question, sample.meta["test_list"])
        text = "".join(q + a + "\n\n" for q, a in self.shots) + query
        messages = [
            turn
            for q, a in self.shots
            for turn in ({"role": "user", "content": q}, {"role": "assistant", "content": a})
        ]
        messages.append({"role": "user", "content": query})
        return Prompt(text=text, messages=messages)

    def job(self, sample: Sample, code: str) -> Job:
        setup = sample.meta["test_setup_code"]
        tests = "\n".join(sample.meta["test_list"])
        remote = (called(tests) & top_level_names(sample.target)) | top_level_names(setup)
        return Job("\n".join([code, *([setup] if setup else [])]), tests, tuple(sorted(remote)))

    def gold_completion(self, sample: Sample) -> str:
        return sample.target + "\n[DONE]"
