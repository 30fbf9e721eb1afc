"""Fast-dLLM parallel decoding (Wu et al., 2025): several confident tokens per forward.

    for each block:
        logits = refresh(x)                              (a full forward; builds the cache)
        while the block has masked positions:
            c = confidences of the block's masked positions
            commit the top-1, plus
              threshold rule: every other position with c >= tau
              factor rule:    the top n, n the largest with (n' + 1)(1 - c_(n')) < f for all n' <= n
            logits = forward(x)                          (skipped once the block is full)

The rules are `ThresholdPolicy` and `FactorPolicy` (ssd/decoders/policy.py), run one step per forward.
The factor rule follows the definition in algorithms.md; Fast-dLLM's released code differs in one
corner (when only the last sorted position fails, it still commits it), which we do not copy.
With a cache, Dream's refresh commits only the block start, as Fast-dLLM's Dream code does.
Speculation over this decoder (`decoder=ssd decoder.policy=fast_dllm`) reproduces its output exactly.
"""

from __future__ import annotations

from ssd.config import FastDLLMConfig
from ssd.decoders.policy import PolicyDecoder


class FastDLLM(PolicyDecoder):
    name = "fast_dllm"
    cfg: FastDLLMConfig
