"""SSD, self-speculative decoding (arXiv 2510.04147), over any policy: the model drafts a decoder's next
steps for itself and verifies them in one batched forward; the output is that decoder's, token for token.

The paper speculates over stepwise (`decoder.policy=stepwise`, the default); the same mechanism runs over
Fast-dLLM's threshold or factor rule (`decoder.policy=fast_dllm`, with `decoder.rule`, `.threshold`,
`.factor`), whose output it then reproduces in fewer forwards. A policy's step is a deterministic function
of the state's confidences (ssd/decoders/policy.py), so it can be computed on any verification row.

    logits = refresh(x) at each block start
    repeat until the block is full:
        1. draft   from the forward at s_0: the policy's own step at s_0 (the root s_1, always accepted)
                   and guesses of its later steps, arranged as a tree (ssd/decoders/tree.py): stepwise's
                   chain of N drafts is the tree `0-00-...` (d_k = the k-th most confident masked
                   position with its argmax token); a set policy's guesses are sets of positions
                   (ssd/decoders/drafts.py)
        2. states  every node is s_0 plus the steps on its path
        3. verify  one batched forward over the nodes (those that fill the block need none: nothing
                   is left to choose there); from the root, follow the child whose step is the policy's
                   step (positions and tokens) at its parent, down to the deepest node
        4. commit  that node's state; its row's logits hold the policy's next step (the next root)
                   and the next drafts, so an iteration costs exactly one forward.

With `decoder.seed_next_block` the nodes that fill the block are evaluated too, last (one more row each;
in the bit-exact mode only with a cache), as full forwards of the whole sequence: without a cache their
rows run on into the next block; with one they run beside the cached rows (BlockForward.with_seeds) and
keep their keys/values aside. When one is accepted, its logits (and keys/values) are those of the next
block's refresh (the same full forward of the same state), which is then skipped.
Tree shapes are data: `decoder.tree` (a shape spec, stepwise), `decoder.tree_budget` (an adaptive tree:
ssd/decoders/adaptive.py for stepwise, ssd/decoders/drafts.py for a set policy) or, by default, the chain
of `decoder.draft_length`.
At temperature > 0 the policy samples with counter-based noise keyed by the tokens committed so far
(ssd/decoders/noise.py): a node with t commits on its path stands at the policy's step t_0 + t and its
row draws that step's noise, and a node's guessed tokens are sampled from s_0's logits with the noise of
its parent's step, so SSD equals the policy's *sampling* token for token.
Identical to the policy's decoder with the same cache mode by construction, *if* a row of the batched
forward equals the single forward that decoder makes; the runner's lossless check measures that per
sample. When the root fills the block it is committed without a forward, as the policy's decoder does.
"""

from __future__ import annotations

import torch

from ssd.config import DecoderConfig, FastDLLMConfig, SSDConfig, StepPolicy
from ssd.decoders.adaptive import AdaptiveTree, K
from ssd.decoders.base import BlockLoop, Rows, Seed, perturbed
from ssd.decoders.drafts import TransitionTree
from ssd.decoders.noise import CounterNoise
from ssd.decoders.policy import PolicyDecoder
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


class SelfSpeculative(PolicyDecoder):
    name = "ssd"
    lossless = True  # relative to its policy's decoder with the same model, cache mode, block and length
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
        # stepwise's trees: a shape (the chain by default) or an adaptive one; a set policy's: drafts.py
        self.paths, self.adaptive, self.transitions = (), None, None
        if not self.policy.single:
            self.transitions = TransitionTree(cfg.tree_budget, cfg.draft_length, cfg.tree_cost)
        elif cfg.tree_budget:
            self.adaptive = AdaptiveTree(cfg.tree_budget, cfg.tree_cost, cfg.tree_calibration)
        else:
            # a chain longer than the block is cut to it (draft_length is range-checked with the config)
            spec, block = (cfg.tree, cfg.block_length) if cfg.tree else (chain_spec(cfg.draft_length), None)
            self.paths = parse(spec, block)
        self.tensors: dict = {}
        # the most states filling the block evaluated per forward when seeding (0 in the config: all)
        self.seed_rows = cfg.seed_rows or 1 << 30

    def rows_per_forward(self) -> int:
        if self.transitions is not None:
            return self.transitions.rows
        if self.adaptive is not None:
            return self.cfg.tree_budget
        return 1 + len(self.paths)

    def reference_config(self) -> DecoderConfig:
        """The policy's own decoder with the same frame (stepwise: Decoder.reference_config); in the
        bit-exact mode its forwards padded to this decoder's rows, in the same layout."""
        c = self.cfg
        if c.policy == StepPolicy.stepwise:
            return super().reference_config()
        reference = FastDLLMConfig(
            gen_length=c.gen_length,
            block_length=c.block_length,
            cache=c.cache,
            temperature=c.temperature,
            rule=c.rule,
            threshold=c.threshold,
            factor=c.factor,
        )
        if c.bit_exact:
            reference.bit_exact, reference.verify_layout = True, c.verify_layout
            reference.pad_rows = self.rows_per_forward()
        return reference

    def block(
        self,
        fwd: BlockForward,
        x: torch.Tensor,
        logits: torch.Tensor,
        noise: CounterNoise | None,
        committed: list[int],
    ) -> BlockLoop:
        start, end, remaining, at_refresh = fwd.start, fwd.end, fwd.end - fwd.start, True
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
            root = self.step(fwd, tokens, confidence, at_refresh)[0]  # the policy's own step
            ranks = (0,) if self.policy.single else root_ranks(root, order)  # Fast-dLLM's own host read
            if not ranks:  # only mask-token candidates: the policy's decoder ends the block here too
                return None
            width = len(ranks)
            fill = self.seed_rows if seeding and remaining > width else 0
            layout, probs = self.draft(logits, order, remaining, ranks, fill, fwd.cache is None)
            if layout.evaluated == 0:  # the root fills the block: committed with no forward, as the policy
                x[0, start:end] = torch.where(root, tokens[0], x[0, start:end])
                committed.append(width)
                return None
            t = self._tensors(layout, x.device)
            cands = self.candidates(logits, layout, t, noise, step)
            # the root's commits are the policy's own, taken from the very numbers its decoder uses (the
            # batched candidate scores may round differently in the last bit)
            cands[0, :, 0] = tokens[0]
            # 2. the candidate states, one per node
            states, own, own_tokens = node_states(x, start, order, cands, t)
            # 3. verify the evaluated ones in one forward (the filling ones last); walk from the root
            reply = yield Rows(states[: layout.evaluated], layout.seeds)
            if fwd.cache is None:
                verify_logits, next_block = reply[:, :length], reply[:, length:]
            else:  # the filling rows' logits are the next block's
                verify_logits = next_block = reply
            chosen = layout.evaluated - layout.seeds  # the rows that leave a step in this block
            v_tokens, v_confidence = self.predict_block(
                fwd, states[:chosen], verify_logits[:chosen], False, noise, step + t.steps[:chosen]
            )
            real = self.step(fwd, v_tokens, v_confidence, False)  # the policy's step at each of those nodes
            best = self.accept(layout, t, own, own_tokens, real, v_tokens)
            self.learn(layout, best, real, v_tokens, v_confidence, order, cands, probs)
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

    def draft(
        self, logits: torch.Tensor, order: torch.Tensor, m: int, root: tuple[int, ...], fill: int, whole: bool
    ) -> tuple[Layout, list[list[float]]]:
        """This iteration's tree for m masked positions, rooted at the policy's step over the ranks `root`
        of s_0's confidence order (`fill`: nodes filling the block evaluated too; `whole`: every row runs
        the whole sequence), and the token probabilities it was grown from (adaptive trees)."""
        if self.transitions is not None:
            return self.transitions.grow(logits, order, m, root, fill, whole)
        if self.adaptive is not None:
            return self.adaptive.grow(logits, order, m, fill, whole)
        return resolve(self.paths, m, fill), []

    def learn(
        self,
        layout: Layout,
        best: int,
        real: torch.Tensor,
        v_tokens: torch.Tensor,
        v_confidence: torch.Tensor,
        order: torch.Tensor,
        cands: torch.Tensor,
        probs: list[list[float]],
    ) -> None:
        """An adaptive tree counts what the policy did along the accepted path."""
        if self.transitions is not None:
            self.transitions.observe(layout, best, real, v_tokens, order, cands, probs)
        elif self.adaptive is not None:
            choice = v_confidence.argmax(-1)  # stepwise's choice at each evaluated node
            choice_tok = v_tokens.gather(1, choice[:, None])[:, 0]
            self.adaptive.observe(layout, best, choice, choice_tok, order, cands, probs)

    def accept(
        self,
        layout: Layout,
        t: TreeTensors,
        own: torch.Tensor,
        own_tokens: torch.Tensor,
        real: torch.Tensor,
        real_tokens: torch.Tensor,
    ) -> int:
        """The index of the deepest node reached: the chain's one host sync per iteration (an adaptive
        tree adds its own: growing, its index tensors, counting what it saw)."""
        return int(deepest_reached(t, own, own_tokens, real, real_tokens))

    def candidates(
        self, logits: torch.Tensor, layout: Layout, t: TreeTensors, noise: CounterNoise | None, step: int
    ) -> torch.Tensor:
        """Token candidates [U, L, k] from s_0's logits: greedy, one set (U = 1); sampling, one set per
        level of the tree (t.levels: commits before a node), drawn with the noise of step + level (what
        the policy draws at the node's parent)."""
        if self.transitions is not None:
            k = K
        elif self.adaptive is not None:
            k = self.adaptive.k
        else:
            k = max(layout.token) + 1
        if self.cfg.temperature == 0:
            return candidate_tokens(logits.to(torch.float64), k)
        steps = step + torch.tensor(t.levels, device=logits.device)
        uniform = noise.uniform(steps, logits.shape[1], logits.shape[2], logits.device)
        scores = perturbed(logits.expand(len(t.levels), -1, -1), uniform, self.cfg.temperature)
        return candidate_tokens(scores, k)

    def _tensors(self, layout: Layout, device: torch.device) -> TreeTensors:
        key = (layout, device)
        if key not in self.tensors:
            if len(self.tensors) > 4096:
                self.tensors.clear()
            self.tensors[key] = TreeTensors(layout, device)
        return self.tensors[key]


def root_ranks(root: torch.Tensor, order: torch.Tensor) -> tuple[int, ...]:
    """The ranks in s_0's confidence order of the positions the root commits: a prefix of it, but for
    positions whose candidate is the mask token, which a set policy leaves masked."""
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.shape[0], device=order.device)
    return tuple(sorted(rank[root].tolist()))
