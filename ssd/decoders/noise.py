"""Counter-based sampling noise: the uniform numbers of a Gumbel-max sample, a pure function of
(seed, step, position, token id).

Stepwise sampling at temperature > 0 draws, at the state where `step` tokens of the generation are
committed, one uniform per (block position, vocabulary entry). Keyed by the step rather than drawn from
a stateful generator, the noise of a state does not depend on how the decoder got there: a verification
row standing at stepwise's step t draws exactly the numbers stepwise draws at step t, so a speculative
decoder can reproduce stepwise *sampling* token for token. The step also fixes the block (a block starts
at a multiple of block_length committed tokens), so block-relative positions suffice, and left padding
in a batch changes nothing.

The hash is a 32-bit integer mix (xor-shift / odd-multiply rounds, multipliers below 2^31 so every
product fits in int64 on any device); u = (h + 0.5) / 2^32 lies strictly inside (0, 1).
"""

from __future__ import annotations

import torch

MASK = 0xFFFFFFFF
_M1, _M2 = 0x7FEB352D, 0x68E31DA5


def mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash, elementwise on an int64 tensor of values in [0, 2^32)."""
    x = x ^ (x >> 16)
    x = (x * _M1) & MASK
    x = x ^ (x >> 15)
    x = (x * _M2) & MASK
    return x ^ (x >> 16)


class CounterNoise:
    """The noise stream of one sample (`seed`)."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed) & MASK

    def uniform(self, steps: torch.Tensor, length: int, vocab: int, device: torch.device) -> torch.Tensor:
        """Uniforms [B, length, vocab] in float64: row b at step steps[b], block positions 0..length-1."""
        key = mix(mix(steps.to(device=device, dtype=torch.long) & MASK) ^ self.seed)  # [B]
        cell = torch.arange(length * vocab, device=device, dtype=torch.long).view(length, vocab)
        h = mix(mix(cell)[None] ^ key[:, None, None])
        return (h.to(torch.float64) + 0.5) / 2.0**32
