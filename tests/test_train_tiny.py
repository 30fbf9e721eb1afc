"""scripts/train_tiny.py is deterministic, and the checkpoints it shipped in ssd/assets/ work.

The shipped checkpoints are loaded through the same loaders as the real models (ssd.models.MODELS for
the LLaDA and the Dream, AutoregressiveLM for the Qwen2 target) and must actually solve held-out `arith`
problems.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from ssd.benchmarks.arith import Arith
from ssd.config import ASSETS, ArithConfig, CacheMode, StepwiseConfig, TargetGreedyConfig
from ssd.decoders.diffuspec import TargetGreedy
from ssd.decoders.stepwise import Stepwise
from ssd.models import MODELS
from ssd.models.autoregressive import AutoregressiveLM
from ssd.run import completion_and_count, prompt_ids
from tests.helpers import load_script

REPO = Path(__file__).resolve().parent.parent
LLADA, QWEN2, DREAM = ASSETS / "arith-llada", ASSETS / "arith-qwen2", ASSETS / "arith-dream"


def digests(folder: Path) -> dict[str, str]:
    return {
        f"{f.parent.name}/{f.name}": hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.glob("*/*.safetensors"))
    }


def test_training_twice_gives_identical_weights(tmp_path: Path, monkeypatch) -> None:
    """A few steps of every model, three times: in this process; again as parallel processes (the
    script's default, which must compute the same); with another seed."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    train = load_script("train_tiny")
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    steps = ["--llada-steps", "3", "--qwen2-steps", "3", "--dream-steps", "2", "--dream-ar-steps", "2"]
    steps += ["--tally-steps", "2", "--tally-ar-steps", "2"]
    try:
        runs = []
        for name, seed, jobs in (("a", 0, 1), ("b", 0, 2), ("c", 1, 1)):
            train.main(["--out", str(tmp_path / name), "--seed", str(seed), "--jobs", str(jobs), *steps])
            runs.append(digests(tmp_path / name))
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    a, b, c = runs
    assert {k.split("/")[0] for k in a} == {"arith-llada", "arith-qwen2", "arith-dream", "tally-dream"}
    assert a == b
    assert all(a[k] != c[k] for k in a)  # the seed matters


def run_decoder(decoder, model, benchmark: Arith, n: int) -> tuple[int, list[str]]:
    correct, completions = 0, []
    for sample in benchmark.samples()[:n]:
        _, ids = prompt_ids(benchmark, model.tokenizer, sample)
        gen = decoder.generate(model, ids)
        completion, _ = completion_and_count(
            gen.tokens,
            model.stop_ids,
            lambda t: model.tokenizer.decode(t, skip_special_tokens=True),
            benchmark.cut,
        )
        correct += benchmark.score(sample, completion).correct
        completions.append(completion)
    return correct, completions


@pytest.fixture(scope="module")
def llada():
    return MODELS.get("llada").from_pretrained(LLADA, dtype="float32", device="cpu")


def test_shipped_checkpoints_are_small_and_documented() -> None:
    total = sum(f.stat().st_size for f in ASSETS.glob("arith-*/*.safetensors"))
    assert 0 < total <= 20 * 2**20
    for folder in (LLADA, QWEN2, DREAM):
        card = json.loads((folder / "training.json").read_text())
        assert card["seed"] == 0 and card["recipe"]["steps"] > 0
    assert (LLADA / "model.safetensors.index.json").is_file()  # the official (sharded) layout
    assert json.loads((LLADA / "config.json").read_text())["model_type"] == "llada"
    assert (DREAM / "model.safetensors.index.json").is_file()
    config = json.loads((DREAM / "config.json").read_text())
    assert config["model_type"] == "Dream" and config["num_key_value_heads"] < config["num_attention_heads"]


def test_shipped_llada_solves_held_out_problems(llada) -> None:
    benchmark = Arith(ArithConfig())
    decoder = Stepwise(StepwiseConfig(gen_length=24, block_length=8, cache=CacheMode.dual))
    correct, completions = run_decoder(decoder, llada, benchmark, 20)
    assert correct >= 18, completions


def test_shipped_qwen2_target_solves_held_out_problems(llada) -> None:
    benchmark = Arith(ArithConfig())
    target = AutoregressiveLM.from_pretrained(QWEN2, dtype="float32", device="cpu")
    assert target.tokenizer.get_vocab() == llada.tokenizer.get_vocab()  # DiffuSpec needs one vocabulary
    decoder = TargetGreedy(TargetGreedyConfig(gen_length=24, block_length=8, target_path=str(QWEN2)))
    correct, completions = run_decoder(decoder, llada, benchmark, 20)
    assert correct >= 18, completions


@pytest.fixture(scope="module")
def dream():
    return MODELS.get("dream").from_pretrained(DREAM, dtype="float32", device="cpu")


def test_shipped_dream_solves_held_out_problems(dream) -> None:
    """The Dream in the sweep's frame (dual cache: each block's first token comes from the refresh)."""
    assert dream.predicts_from_previous_position
    assert dream.model.layers[0].self_attn.k_proj.bias.abs().sum() > 0  # trained q/k/v biases
    benchmark = Arith(ArithConfig())
    decoder = Stepwise(StepwiseConfig(gen_length=24, block_length=8, cache=CacheMode.dual))
    correct, completions = run_decoder(decoder, dream, benchmark, 20)
    assert correct >= 18, completions


def test_shipped_dream_predicts_each_token_from_the_position_before(dream) -> None:
    """With the answer masked, the logits the harness aligns (hidden i-1 -> token i) name the answer's
    first digits; the hidden state at i itself does not: the shift is learned, not an accident."""
    benchmark = Arith(ArithConfig())
    tok = dream.tokenizer
    rows = [
        tok(s.question)["input_ids"] + tok(s.meta["completion"])["input_ids"][:3]
        for s in benchmark.samples()[:20]
    ]
    x = torch.tensor(rows)
    P = x.shape[1] - 3
    masked = x.clone()
    masked[:, P:] = dream.mask_id
    with torch.no_grad():
        aligned = dream(masked)[:, P:].argmax(-1)
        unshifted = dream.head(dream.body(masked, dream._window(masked, None, None)))[:, P:].argmax(-1)
    assert (aligned == x[:, P:]).float().mean() >= 0.8
    assert (unshifted == x[:, P:]).float().mean() < 0.5
