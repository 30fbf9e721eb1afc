"""A decoder's step as a policy: which masked positions of the block it commits at a state.

Stepwise and Fast-dLLM differ only in this step. Each is a deterministic function of the state's
confidences (the forward's logits, and at temperature > 0 the counter-based noise of that state:
ssd/decoders/noise.py), so anything that can compute a state's confidences can compute the step there.
That is what speculation needs (ssd/decoders/ssd.py): guess the policy's next steps from one forward,
verify them in one batched forward, and keep the deepest guess that equals the policy's real step at its
parent. Every policy works on a batch of rows at once ([R, L] confidences -> [R, L] commits).

    stepwise   the highest confidence (ties: the lowest position)
    threshold  the highest, plus every position with confidence >= tau           (Fast-dLLM)
    factor     the top n of the sorted confidences, n the largest with
               (n' + 1)(1 - c_(n')) < f for every n' <= n; at least the top one  (Fast-dLLM)

Each commits a prefix of the block's masked positions sorted by confidence (descending, stable): the set
speculation drafts are built from. `PolicyDecoder` runs a policy one step per forward: stepwise and
Fast-dLLM are that and nothing more.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from ssd.config import DecoderConfig, ParallelRule
from ssd.decoders.base import BlockDecoder, BlockLoop
from ssd.decoders.noise import CounterNoise
from ssd.errors import SSDError
from ssd.models.cache import BlockForward


class Policy(ABC):
    """The positions a decoder commits at a state, from its confidences [R, L] (-inf where not masked)."""

    # commits exactly one position per step (the count needs no host read)
    single: ClassVar[bool] = False

    @abstractmethod
    def select(self, confidence: torch.Tensor) -> torch.Tensor:
        """[R, L] confidences -> [R, L] bool: what each row's step commits (at least one position)."""


class StepwisePolicy(Policy):
    single = True

    def select(self, confidence: torch.Tensor) -> torch.Tensor:
        top = confidence.argmax(-1, keepdim=True)  # first maximum: ties go to the lowest position
        return torch.zeros_like(confidence, dtype=torch.bool).scatter(-1, top, True)


class ThresholdPolicy(Policy):
    def __init__(self, tau: float) -> None:
        self.tau = tau

    def select(self, confidence: torch.Tensor) -> torch.Tensor:
        top = confidence.argmax(-1, keepdim=True)
        return (confidence >= self.tau).scatter(-1, top, True)


class FactorPolicy(Policy):
    def __init__(self, f: float) -> None:
        self.f = f

    def select(self, confidence: torch.Tensor) -> torch.Tensor:
        ordered, order = torch.sort(confidence, dim=-1, descending=True, stable=True)
        ranks = torch.arange(1, ordered.shape[-1] + 1, device=ordered.device, dtype=ordered.dtype)
        ok = ((ranks + 1) * (1 - ordered) < self.f) & torch.isfinite(ordered)
        ok[..., 0] = True
        keep = torch.cumprod(ok.long(), -1).bool()
        return torch.zeros_like(keep).scatter(-1, order, keep)


def policy_of(cfg: DecoderConfig) -> Policy:
    """The policy a decoder config names: Fast-dLLM's rule where it has one, else stepwise."""
    rule = getattr(cfg, "rule", None)
    if rule is None or getattr(cfg, "policy", "fast_dllm") == "stepwise":
        return StepwisePolicy()
    if ParallelRule(rule) is ParallelRule.threshold:
        return ThresholdPolicy(cfg.threshold)
    if cfg.factor <= 0:
        raise SSDError(f"decoder.factor must be positive (got {cfg.factor})")
    return FactorPolicy(cfg.factor)


class PolicyDecoder(BlockDecoder):
    """A policy run one step per forward: from the refresh, commit the policy's step, forward, repeat
    until the block is full (no forward after the step that fills it)."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__(cfg)
        if getattr(cfg, "pad_rows", 1) < 1:
            raise SSDError(f"decoder.pad_rows must be at least 1 (got {cfg.pad_rows})")
        self.policy = policy_of(cfg)

    def rows_per_forward(self) -> int:
        """In the bit-exact mode: the rows of the decoder this run is the reference of."""
        return getattr(self.cfg, "pad_rows", 1)

    def step(self, fwd: BlockForward, confidence: torch.Tensor, at_refresh: bool) -> torch.Tensor:
        """[R, L] bool: the policy's step at states whose block confidences are [R, L]. Right after a
        refresh whose block start only the refresh can predict (Dream with a cache), the block start
        alone, as Fast-dLLM's Dream code commits it (BlockForward.first_position_from_refresh)."""
        if at_refresh and fwd.first_position_from_refresh:
            first = torch.zeros_like(confidence, dtype=torch.bool)
            first[:, 0] = True
            return first
        return self.policy.select(confidence)

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
            commit = self.step(fwd, confidence, at_refresh)[0]
            x[0, start:end] = torch.where(commit, tokens[0], x[0, start:end])
            n = 1 if self.policy.single else int(commit.sum())  # Fast-dLLM's one host read per step
            committed.append(n)
            remaining -= n
            at_refresh = False
