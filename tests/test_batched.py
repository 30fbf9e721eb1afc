"""Batched decoding: B prompts of different lengths decoded together give each prompt's B = 1 tokens.

Padding changes the shapes of a forward, so a padded row's logits equal the lone prompt's only up to
float rounding (~1e-7 in fp32 on a CPU). A near-uniform random model (init_std 0.5: every confidence near
1/vocab) turns that into token flips about once in a thousand prompts; the fixtures here are peaked
(init_std 1.5), as trained models are, and the rounding itself is measured below."""

from __future__ import annotations

import zlib

import pytest
import torch

from ssd.config import CacheMode, FastDLLMConfig, PSDConfig, SSDConfig, StepwiseConfig
from ssd.decoders.fast_dllm import FastDLLM
from ssd.decoders.psd import PSD
from ssd.decoders.ssd import SelfSpeculative
from ssd.decoders.stepwise import Stepwise
from ssd.models.tiny import tiny_model
from tests.helpers import random_prompt

MODELS = {arch: tiny_model(arch, seed=11, init_std=1.5) for arch in ("llada", "dream")}


def prompts(vocab: int, n: int, seed: int) -> list[list[int]]:
    lengths = torch.randint(1, 20, (n,), generator=torch.Generator().manual_seed(seed)).tolist()
    return [random_prompt(vocab, 100 * seed + i, length) for i, length in enumerate(lengths)]


def decoders(cache: CacheMode) -> list:
    common = dict(gen_length=12, block_length=4, cache=cache)
    return [
        Stepwise(StepwiseConfig(**common)),
        SelfSpeculative(SSDConfig(**common, draft_length=3)),
        FastDLLM(FastDLLMConfig(**common, threshold=0.3)),
        PSD(PSDConfig(**common, threshold=0.3, draft_length=2)),
    ]


@pytest.mark.parametrize("arch", ["llada", "dream"])
@pytest.mark.parametrize("cache", list(CacheMode))
def test_batches_of_1_2_4_8_give_the_tokens_of_batch_size_1(arch: str, cache: CacheMode) -> None:
    model = MODELS[arch]
    batch = prompts(len(model.tokenizer), 8, seed=zlib.crc32(f"{arch}/{cache.value}".encode()) % 1000)
    for decoder in decoders(cache):
        singles = [decoder.generate(model, p, seed=i) for i, p in enumerate(batch)]
        for size in (2, 4, 8):
            for lo in range(0, 8, size):
                chunk = decoder.generate_batch(model, batch[lo : lo + size], list(range(lo, lo + size)))
                for i, out in enumerate(chunk):
                    ref = singles[lo + i]
                    where = f"{decoder.name}, B={size}, prompt {lo + i}"
                    assert out.tokens == ref.tokens, where
                    # each sequence's own accounting is what it would have been alone
                    assert out.nfe == ref.nfe and out.forward_batch_sizes == ref.forward_batch_sizes, where
                    assert out.accepted == ref.accepted, where
                    assert out.extra["batch_size"] == size


@pytest.mark.parametrize("arch", ["llada", "dream"])
def test_a_padded_row_equals_its_lone_prompt_up_to_rounding(arch: str) -> None:
    """What 'the same tokens' rests on: a left-padded batch's refresh logits against each prompt's alone."""
    from ssd.models.cache import BlockForward

    model = MODELS[arch]
    batch = prompts(len(model.tokenizer), 4, seed=5)
    width = max(map(len, batch))
    pads = [width - len(p) for p in batch]
    x = torch.tensor(
        [[model.eos_id] * pad + p + [model.mask_id] * 8 for p, pad in zip(batch, pads, strict=True)]
    )
    with torch.inference_mode():
        together = BlockForward(model, CacheMode.dual, torch.tensor(pads)).refresh(x, width, width + 8)
        for i, p in enumerate(batch):
            alone = torch.tensor([p + [model.mask_id] * 8])
            single = BlockForward(model, CacheMode.dual).refresh(alone, len(p), len(p) + 8)
            assert torch.allclose(together[i], single[0], atol=1e-5, rtol=0)


def test_a_batch_shares_its_forwards() -> None:
    model = tiny_model("llada", seed=11)
    batch = prompts(len(model.tokenizer), 4, seed=3)
    out = SelfSpeculative(
        SSDConfig(gen_length=16, block_length=4, cache=CacheMode.dual, draft_length=3)
    ).generate_batch(model, batch, [0, 1, 2, 3])
    assert out[0].extra["batch_forwards"] <= max(o.nfe for o in out) < sum(o.nfe for o in out)
    assert sum(o.wall_seconds for o in out) == pytest.approx(out[0].extra["batch_wall_seconds"])
