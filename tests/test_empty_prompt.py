"""An empty prompt: every decoder on both architectures decodes it from a real prediction.

Dream predicts token i from position i-1, so with no prompt its first generated position has no predictor.
It used to get a zeroed logits row (a uniform distribution, argmax token 0) that decoders then committed.
The frame now decodes an empty prompt as the one-token prompt [BOS] on such models (docs/algorithms.md);
LLaDA, which predicts each position from itself, decodes it as it is.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ssd.config import (
    CacheMode,
    DecoderConfig,
    DiffuSpecConfig,
    FastDLLMConfig,
    PSDConfig,
    SSDConfig,
    StepwiseConfig,
    TargetGreedyConfig,
)
from ssd.decoders import DECODERS
from ssd.models.tiny import make_tiny_target, tiny_model

MODELS = {arch: tiny_model(arch, seed=3) for arch in ("llada", "dream")}
FRAME = {"gen_length": 16, "block_length": 8}


def decode(cfg: DecoderConfig, arch: str, prompts: list[list[int]]) -> list[list[int]]:
    model = MODELS[arch]
    return [g.tokens for g in DECODERS.get(cfg.name)(cfg).generate_batch(model, prompts, [0] * len(prompts))]


def configs(cache: CacheMode) -> list[DecoderConfig]:
    return [
        StepwiseConfig(cache=cache, **FRAME),
        FastDLLMConfig(cache=cache, threshold=0.5, **FRAME),
        SSDConfig(cache=cache, draft_length=3, **FRAME),
        PSDConfig(cache=cache, threshold=0.5, draft_length=2, **FRAME),
    ]


@pytest.mark.parametrize("arch", ["llada", "dream"])
@pytest.mark.parametrize("cache", [CacheMode.none, CacheMode.dual])
def test_every_block_decoder_decodes_an_empty_prompt(arch: str, cache: CacheMode) -> None:
    model = MODELS[arch]
    other = [5, 9, 13, 4]
    start = [model.bos_id] if model.predicts_from_previous_position else []
    outputs = {}
    for cfg in configs(cache):
        (alone,) = decode(cfg, arch, [[]])
        assert len(alone) == FRAME["gen_length"] and model.mask_id not in alone, cfg.name
        assert alone == decode(cfg, arch, [start])[0], cfg.name  # Dream: as if the prompt were [BOS]
        if start:  # batched with a longer prompt (LLaDA: test_an_empty_prompt_batches_on_a_trained_model)
            assert decode(cfg, arch, [[], other])[0] == alone, cfg.name
        outputs[cfg.name] = alone
    assert outputs["ssd"] == outputs["stepwise"]  # lossless holds for the empty prompt too


def test_an_empty_prompt_batches_on_a_trained_model() -> None:
    """An all-mask input to a random-weight LLaDA ties every position's confidence to within float noise,
    which a padded batch's masked attention breaks differently; a trained model has no such ties."""
    from ssd.config import ASSETS
    from ssd.models.llada import LLaDA

    model = LLaDA.from_pretrained(ASSETS / "arith-llada")
    other = model.tokenizer("3+4=")["input_ids"]
    for cfg in configs(CacheMode.dual):
        decoder = DECODERS.get(cfg.name)(cfg)
        (alone,) = decoder.generate_batch(model, [[]], [0])
        together = decoder.generate_batch(model, [[], other], [0, 0])[0]
        assert together.tokens == alone.tokens and model.mask_id not in alone.tokens, cfg.name


@pytest.mark.parametrize("arch", ["llada", "dream"])
def test_diffuspec_and_its_target_decode_an_empty_prompt(arch: str, tmp_path: Path) -> None:
    target = str(make_tiny_target(tmp_path / "qwen2", seed=0))
    frame = {"gen_length": 12, "block_length": 12, "target_path": target}
    (reference,) = decode(TargetGreedyConfig(**frame), arch, [[]])
    (drafted,) = decode(DiffuSpecConfig(k_min=2, k_init=3, k_max=4, delta=1, **frame), arch, [[]])
    assert drafted == reference and 0 < len(reference) <= 12
