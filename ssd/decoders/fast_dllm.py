"""Fast-dLLM parallel decoding (Wu et al., 2025): several confident tokens per forward.

    for each block:
        logits = refresh(x)                              (a full forward; builds the cache)
        while the block has masked positions:
            c = confidences of the block's masked positions
            commit the top-1, plus
              threshold rule: every other position with c >= tau
              factor rule:    the top n, n the largest with (n' + 1)(1 - c_(n')) < f for all n' <= n
            logits = forward(x)                          (skipped once the block is full)

The factor rule follows the definition in algorithms.md; Fast-dLLM's released code differs in one
corner (when only the last sorted position fails, it still commits it), which we do not copy.
With a cache, Dream's refresh commits only the block start, as Fast-dLLM's Dream code does.
"""

from __future__ import annotations

import torch

from ssd.config import FastDLLMConfig, ParallelRule
from ssd.decoders.base import BlockDecoder, BlockLoop
from ssd.decoders.noise import CounterNoise
from ssd.errors import SSDError
from ssd.models.cache import BlockForward


def threshold_rule(confidence: torch.Tensor, tau: float) -> torch.Tensor:
    """[L] confidences (-inf where not masked) -> [L] bool: top-1 plus every c >= tau."""
    commit = confidence >= tau
    commit[confidence.argmax()] = True
    return commit


def factor_rule(confidence: torch.Tensor, f: float) -> torch.Tensor:
    """[L] confidences (-inf where not masked) -> [L] bool: the largest prefix of the sorted
    confidences with (n + 1)(1 - c_(n)) < f at every rank n (1-based); at least the top-1."""
    ordered, order = torch.sort(confidence, descending=True, stable=True)
    ranks = torch.arange(1, len(ordered) + 1, device=ordered.device, dtype=ordered.dtype)
    ok = ((ranks + 1) * (1 - ordered) < f) & torch.isfinite(ordered)
    ok[0] = True
    keep = torch.cumprod(ok.long(), 0).bool()
    return torch.zeros_like(keep).scatter(0, order, keep)


class FastDLLM(BlockDecoder):
    name = "fast_dllm"
    cfg: FastDLLMConfig

    def __init__(self, cfg: FastDLLMConfig) -> None:
        super().__init__(cfg)
        if cfg.rule is ParallelRule.factor and cfg.factor <= 0:
            raise SSDError(f"decoder.factor must be positive (got {cfg.factor})")

    def commit_now(self, fwd: BlockForward, confidence: torch.Tensor, at_refresh: bool) -> torch.Tensor:
        """[L] bool: the rule's choice over the block's confidences [L]; right after a refresh whose
        block start only the refresh can predict (Dream with a cache), the block start alone."""
        if at_refresh and fwd.first_position_from_refresh:
            first = torch.zeros_like(confidence, dtype=torch.bool)
            first[0] = True
            return first
        if self.cfg.rule is ParallelRule.threshold:
            return threshold_rule(confidence, self.cfg.threshold)
        return factor_rule(confidence, self.cfg.factor)

    def block(
        self,
        fwd: BlockForward,
        x: torch.Tensor,
        logits: torch.Tensor,
        noise: CounterNoise | None,
        committed: list[int],
    ) -> BlockLoop:
        start, end = fwd.start, fwd.end
        remaining, at_refresh = end - start, True
        while remaining:
            if not at_refresh:
                logits = yield x
            tokens, confidence = self.predict_block(fwd, x, logits, at_refresh, noise, sum(committed))
            commit = self.commit_now(fwd, confidence[0], at_refresh)
            x[0, start:end] = torch.where(commit, tokens[0], x[0, start:end])
            n = int(commit.sum())  # the one host sync of an iteration
            committed.append(n)
            remaining -= n
            at_refresh = False
