"""An autoregressive target (Qwen2.5 for DiffuSpec), through transformers' native Qwen2 classes.

Decoding state is a KV cache over every committed token but the last ("pending") one, so each forward
feeds `[pending, *new tokens]` and rejected drafts are dropped by cropping the cache.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import torch

from ssd.errors import SSDError
from ssd.models.checkpoint import load_tokenizer, pick_device_dtype, resolve


class AutoregressiveLM:
    """Greedy continuation and verification of drafts with a causal LM."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.device = next(model.parameters()).device
        self.eos_id = model.config.eos_token_id
        bos = model.config.bos_token_id
        self.bos_id = self.eos_id if bos is None else bos  # what an empty prompt starts from

    def decoding_prompt(self, prompt: list[int]) -> list[int]:
        """A causal LM needs a token to predict the first one from: an empty prompt becomes [BOS]."""
        return list(prompt) or [self.bos_id]

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: str = "auto", device: str = "auto") -> AutoregressiveLM:
        from transformers import Qwen2ForCausalLM

        folder = resolve(path)
        if not (folder / "config.json").is_file():
            raise SSDError(
                f"target checkpoint {folder} has no config.json: point decoder.target_path at a Qwen2 folder"
            )
        dev, dt = pick_device_dtype(device, dtype)
        try:
            model = Qwen2ForCausalLM.from_pretrained(str(folder), dtype=dt, attn_implementation="sdpa")
        except (OSError, ValueError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise SSDError(f"cannot load the autoregressive target from {folder}: {first}") from None
        return cls(model.to(dev).eval(), load_tokenizer(folder))

    def start(self, prompt: list[int]) -> tuple[Any, int]:
        """A cache over prompt[:-1] (one prefill forward, none for a one-token prompt), the pending token."""
        from transformers import DynamicCache

        kv = DynamicCache(config=self.model.config)
        if len(prompt) > 1:
            self.model(torch.tensor([prompt[:-1]], device=self.device), past_key_values=kv, use_cache=True)
        return kv, prompt[-1]

    def predict(self, kv: Any, pending: int, drafts: list[int]) -> list[int]:
        """Greedy next-token predictions after pending, pending+d_1, ..., pending+d_1..d_k (k + 1 of them).

        Extends the cache by 1 + k positions; the caller crops what it rejects."""
        ids = torch.tensor([[pending, *drafts]], device=self.device)
        logits = self.model(ids, past_key_values=kv, use_cache=True).logits[0]
        return logits.float().argmax(-1).tolist()

    @staticmethod
    def truncate(kv: Any, length: int) -> None:
        """Keep the first `length` cached positions (a negative crop removes that many in every version)."""
        extra = kv.get_seq_length() - length
        if extra > 0:
            kv.crop(-extra)


@cache
def load_target(path: str, dtype: str, device: str) -> AutoregressiveLM:
    """One loaded target per process and setting: a decoder and its reference share it."""
    return AutoregressiveLM.from_pretrained(path, dtype=dtype, device=device)
