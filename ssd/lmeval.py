"""lm-evaluation-harness 0.4.x plugin: `--model ssd` runs any model x decoder of this project.

Discovery: lm-eval 0.4.13 finds models only in its own registry (no entry-point plugins), so this module
must be imported before lm-eval looks the name up. On the command line use the thin wrapper, which is
lm-eval's own CLI with this module imported first:

    python -m ssd.lmeval --model ssd --tasks ssd_gsm8k --include_path tasks/ --limit 2 \\
      --model_args model=tiny_llada,model.path=data/checkpoints/tiny-llada,decoder=ssd,decoder.draft_length=4

(`lm_eval --model ssd` itself cannot see the class.) In Python: `import ssd.lmeval`, then
`lm_eval.simple_evaluate(model="ssd", model_args={...}, ...)`.

model_args are Hydra overrides of the project's config (conf/), composed as `python -m ssd.run` composes
them, except that the base config's benchmark frame (arith's gen 24, block 8) does not apply: the
decoder's own defaults do. `model=…` (name it: the base config's is the embedded arith model),
`decoder=…` pick options, dotted keys set fields (`model.path=…`,
`decoder.gen_length=256`, `decoder.block_length=32`, `decoder.cache=dual`), `seed=…` the sampling seed.
lm-eval's `device` sets `model.device` (unless model_args set it; a CUDA device where there is none is
ignored, as lm-eval's CLI always passes cuda:0); `batch_size` is ignored (one prompt per decode).

Generation: each request is decoded with the configured decoder (greedy unless `decoder.temperature`),
`decoder.gen_length` tokens (lm-eval's `max_gen_toks` and sampling arguments are ignored: the decoder's
config governs), cut at the first EOS/end-of-turn token and at the request's `until` strings. Plain
prompts are tokenized as `python -m ssd.run` does (`benchmark.chat=false`); with lm-eval's
`--apply_chat_template` the model's chat template renders the turns (as `benchmark.chat=true`).
`loglikelihood*` raise NotImplementedError: the harness is generation-only.

The task YAMLs in tasks/ (`ssd_gsm8k`, `ssd_gsm8k_cot`, `ssd_gsm8k_cot_zeroshot`, `ssd_minerva_math`,
`ssd_minerva_math500`, `ssd_humaneval`, `ssd_mbpp`) read the local data `make data` writes (run from the
repository root) and grade with this project's graders through `grade_<task>` filters and
`process_results` below (the stock code tasks need the hub's `code_eval` metric, which fails offline).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import lm_eval.models  # noqa: F401  (registers lm-eval's own models; its registry loads them only if empty)
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from ssd.errors import SSDError

log = logging.getLogger(__name__)

IGNORED_ARGS = ("batch_size", "max_batch_size")


def _override(key: str, value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    else:
        text = str(value)
    return f"{key}={text}"


def compose_config(overrides: list[str]) -> Any:
    """The run config from Hydra overrides, composed as `python -m ssd.run` composes it, but without the
    base config's benchmark frame (conf/frame/): lm-eval's task is the benchmark here, so the decoder keeps
    its own defaults (gen 256, ...) unless model_args set them."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from ssd.config import register
    from ssd.run import CONF_DIR, check_choices, resolve
    from ssd.validate import check_config, explain

    check_choices(overrides)
    register()
    if GlobalHydra.instance().is_initialized():  # e.g. called from inside a Hydra app
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=["~frame", *overrides])
    except Exception as e:  # Hydra's composition errors: one line, with the overrides given
        raise SSDError(f"model_args {overrides} do not compose: {explain(e, overrides)}") from None
    check_config(resolve(cfg))  # every value present, typed, in the schema and in its range
    return cfg


class SSDLM(LM):
    """A masked diffusion LM with one of this project's decoders, as an lm-eval model."""

    def __init__(self, device: str | None = None, **model_args: Any) -> None:
        super().__init__()
        from omegaconf import OmegaConf

        from ssd.decoders import DECODERS
        from ssd.models import MODELS

        for key in IGNORED_ARGS:
            model_args.pop(key, None)
        overrides = [_override(k, v) for k, v in model_args.items()]
        if device is not None and "model.device" not in model_args:
            # lm-eval's CLI passes its own default (cuda:0) even when not asked: a CUDA device on a machine
            # without one falls back to model.device=auto; `model.device=` in model_args always wins.
            import torch

            if not str(device).startswith("cuda") or torch.cuda.is_available():
                overrides.append(_override("model.device", device))
            else:
                log.warning("ssd: no CUDA here, ignoring device=%s (model.device=auto)", device)
        self.cfg = compose_config(overrides)
        m = self.cfg.model
        self.model = MODELS.get(m.name).from_pretrained(m.path, dtype=m.dtype, device=m.device)
        self.decoder = DECODERS.get(self.cfg.decoder.name)(OmegaConf.to_object(self.cfg.decoder))
        self.tokenizer = self.model.tokenizer
        self.seed = int(self.cfg.seed)
        self._rendered: set[str] = set()  # prompts this object rendered with the chat template
        self.records: list[dict[str, Any]] = []  # per request: generated tokens, NFE, wall seconds
        self._device = self.model.device

    # --- generation ---------------------------------------------------------------------------------

    def _encode(self, context: str) -> list[int]:
        if context in self._rendered:  # the template already holds its special tokens
            return list(self.tokenizer(context, add_special_tokens=False)["input_ids"])
        return list(self.tokenizer(context)["input_ids"])

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        from tqdm import tqdm

        from ssd.run import completion_and_count, sample_seed

        gen_length = self.decoder.cfg.gen_length

        def decode(tokens: list[int]) -> str:
            return self.tokenizer.decode(tokens, skip_special_tokens=True)

        outputs = []
        for index, request in enumerate(tqdm(requests, disable=disable_tqdm, desc="ssd")):
            context, gen_kwargs = request.args
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            ids = self._encode(context)
            if len(ids) + gen_length > self.model.max_length:
                raise SSDError(
                    f"prompt of {len(ids)} tokens + decoder.gen_length {gen_length} exceeds the model's "
                    f"max_length {self.model.max_length}: lower decoder.gen_length or --num_fewshot"
                )
            gen = self.decoder.generate(self.model, ids, seed=sample_seed(self.seed, index))

            def cut(text: str, until: list[str] = until) -> str:
                ends = [i for s in until if s and (i := text.find(s)) >= 0]
                return text[: min(ends)] if ends else text

            completion, generated = completion_and_count(gen.tokens, self.model.stop_ids, decode, cut)
            self.records.append(
                {"generated_tokens": generated, "nfe": gen.nfe, "wall_seconds": gen.wall_seconds}
            )
            outputs.append(completion)
            self.cache_hook.add_partial("generate_until", request.args, completion)
        if self.records:
            tokens = sum(r["generated_tokens"] for r in self.records)
            seconds = sum(r["wall_seconds"] for r in self.records)
            nfe = sum(r["nfe"] for r in self.records)
            log.info(
                "ssd: %d requests, %d tokens, %.1f tokens/s, %.2f tokens per forward",
                len(self.records),
                tokens,
                tokens / seconds if seconds else 0.0,
                tokens / nfe if nfe else 0.0,
            )
        return outputs

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        raise NotImplementedError(
            "model 'ssd' is generation-only (masked diffusion decoding): loglikelihood tasks such as "
            "multiple choice are not supported; use generate_until tasks (e.g. ssd_gsm8k, ssd_humaneval)"
        )

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError(
            "model 'ssd' is generation-only (masked diffusion decoding): perplexity tasks "
            "(loglikelihood_rolling) are not supported; use generate_until tasks"
        )

    # --- chat ------------------------------------------------------------------------------------------

    @property
    def tokenizer_name(self) -> str:
        return str(self.cfg.model.path).replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return getattr(self.tokenizer, "chat_template", None) or ""

    def apply_chat_template(
        self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            raise SSDError(
                "the model's tokenizer has no chat template (a base model?): drop --apply_chat_template"
            )
        text = self.tokenizer.apply_chat_template(
            chat_history, add_generation_prompt=add_generation_prompt, tokenize=False
        )
        self._rendered.add(text)
        return text


# --- task glue: few-shot examples, grading filters, metrics (tasks/ssd_tasks.py re-exports these) -------


def _benchmark(name: str, **fields: Any) -> Any:
    from ssd.benchmarks import BENCHMARKS
    from ssd.config import SCHEMAS

    schema = SCHEMAS["benchmark"][f"_schema_{name}"]
    return BENCHMARKS.get(name)(schema(**{"chat": False, "num_fewshot": 0, **fields}))


def _grader(name: str, metrics: Callable[[Any], dict[str, float]], **fields: Any) -> Callable[..., list]:
    """A custom lm-eval filter: grades every response of a task at once (in parallel where the benchmark
    grades in worker processes) and leaves one dict per document for `process_results`."""

    def grade(resps: list[list[str]], docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        bench = _benchmark(name, **fields)
        samples = [bench.sample(doc) for doc in docs]
        completions = [r[0] if isinstance(r, (list, tuple)) else r for r in resps]
        start = time.perf_counter()
        if hasattr(bench, "score_many"):
            scores = bench.score_many(samples, completions)
        else:
            scores = [bench.score(s, c) for s, c in zip(samples, completions, strict=True)]
        log.info("ssd: graded %d %s responses in %.1f s", len(scores), name, time.perf_counter() - start)
        return [
            {"metrics": metrics(score), "extracted": score.extracted, "details": score.details}
            for score in scores
        ]

    return grade


def _gsm8k_metrics(score: Any) -> dict[str, float]:
    return {"exact_match": float(score.correct), "flexible_extract": float(score.details["flexible_correct"])}


def _math_metrics(score: Any) -> dict[str, float]:
    return {
        "math_verify": float(score.correct),
        "lm_eval_math_verify": float(score.details["lm_eval_math_verify"]),
    }


def _pass_metrics(score: Any) -> dict[str, float]:
    return {"pass@1": float(score.correct)}


grade_gsm8k = _grader("gsm8k", _gsm8k_metrics, variant="gsm8k")
grade_gsm8k_cot = _grader("gsm8k", _gsm8k_metrics, variant="gsm8k_cot")
grade_gsm8k_cot_zeroshot = _grader("gsm8k", _gsm8k_metrics, variant="gsm8k_cot_zeroshot")
grade_math = _grader("math", _math_metrics)
grade_humaneval = _grader("humaneval", _pass_metrics)
grade_mbpp = _grader("mbpp", _pass_metrics)


def process_results(doc: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, float]:
    """The metrics the grading filter computed for this document."""
    return results[0]["metrics"]


def gsm8k_fewshot() -> list[dict[str, Any]]:
    from ssd.benchmarks.gsm8k import fewshot_pool

    return list(fewshot_pool()["train_first_8"])


def gsm8k_cot_fewshot() -> list[dict[str, Any]]:
    from ssd.benchmarks.gsm8k import fewshot_pool

    return list(fewshot_pool()["cot_exemplars"])


def math_fewshot() -> list[dict[str, Any]]:
    from ssd.benchmarks.math import fewshot_examples

    return [dict(ex) for ex in fewshot_examples()]


def mbpp_fewshot() -> list[dict[str, Any]]:
    from ssd.benchmarks.mbpp import fewshot_examples

    return [{**ex, "is_fewshot": True} for ex in fewshot_examples()]


def main(argv: list[str] | None = None) -> None:
    """`python -m ssd.lmeval ARGS`: lm-eval's CLI (`lm_eval ARGS`) with `--model ssd` available."""
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm-eval", *(sys.argv[1:] if argv is None else argv)]
    try:
        cli_evaluate()
    except SSDError as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    # Run as a script, this file is `__main__`: register and run the package module `ssd.lmeval`
    # instead, so that the task glue (imported by tasks/ssd_tasks.py) and the model share one module.
    from ssd.lmeval import main as _main

    _main()
else:
    register_model("ssd")(SSDLM)
