"""Stepwise decoding: the lossless reference every faster decoder is measured against.

Semi-autoregressive masked decoding, one token per forward:

    x = [prompt ; MASK x gen_length], split into blocks, left to right
    for each block:
        repeat block_length times:
            logits = forward(x)                          (the block start's forward is the refresh)
            among the block's masked positions, take the highest confidence (ties: lowest position)
            commit its candidate token

NFE = gen_length. With a cache, Dream's block start is committed from the refresh forward (see
BlockForward.first_position_from_refresh); it still costs one forward per token. The step is
`StepwisePolicy` (ssd/decoders/policy.py), run one step per forward.
"""

from __future__ import annotations

from ssd.config import StepwiseConfig
from ssd.decoders.policy import PolicyDecoder


class Stepwise(PolicyDecoder):
    name = "stepwise"
    lossless = True  # it *is* the reference

    cfg: StepwiseConfig

    def reference_config(self) -> None:
        return None
