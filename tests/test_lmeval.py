"""The lm-eval plugin (`--model ssd`) and the task YAMLs in tasks/, offline, on the local test sets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

lm_eval = pytest.importorskip(
    "lm_eval", reason="the lmeval extra is not installed: pip install -e '.[lmeval]'"
)

from lm_eval import simple_evaluate  # noqa: E402
from lm_eval.api.model import LM  # noqa: E402
from lm_eval.api.registry import get_model  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

import ssd.lmeval  # noqa: E402
from ssd.benchmarks import BENCHMARKS  # noqa: E402
from ssd.config import SCHEMAS  # noqa: E402
from ssd.errors import SSDError  # noqa: E402
from ssd.models.tiny import make_tiny_checkpoint  # noqa: E402
from tests.helpers import real_data  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TASKS_DIR = ROOT / "tasks"
# task -> (benchmark, its config): the same prompts and grading through the project's own runner
TASKS = {
    "ssd_gsm8k": ("gsm8k", {"variant": "gsm8k", "num_fewshot": 5}),
    "ssd_gsm8k_cot": ("gsm8k", {"variant": "gsm8k_cot", "num_fewshot": 8}),
    "ssd_gsm8k_cot_zeroshot": ("gsm8k", {"variant": "gsm8k_cot_zeroshot", "num_fewshot": 0}),
    "ssd_minerva_math": ("math", {"num_fewshot": 4}),
    "ssd_minerva_math500": ("math", {"num_fewshot": 4, "subset": "math500"}),
    "ssd_humaneval": ("humaneval", {"num_fewshot": 0}),
    "ssd_mbpp": ("mbpp", {"num_fewshot": 3}),
}
TINY_ARGS = {
    "model": "tiny_llada",
    "decoder": "ssd",
    "decoder.draft_length": 3,
    "decoder.gen_length": 8,
    "decoder.block_length": 8,
    "decoder.cache": "dual",
}


@pytest.fixture(scope="module", autouse=True)
def local_data(monkeypatch_module):
    """The task YAMLs read data/<name>/test.jsonl relative to the working directory: the repo root."""
    for name in ("gsm8k", "math", "math500", "humaneval", "mbpp"):
        real_data(name)
    monkeypatch_module.chdir(ROOT)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    # 8192 positions: few-shot prompts are long under the one-character-per-token tokenizer
    return make_tiny_checkpoint(
        tmp_path_factory.mktemp("lmeval") / "tiny-llada", "llada", max_sequence_length=8192
    )


def task_manager() -> TaskManager:
    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False)


def benchmark(task: str):
    name, fields = TASKS[task]
    return BENCHMARKS.get(name)(SCHEMAS["benchmark"][f"_schema_{name}"](chat=False, **fields))


def test_every_task_yaml_is_listed_and_loads():
    assert sorted(p.stem for p in TASKS_DIR.glob("*.yaml")) == sorted(TASKS)
    assert set(TASKS) <= set(task_manager().all_tasks)


def test_the_plugin_is_registered_beside_lm_evals_own_models():
    assert get_model("ssd") is ssd.lmeval.SSDLM
    assert get_model("dummy").__name__ == "DummyLM"  # lm-eval's lazily registered models still resolve


class Oracle(LM):
    """Answers every prompt the project's benchmark would build with that benchmark's gold completion."""

    def __init__(self, answers: dict[str, str]) -> None:
        super().__init__()
        self.answers = answers

    def generate_until(self, requests, disable_tqdm: bool = False):
        return [
            self.answers.get(r.args[0], "<a prompt the project's benchmark does not build>") for r in requests
        ]

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError


def test_tasks_build_the_projects_prompts_and_grade_gold_as_correct():
    """lm-eval's contexts equal the runner's prompts byte for byte; gold completions score 1.0."""
    answers = {}
    for task in TASKS:
        bench = benchmark(task)
        for sample in bench.samples()[:2]:
            answers[bench.prompt(sample).text] = bench.gold_completion(sample)
    results = simple_evaluate(
        model=Oracle(answers),
        tasks=list(TASKS),
        limit=2,
        task_manager=task_manager(),
        confirm_run_unsafe_code=True,
        log_samples=True,
    )
    for task, samples in results["samples"].items():
        assert [s["arguments"][0][0] in answers for s in samples] == [True, True], task
    metrics = {
        t: {k: v for k, v in r.items() if k.endswith(",ssd") and "stderr" not in k}
        for t, r in results["results"].items()
    }
    assert metrics == {
        "ssd_gsm8k": {"exact_match,ssd": 1.0, "flexible_extract,ssd": 1.0},
        "ssd_gsm8k_cot": {"exact_match,ssd": 1.0, "flexible_extract,ssd": 1.0},
        "ssd_gsm8k_cot_zeroshot": {"exact_match,ssd": 1.0, "flexible_extract,ssd": 1.0},
        "ssd_minerva_math": {"math_verify,ssd": 1.0, "lm_eval_math_verify,ssd": 1.0},
        "ssd_minerva_math500": {"math_verify,ssd": 1.0, "lm_eval_math_verify,ssd": 1.0},
        "ssd_humaneval": {"pass@1,ssd": 1.0},
        "ssd_mbpp": {"pass@1,ssd": 1.0},
    }
    graded = results["samples"]["ssd_humaneval"][0]["filtered_resps"][0]
    assert graded["details"]["status"] == "passed" and "isolation" in graded["details"]


def evaluate_tiny(tiny: Path, tasks: list[str], **kwargs):
    return simple_evaluate(
        model="ssd",
        model_args={**TINY_ARGS, "model.path": str(tiny)},
        tasks=tasks,
        limit=2,
        task_manager=task_manager(),
        confirm_run_unsafe_code=True,
        log_samples=True,
        **kwargs,
    )


def check_generations(results, tasks: list[str]) -> None:
    assert sorted(results["results"]) == sorted(tasks)
    for task in tasks:
        samples = results["samples"][task]
        assert len(samples) == 2
        bench = benchmark(task)
        for s in samples:
            completion = s["resps"][0][0]
            assert isinstance(completion, str) and len(completion) <= TINY_ARGS["decoder.gen_length"]
            assert bench.cut(completion) == completion  # cut at the task's `until`
        values = [v for k, v in results["results"][task].items() if k.endswith(",ssd") and "stderr" not in k]
        assert values and all(0.0 <= v <= 1.0 for v in values)


def test_simple_evaluate_runs_every_task_with_the_tiny_model_offline(tiny):
    check_generations(evaluate_tiny(tiny, list(TASKS)), list(TASKS))


def test_chat_template_is_applied_by_the_model(tiny):
    results = evaluate_tiny(tiny, ["ssd_gsm8k_cot_zeroshot"], apply_chat_template=True)
    context = results["samples"]["ssd_gsm8k_cot_zeroshot"][0]["arguments"][0][0]
    assert context.startswith("<|start_header_id|>user<|end_header_id|>\n\nQ: ")
    assert context.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


@pytest.fixture(scope="module")
def lm(tiny):
    return ssd.lmeval.SSDLM(**{**TINY_ARGS, "model.path": str(tiny)}, device="cuda:0", batch_size=4)


def test_model_args_are_hydra_overrides(lm):
    assert (lm.cfg.model.name, lm.cfg.decoder.name, lm.cfg.decoder.draft_length) == ("llada", "ssd", 3)
    assert lm.decoder.cfg.gen_length == 8 and str(lm.cfg.decoder.cache.value) == "dual"
    assert lm.model.device.type == "cpu"  # lm-eval's default cuda:0 is ignored without CUDA


def test_loglikelihood_is_not_supported(lm):
    with pytest.raises(NotImplementedError, match="generation-only"):
        lm.loglikelihood([])
    with pytest.raises(NotImplementedError, match="generation-only"):
        lm.loglikelihood_rolling([])


def test_chat_rendered_prompts_are_not_given_special_tokens_twice(lm):
    text = lm.apply_chat_template([{"role": "user", "content": "hi"}])
    header = "<|start_header_id|>{}<|end_header_id|>\n\n"
    assert text == header.format("user") + "hi<|eot_id|>" + header.format("assistant")
    assert lm._encode(text) == list(lm.tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"decoder": "sdd"}, "unknown decoder 'sdd'.*did you mean 'ssd'"),
        ({"decoder.draft_lenght": 3}, "do not compose"),
        ({"decoder.gen_length": "many"}, "do not compose"),
        ({"decoder.temperature": -1}, r"^decoder.temperature=-1.0 is out of range: pass a value >= 0$"),
    ],
)
def test_bad_model_args_are_one_line_errors(tiny, args, message):
    with pytest.raises(SSDError, match=message):
        ssd.lmeval.SSDLM(**{**TINY_ARGS, "model.path": str(tiny), **args})


@pytest.mark.slow
def test_the_cli_wrapper_runs_lm_eval_with_the_plugin(tiny):
    model_args = ",".join(f"{k}={v}" for k, v in {**TINY_ARGS, "model.path": str(tiny)}.items())
    done = subprocess.run(
        [sys.executable, "-m", "ssd.lmeval", "--model", "ssd", "--model_args", model_args]
        + ["--tasks", "ssd_gsm8k_cot_zeroshot", "--include_path", "tasks/", "--limit", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ssd_gsm8k_cot_zeroshot" in done.stdout and "exact_match" in done.stdout


def test_model_args_compose_without_the_base_configs_benchmark_frame() -> None:
    """lm-eval's task is the benchmark: arith's frame (gen 24, block 8) must not cut a GSM8K answer short."""
    cfg = ssd.lmeval.compose_config(["model=llada"])
    assert (cfg.decoder.gen_length, cfg.decoder.block_length, str(cfg.decoder.cache.value)) == (
        256,
        32,
        "none",
    )
    cfg = ssd.lmeval.compose_config(["model=llada", "decoder=ssd", "decoder.gen_length=64"])
    assert (cfg.decoder.gen_length, cfg.decoder.block_length, str(cfg.decoder.cache.value)) == (64, 8, "dual")
