"""SSD, self-speculative decoding (arXiv 2510.04147): the model drafts for itself and verifies the
drafts in one batched forward; the output is stepwise's, token for token.

    logits = refresh(x) at each block start
    repeat until the block is full:
        1. draft   from the forward at s_0: stepwise's choice at s_0 (the root s_1, always accepted)
                   and guesses of stepwise's later choices, arranged as a tree (ssd/decoders/tree.py);
                   the paper's chain of N drafts is the tree `0-00-...`: d_k = the k-th most
                   confident masked position of the block with its argmax token
        2. states  every node is s_0 plus the commits on its path
        3. verify  one batched forward over the nodes (those that fill the block need none: nothing
                   is left to choose there); from the root, follow the child whose commit is
                   stepwise's choice (position and token) at its parent, down to the deepest node
        4. commit  that node's state; its row's logits hold stepwise's next choice (the next root)
                   and the next drafts, so an iteration costs exactly one forward.

With `decoder.seed_next_block` the nodes that fill the block are evaluated too, last (one more row each;
in the bit-exact mode only with a cache), as full forwards of the whole sequence: without a cache their
rows run on into the next block; with one they run beside the cached rows (BlockForward.with_seeds) and
keep their keys/values aside. When one is accepted, its logits (and keys/values) are those of the next block's
refresh (the same full forward of the same state), which is then skipped.
Tree shapes are data: `decoder.tree` (a shape spec), `decoder.tree_budget` (an adaptive tree,
ssd/decoders/adaptive.py) or, by default, the chain of `decoder.draft_length`.
At temperature > 0 stepwise samples with counter-based noise keyed by the tokens committed so far
(ssd/decoders/noise.py): a node at depth d stands at stepwise's step t_0 + d and its row draws that
step's noise, and the drafts of depth d are sampled from s_0's logits with the noise of step t_0 + d - 1,
so SSD equals stepwise *sampling* token for token.
Identical to stepwise with the same cache mode by construction, *if* a row of the batched forward
equals the single forward stepwise makes; the runner's lossless check measures that per sample.
With one masked position left the last draft is committed without a forward, as stepwise does.
"""

from __future__ import annotations

import torch

from ssd.config import SSDConfig
from ssd.decoders.adaptive import AdaptiveTree
from ssd.decoders.base import BlockDecoder, BlockLoop, Rows, Seed, perturbed
from ssd.decoders.noise import CounterNoise
from ssd.decoders.tree import (
    Layout,
    TreeTensors,
    candidate_tokens,
    chain_spec,
    deepest_reached,
    node_states,
    parse,
    resolve,
)
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
        if problems := cfg.tree_problems():
            raise SSDError(problems[0])
        if cfg.seed_rows < 0:
            raise SSDError(f"decoder.seed_rows must be >= 0 (got {cfg.seed_rows}): 0 runs every filling one")
        if cfg.tree_budget < 0:
            raise SSDError(f"decoder.tree_budget must be >= 0 (got {cfg.tree_budget})")
        self.paths = parse(cfg.tree or chain_spec(cfg.draft_length)) if not cfg.tree_budget else ()
        self.adaptive = (
            AdaptiveTree(cfg.tree_budget, cfg.tree_cost, cfg.tree_calibration) if cfg.tree_budget else None
        )
        self.tensors: dict = {}
        # the most states filling the block evaluated per forward when seeding (0 in the config: all)
        self.seed_rows = cfg.seed_rows or 1 << 30

    def rows_per_forward(self) -> int:
        if self.adaptive is not None:
            return self.cfg.tree_budget
        return 1 + len(self.paths)

    def block(
        self,
        fwd: BlockForward,
        x: torch.Tensor,
        logits: torch.Tensor,
        noise: CounterNoise | None,
        committed: list[int],
    ) -> BlockLoop:
        start, remaining, at_refresh = fwd.start, fwd.end - fwd.start, True
        length = remaining
        # a block follows: the states filling this block are evaluated too, as the next block's refresh
        # (no cache: their rows' logits run on, fwd.lookahead; a cache: full rows beside the cached ones),
        # and the accepted one stands in for that refresh
        seeding = self.cfg.seed_next_block and fwd.end < x.shape[1]
        fwd.lookahead = length if self.cfg.seed_next_block and fwd.cache is None else 0
        while remaining:
            # 1. draft, from the forward at the current state s_0 (step: tokens committed so far)
            step = sum(committed)
            tokens, confidence = self.predict_block(fwd, x, logits, at_refresh, noise, step)
            order = torch.sort(confidence[0], descending=True, stable=True).indices
            fill = self.seed_rows if seeding and remaining > 1 else 0
            if self.adaptive is not None:
                layout, probs = self.adaptive.grow(logits, order, remaining, fill, fwd.cache is None)
            else:
                layout = resolve(self.paths, remaining, fill)
            if layout.evaluated == 0:  # one masked position left: stepwise commits it with no forward
                x[0, start + order[:1]] = tokens[0, order[:1]]  # 1-d indices: no host read
                committed.append(1)
                return None
            t = self._tensors(layout, x.device)
            cands = self.candidates(logits, layout, noise, step)
            # the root's commit is stepwise's own choice, taken from the very numbers stepwise uses (the
            # batched candidate scores may round differently in the last bit)
            cands[0, :, 0] = tokens[0]
            # 2. the candidate states, one per node
            states, own_pos, own_tok = node_states(x, start, order, cands, t)
            # 3. verify the evaluated ones in one forward (the filling ones last); walk from the root
            reply = yield Rows(states[: layout.evaluated], layout.seeds)
            if fwd.cache is None:
                verify_logits, next_block = reply[:, :length], reply[:, length:]
            else:  # the filling rows' logits are the next block's
                verify_logits = next_block = reply
            chosen = layout.evaluated - layout.seeds  # the rows that leave a choice in this block
            steps = step + t.depth_index[:chosen] + 1  # stepwise's step at each node
            v_tokens, v_confidence = self.predict_block(
                fwd, states[:chosen], verify_logits[:chosen], False, noise, steps
            )
            choice = v_confidence.argmax(-1)  # stepwise's choice at each of those nodes
            choice_tok = v_tokens.gather(1, choice[:, None])[:, 0]
            best = self.accept(layout, t, own_pos, own_tok, choice, choice_tok)
            if self.adaptive is not None:
                self.adaptive.observe(layout, best, choice, choice_tok, order, cands, probs)
            # 4. commit the deepest node reached; its logits carry the next root and drafts
            x[0] = states[best]
            a = layout.depth[best]
            committed.append(a)
            remaining -= a
            if best >= layout.evaluated:
                return None
            if remaining == 0:  # an evaluated state filled the block: its row seeds the next one
                return Seed(next_block[best : best + 1], best)
            logits, at_refresh = verify_logits[best : best + 1], False

    def accept(
        self,
        layout: Layout,
        t: TreeTensors,
        own_pos: torch.Tensor,
        own_tok: torch.Tensor,
        choice: torch.Tensor,
        choice_tok: torch.Tensor,
    ) -> int:
        """The index of the deepest node reached: the chain's one host sync per iteration (an adaptive
        tree adds its own: growing, its index tensors, counting what it saw)."""
        return int(deepest_reached(t, own_pos, own_tok, choice, choice_tok))

    def candidates(
        self, logits: torch.Tensor, layout: Layout, noise: CounterNoise | None, step: int
    ) -> torch.Tensor:
        """Token candidates [D, L, k] from s_0's logits: greedy, one set (D = 1); sampling, one set per
        depth d of the tree, drawn with the noise of step + d - 1 (what stepwise draws at the parent)."""
        k = self.adaptive.k if self.adaptive is not None else max(layout.token) + 1
        if self.cfg.temperature == 0:
            return candidate_tokens(logits.to(torch.float64), k)
        depths = max(layout.depth)
        steps = step + torch.arange(depths, device=logits.device)
        uniform = noise.uniform(steps, logits.shape[1], logits.shape[2], logits.device)
        return candidate_tokens(perturbed(logits.expand(depths, -1, -1), uniform, self.cfg.temperature), k)

    def _tensors(self, layout: Layout, device: torch.device) -> TreeTensors:
        key = (layout, device)
        if key not in self.tensors:
            if len(self.tensors) > 4096:
                self.tensors.clear()
            self.tensors[key] = TreeTensors(layout, device)
        return self.tensors[key]
