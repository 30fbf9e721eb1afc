"""PSD-style adaptive speculative decoding (arXiv 2605.15609; no code was published).

Our exact reading of the paper: parallel decoding's adaptive policy gives the *spatial* parallelism,
speculation on top of it the *temporal* one, and acceptance is checked against the model's updated
predictions (token agreement), not against stepwise's choice, so it is not lossless.

    logits = refresh(x) at each block start
    repeat until the block is full:
        1. spatial   C = the positions the adaptive policy commits now (Fast-dLLM's threshold or factor
                     rule on the current confidences; top-1 always); commit them
        2. temporal  r_1..r_D = the next most confident masked positions outside C, from the same
                     confidences, with their argmax tokens (D = min(draft_length, masked left));
                     drafts of depth j: t_j = x with r_1..r_j committed, j = 0..D
        3. verify    one batched forward over t_0..t_D (t_D is skipped when it completes the block)
        4. accept    hierarchically: depth j survives iff every r_i, i <= j, is the argmax token that
                     the forward at t_{i-1} predicts at r_i; keep the deepest surviving draft t_a.
                     Its logits (row a) start the next iteration: one forward per iteration.

With a cache, Dream's refresh commits only the block start (as Fast-dLLM); drafts follow as usual.
"""

from __future__ import annotations

import torch

from ssd.config import PSDConfig
from ssd.decoders.base import BlockLoop, draft_chain
from ssd.decoders.fast_dllm import FastDLLM
from ssd.decoders.noise import CounterNoise
from ssd.errors import SSDError
from ssd.models.cache import BlockForward


class PSD(FastDLLM):
    name = "psd"
    cfg: PSDConfig

    def __init__(self, cfg: PSDConfig) -> None:
        super().__init__(cfg)
        if cfg.draft_length < 0:
            raise SSDError(f"decoder.draft_length must be >= 0 (got {cfg.draft_length})")

    def rows_per_forward(self) -> int:
        return self.cfg.draft_length + 1

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
            # 1. spatial: what the adaptive policy commits now
            tokens, confidence = self.predict_block(fwd, x, logits, at_refresh, noise, sum(committed))
            now = self.step(fwd, confidence, at_refresh)[0]
            x[0, start:end] = torch.where(now, tokens[0], x[0, start:end])
            left = remaining - int(now.sum())
            if left == 0:
                committed.append(remaining)
                return
            # 2. temporal: drafts of increasing depth beyond that set, from the same confidences
            depth = min(self.cfg.draft_length, left)
            order = torch.sort(confidence[0].masked_fill(now, -torch.inf), descending=True, stable=True)
            positions, drafts = order.indices[:depth], tokens[0, order.indices[:depth]]
            rows = range(min(depth + 1, left))  # depths 0..D, skipping a draft that completes the block
            chain = draft_chain(x, start, positions, drafts, rows)
            # 3. one verification forward
            verify_logits = yield chain
            # 4. hierarchical acceptance against the updated predictions
            predicted = verify_logits.argmax(-1)  # [rows, L]
            m = min(depth, len(rows))
            agree = predicted[torch.arange(m), positions[:m]] == drafts[:m]
            a = int(agree.long().cumprod(0).sum())
            x[0, start + positions[:a]] = drafts[:a]
            committed.append(remaining - left + a)
            remaining = left - a
            logits, at_refresh = verify_logits[a : a + 1], False
