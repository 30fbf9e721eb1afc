"""Stepwise decoding: the lossless reference every faster decoder is measured against.

Semi-autoregressive masked decoding, one token per forward:

    x = [prompt ; MASK x gen_length], split into blocks, left to right
    for each block:
        repeat block_length times:
            logits = forward(x)                          (the block start's forward is the refresh)
            among the block's masked positions, take the highest confidence (ties: lowest position)
            commit its candidate token

NFE = gen_length. With a cache, Dream's block start is committed from the refresh forward (see
BlockForward.first_position_from_refresh); it still costs one forward per token.
"""

from __future__ import annotations

import torch

from ssd.config import StepwiseConfig
from ssd.decoders.base import BlockDecoder, BlockLoop
from ssd.decoders.noise import CounterNoise
from ssd.errors import SSDError
from ssd.models.cache import BlockForward


class Stepwise(BlockDecoder):
    name = "stepwise"
    lossless = True  # it *is* the reference

    cfg: StepwiseConfig

    def __init__(self, cfg: StepwiseConfig) -> None:
        super().__init__(cfg)
        if cfg.pad_rows < 1:
            raise SSDError(f"decoder.pad_rows must be at least 1 (got {cfg.pad_rows})")

    def reference_config(self) -> None:
        return None

    def rows_per_forward(self) -> int:
        """In the bit-exact mode: the rows of the decoder this run is the reference of."""
        return self.cfg.pad_rows

    def block(
        self,
        fwd: BlockForward,
        x: torch.Tensor,
        logits: torch.Tensor,
        noise: CounterNoise | None,
        committed: list[int],
    ) -> BlockLoop:
        for step in range(fwd.end - fwd.start):
            if step:
                logits = yield x
            tokens, confidence = self.predict_block(fwd, x, logits, step == 0, noise, sum(committed))
            pos = confidence.argmax(-1)  # first maximum: ties go to the lowest position
            x[0, fwd.start + pos] = tokens[0, pos]
            committed.append(1)
