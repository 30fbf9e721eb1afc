"""The model axis: one abstract base for masked diffusion LMs.

A subclass supplies the transformer body and its head; this class supplies the contract decoders rely
on: logits aligned so that index i predicts token i (a shifted model realigns inside its own class),
and the cache operations of ssd/models/cache.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ssd.config import CacheMode
from ssd.models.cache import KVCache
from ssd.models.layers import Window


class DiffusionLM(nn.Module, ABC):
    # Dream predicts token i from position i-1 (it was initialised from an AR model).
    predicts_from_previous_position: ClassVar[bool] = False
    # The chat turn terminator of the official tokenizer, a stop token besides EOS.
    end_of_turn_token: ClassVar[str] = ""

    mask_id: int
    eos_id: int
    bos_id: int
    max_length: int

    def __init__(self) -> None:
        super().__init__()
        self.tokenizer: Any = None

    # --- what a subclass provides -------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def from_config(cls, config: dict[str, Any]) -> DiffusionLM:
        """Build an (uninitialised) model from an official `config.json` dict."""

    @abstractmethod
    def config_dict(self) -> dict[str, Any]:
        """The official `config.json` content for this model."""

    @abstractmethod
    def body(self, tokens: torch.Tensor, window: Window) -> torch.Tensor:
        """Final hidden states [B, W, d] of the token window [B, W] placed as `window` says."""

    @abstractmethod
    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits [B, W, V] from final hidden states (the output norm included)."""

    # --- the contract decoders use ------------------------------------------------------------------
    def decoding_prompt(self, prompt: list[int]) -> list[int]:
        """The prompt as the frame decodes it. A model that predicts token i from position i-1 (Dream) has
        no predictor for the first generated token of an empty prompt: there it becomes [BOS], as an
        autoregressive model would start (docs/algorithms.md)."""
        return [self.bos_id] if not prompt and self.predicts_from_previous_position else list(prompt)

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: str = "auto", device: str = "auto") -> DiffusionLM:
        """Load an official checkpoint from a local folder or a hub id (see ssd/models/checkpoint.py)."""
        from ssd.models.checkpoint import load_model

        return load_model(cls, path, dtype=dtype, device=device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def stop_ids(self) -> frozenset[int]:
        """Token ids that end a generation: EOS and, where the tokenizer has it, the end-of-turn token."""
        ids = {self.eos_id}
        if self.tokenizer is not None and self.end_of_turn_token:
            eot = self.tokenizer.convert_tokens_to_ids(self.end_of_turn_token)
            if isinstance(eot, int) and eot != self.tokenizer.unk_token_id:
                ids.add(eot)
        return frozenset(ids)

    def forward(
        self,
        tokens: torch.Tensor,
        cache: KVCache | None = None,
        span: tuple[int, int] | None = None,
        rows: torch.Tensor | None = None,
        pad: torch.Tensor | None = None,
        candidates: int = 1,
    ) -> torch.Tensor:
        """Logits [R, b - a, V] for absolute positions span = [a, b) (default: the whole window).

        Without a cache `tokens` [R, T] is the full sequence; with one it is the window the cache
        expects (positions cache.start onwards), or `candidates` such windows side by side (the tree
        layout: the logits come back one row per candidate). `rows` [R] names the sequence (cache row)
        each row belongs to (default: row r is sequence r). `pad` [N] counts each sequence's left
        padding (the cache's own when there is one); padded keys are masked, positions shifted.
        """
        if cache is not None:
            width = tokens.shape[1] // candidates
            hidden = self.body(tokens, cache.window(width, rows, candidates))
            hidden = hidden.reshape(-1, width, hidden.shape[-1])
            offset = cache.start
        else:
            width, offset = tokens.shape[1], 0
            hidden = self.body(tokens, self._window(tokens, rows, pad))
        a, b = span if span is not None else (offset, offset + width)
        return self.aligned_logits(hidden, offset, a, b)

    def refresh(
        self,
        tokens: torch.Tensor,
        mode: CacheMode,
        start: int,
        end: int,
        pad: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """One full forward of sequences `tokens` [N, T]: logits of [start, end) and the cache it fills
        (`cache`, reused in place when given, so that its buffers stay where they are)."""
        cache = cache if cache is not None else KVCache(mode, pad)
        cache.begin(start, end)
        window = self._window(tokens, None, pad)
        window.record = cache.record
        hidden = self.body(tokens, window)
        return self.aligned_logits(hidden, 0, start, end), cache

    @staticmethod
    def _window(tokens: torch.Tensor, rows: torch.Tensor | None, pad: torch.Tensor | None) -> Window:
        """A full forward's window: every position, left padding masked and shifted out."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        if pad is None:
            return Window(positions)
        row_pad = pad if rows is None else pad[rows]
        if row_pad.shape[0] != tokens.shape[0]:
            row_pad = row_pad.expand(tokens.shape[0])
        mask = positions[None, :] >= row_pad[:, None]
        return Window((positions[None, :] - row_pad[:, None]).clamp(min=0), mask[:, None, None, :])

    def aligned_logits(self, hidden: torch.Tensor, offset: int, a: int, b: int) -> torch.Tensor:
        """Logits predicting tokens a..b-1 from the hidden states of a window starting at `offset`."""
        return self.head(hidden[:, a - offset : b - offset])
