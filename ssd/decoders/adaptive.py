"""An adaptive verification tree for SSD: each iteration's tree grown greedily from path probabilities.

The rule (the project's own; no paper defines it). At s_0, with m masked positions left, let r index
them in s_0's confidence order and p(r, k) be s_0's softmax probability of the k-th candidate token at
rank r (k = 0: the argmax). A child of a node at depth d (commits on its path; the root s_1 has d = 1)
is (j, k): the j-th rank not committed on the node's path, with its k-th token (j < J = 4, k < K = 3).
Its probability of being stepwise's choice at the node is estimated as

    pi(j, k) = P(j | d) * T(k | d, b)
    P(j | d)    = (c[d][j] + a * 2^-(j+1)) / (C[d] + a)
    T(k | d, b) = (t[d][b][k] + a * p(r_j, k)) / (T[d][b] + a),     a = 4

with b the bucket of p(r_j, 0) (edges 0.5, 0.8, 0.95, 0.99) and d capped at 8. The counts are the
acceptance statistics this decoder has seen so far (over all sequences it decoded; `reset()` clears
them): at every evaluated node on an accepted path, stepwise's own choice is known; c[d][j] counts that
it was the j-th free rank (j >= J counted in C only), t[d][b][k] that its token was s_0's k-th
candidate at that position (k >= K in T only). The priors are the chain's geometric guess and s_0's own
probabilities. A node's path probability q is the product of pi along its path (the root: q = 1, it is
always stepwise's choice). Growing: start from the root; repeatedly add the frontier node of highest q
(ties: the first pushed) and push its children, until the tree holds `budget` evaluated nodes. Nodes
that fill the block are added when popped and cost no row, except, when seeding the next block
(`decoder.seed_next_block`), the first `fill` popped (`decoder.seed_rows`; 0: all), each evaluated in a
whole-sequence row. Expected tokens committed by the iteration = sum of q over the tree (the nodes
reached form one path from the root).

With a cost table (ssd/cost.py: ms per forward by rows), the tree is cut to the prefix of b rows
(1 <= b <= budget) maximising (sum of q of the nodes added up to the b-th row) / forward_ms(b, f_b),
f_b = b without a cache (every row runs the whole sequence), else 0. A priced tree does not seed (the
table prices a seed as the refresh it may save, so it never pays: SSDConfig refuses the pair).
At temperature > 0 the rule is the same (p from s_0's clean softmax; candidates sampled per depth).
Which tree is built never changes the tokens (acceptance checks stepwise's choices), only the NFE; as
the statistics live in the decoder object, a resumed job or another sample order can give other NFE.
With a calibration (`decoder.tree_calibration`) the rows come from a draft graph instead (graph.py): a
position model fitted offline, fixed during decoding (no counts kept), so NFE does not depend on the
order of the samples.
"""

from __future__ import annotations

import heapq
from bisect import bisect

import torch

from ssd.cost import CostTable
from ssd.decoders.graph import Calibration, DraftGraph
from ssd.decoders.tree import Layout, order_rows

J, K, PRIOR_WEIGHT, MAX_DEPTH = 4, 3, 4.0, 8
EDGES = (0.5, 0.8, 0.95, 0.99)


class AdaptiveTree:
    def __init__(self, budget: int, cost_path: str = "", calibration: str = "") -> None:
        self.budget = budget
        self.cost = CostTable.load(cost_path) if cost_path else None
        self.graph = DraftGraph(budget, Calibration.load(calibration)) if calibration else None
        self.k = self.graph.cal.tokens if self.graph else K  # token candidates drafted per position
        self.reset()

    def reset(self) -> None:
        d, b = MAX_DEPTH + 1, len(EDGES) + 1
        self.positions = [[0.0] * (J + 1) for _ in range(d)]  # [depth][j], last: beyond J
        self.tokens = [[[0.0] * (K + 1) for _ in range(b)] for _ in range(d)]  # [depth][bucket][k]

    def position_model(self, depth: int) -> list[float]:
        c = self.positions[min(depth, MAX_DEPTH)]
        return [(c[j] + PRIOR_WEIGHT * 2.0 ** -(j + 1)) / (sum(c) + PRIOR_WEIGHT) for j in range(J)]

    def token_model(self, depth: int, p: list[float]) -> list[float]:
        t = self.tokens[min(depth, MAX_DEPTH)][bisect(EDGES, p[0])]
        return [(t[k] + PRIOR_WEIGHT * p[k]) / (sum(t) + PRIOR_WEIGHT) for k in range(len(p))]

    def grow(
        self, logits: torch.Tensor, order: torch.Tensor, m: int, fill: int = 0, whole: bool = False
    ) -> tuple[Layout, list[list[float]]]:
        """This iteration's tree for the state whose block logits are `logits` [1, L, V], and the
        token probabilities p(r, k) it was grown from (`fill`: the first so many nodes filling the block
        are evaluated, a row each; `whole`: every row runs the whole sequence, as without a cache)."""
        if self.graph is not None:
            return self.graph.grow(logits, order, m, fill)
        probs = torch.softmax(logits[0].to(torch.float64), -1)[order[:m]]
        p = probs.topk(min(K, probs.shape[-1]), dim=-1).values.tolist()  # the tree's host sync
        nodes: list[tuple[int, int, int, int]] = []  # parent, rank, token rank, depth
        q_added: list[float] = []
        heap: list[tuple[float, int, int, int, int, tuple[int, ...]]] = [(-1.0, 0, -1, 0, 0, ())]
        pushed, rows, fills, cuts = 1, 0, 0, []
        while heap and rows < self.budget and len(nodes) < 8 * self.budget:
            negq, _, parent, rank, k, path = heapq.heappop(heap)
            used = (*path, rank)
            nodes.append((parent, rank, k, len(used)))
            q_added.append(-negq)
            filling = len(used) >= m
            if not filling or fills < fill:
                rows, fills = rows + 1, fills + filling
                cuts.append(len(nodes))
            if len(used) < m:
                pj = self.position_model(len(used))
                free = [r for r in range(m) if r not in used]
                for j, r in enumerate(free[:J]):
                    for kk, t in enumerate(self.token_model(len(used), p[r])):
                        heapq.heappush(heap, (negq * pj[j] * t, pushed, len(nodes) - 1, r, kk, used))
                        pushed += 1
        if self.cost is not None and cuts:
            c = self.cost

            def rate(b: int) -> float:  # b + 1 rows, all whole without a cache
                return sum(q_added[: cuts[b]]) / c.forward_ms(b + 1, b + 1 if whole else 0, logits.shape[1])

            nodes = nodes[: cuts[max(range(len(cuts)), key=rate)]]
        return order_rows(nodes, m, fill), p

    def observe(
        self,
        layout: Layout,
        best: int,
        choice: torch.Tensor,
        choice_tok: torch.Tensor,
        order: torch.Tensor,
        cands: torch.Tensor,
        p: list[list[float]],
    ) -> None:
        """Count, at each evaluated node on the accepted path, which free rank and which of s_0's
        candidate tokens stepwise chose (a calibrated graph keeps no counts)."""
        if self.graph is not None:
            return
        path, a = [], best
        while a >= 0:
            path.append(a)
            a = layout.parent[a]
        path = [u for u in reversed(path) if u < layout.evaluated - layout.seeds]  # nodes with a choice
        if not path:
            return
        index = torch.tensor(path, device=choice.device)
        pos, tok = choice[index].tolist(), choice_tok[index].tolist()
        rank_of = {q: r for r, q in enumerate(order.tolist())}
        cand = cands.tolist()  # [D, L, K]
        for u, q, t in zip(path, pos, tok, strict=True):
            on_path, v = set(), u
            while v >= 0:
                on_path.add(layout.rank[v])
                v = layout.parent[v]
            r, d = rank_of[q], min(layout.depth[u], MAX_DEPTH)
            j = sum(1 for s in range(r) if s not in on_path)
            self.positions[d][min(j, J)] += 1
            if r < len(p):
                mine = cand[min(layout.depth[u], len(cand) - 1)][q]  # drafted for u's children
                k = mine.index(t) if t in mine else K
                self.tokens[d][bisect(EDGES, p[r][0])][min(k, K)] += 1
