"""SSD, self-speculative decoding (arXiv 2510.04147): the model drafts for itself and verifies the
drafts in one batched forward; the output is stepwise's, token for token.

    logits = refresh(x) at each block start
    repeat until the block is full:
        1. draft   d_1..d_N = stepwise's choice at s_0, then the next most confident masked positions
                   of the block, with their argmax tokens (N = min(draft_length, masked left))
        2. chain   s_k = s_0 with d_1..d_k committed, k = 1..N
        3. verify  one batched forward over s_1..s_K (K = N, or N - 1 when s_N completes the block:
                   nothing is left to choose there); accept d_{k+1} iff stepwise's choice at s_k
                   (position and token) is d_{k+1}; stop at the first miss. d_1 is always accepted.
        4. commit  s_a, a = accepted drafts. Its logits are row a of the verification forward: they hold
                   stepwise's next choice (the bonus token, drafted as d_1 next) and the next drafts,
                   so an iteration costs exactly one forward.

Identical to stepwise with the same cache mode by construction, *if* a row of the batched forward
equals the single forward stepwise makes; the runner's lossless check measures that per sample.
With one masked position left the last draft is committed without a forward, as stepwise does.
"""

from __future__ import annotations

import torch

from ssd.config import SSDConfig
from ssd.decoders.base import BlockDecoder, BlockLoop, draft_chain
from ssd.errors import SSDError
from ssd.models.cache import BlockForward


class SelfSpeculative(BlockDecoder):
    name = "ssd"
    lossless = True  # relative to stepwise with the same model, cache mode, block and generation length
    cfg: SSDConfig

    def __init__(self, cfg: SSDConfig) -> None:
        super().__init__(cfg)
        if cfg.draft_length < 1:
            raise SSDError(f"decoder.draft_length must be at least 1 (got {cfg.draft_length})")
        if cfg.temperature != 0:
            raise SSDError("ssd verifies against greedy stepwise decoding: set decoder.temperature=0")

    def rows_per_forward(self) -> int:
        return self.cfg.draft_length

    def accepted(self, match: torch.Tensor) -> int:
        """The accepted length 1 + (leading matches of d_2..): the iteration's one host sync."""
        return 1 + int(match.long().cumprod(0).sum())

    def block(
        self,
        fwd: BlockForward,
        x: torch.Tensor,
        logits: torch.Tensor,
        generator: torch.Generator | None,
        committed: list[int],
    ) -> BlockLoop:
        start, remaining, at_refresh = fwd.start, fwd.end - fwd.start, True
        while remaining:
            # 1. draft, from the forward at the current state s_0
            tokens, confidence = self.predict_block(fwd, x, logits, at_refresh)
            n = min(self.cfg.draft_length, remaining)
            positions = torch.sort(confidence[0], descending=True, stable=True).indices[:n]
            drafts = tokens[0, positions]
            n_states = n if n < remaining else n - 1
            if n_states == 0:  # one masked position left: stepwise commits it with no forward
                x[0, start + positions] = drafts
                committed.append(1)
                return
            # 2. the chain s_1..s_K of candidate states, row k holding d_1..d_{k+1}
            chain = draft_chain(x, start, positions, drafts, range(1, n_states + 1))
            # 3. verify all of them in one forward
            verify_logits = yield chain
            v_tokens, v_confidence = self.predict_block(fwd, chain, verify_logits, at_refresh=False)
            choice = v_confidence.argmax(-1)  # stepwise's choice at s_1..s_K
            choice_token = v_tokens.gather(1, choice[:, None])[:, 0]
            m = min(n_states, n - 1)
            match = (choice[:m] == positions[1 : m + 1]) & (choice_token[:m] == drafts[1 : m + 1])
            a = self.accepted(match)
            # 4. commit s_a; its logits carry the bonus token and the next drafts
            x[0, start + positions[:a]] = drafts[:a]
            committed.append(a)
            remaining -= a
            logits, at_refresh = verify_logits[a - 1 : a], False
