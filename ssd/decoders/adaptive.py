"""An adaptive verification tree for SSD: each iteration's tree grown greedily from path probabilities.

The rule (the project's own; no paper defines it). At s_0, with m masked positions left, let r index
them in s_0's confidence order and p(r, k) be s_0's softmax probability of the k-th candidate token at
rank r (k = 0: the argmax). A child of a node at depth d is (j, k): the j-th rank not committed on the
node's path, with its k-th token (j < J = 4, k < K = 2). Its probability of being stepwise's choice at
the node is estimated as

    pi(j, k) = P(j) * p(r_j, k),   P(j) = (c_j + a * 2^-(j+1)) / (C + a),   a = 4

where c_j counts, over the evaluated nodes on accepted paths seen so far in this sequence, how often
stepwise's choice was the j-th free rank (C: all such observations, including choices beyond J).
A node's path probability q is the product of pi along its path (the root s_1: q = 1, it is always
stepwise's choice). Growing: start from the root; repeatedly add the frontier node of highest q (ties:
the first pushed) and push its children, until the tree holds `budget` evaluated nodes (nodes that fill
the block cost no row and are added when popped). Expected tokens committed by the iteration = sum of
q over the tree (the nodes reached form one path from the root).

With a cost table (ssd/cost.py: ms per forward by rows), the tree is cut to the prefix of b rows
(1 <= b <= budget) maximising (sum of q of the nodes added up to the b-th row) / ms(b).
"""

from __future__ import annotations

import heapq

import torch

from ssd.cost import CostTable
from ssd.decoders.tree import Layout, order_rows

J, K, PRIOR_WEIGHT = 4, 2, 4.0


class AdaptiveTree:
    def __init__(self, budget: int, cost_path: str = "") -> None:
        self.budget = budget
        self.cost = CostTable.load(cost_path) if cost_path else None
        self.counts: dict[int, list[float]] = {}

    def reset(self) -> None:
        self.counts.clear()

    def position_prior(self, key: int) -> list[float]:
        """P(j) for j < J from this sequence's observations (the last entry counts choices beyond J)."""
        c = self.counts.setdefault(key, [0.0] * (J + 1))
        total = sum(c)
        return [(c[j] + PRIOR_WEIGHT * 2.0 ** -(j + 1)) / (total + PRIOR_WEIGHT) for j in range(J)]

    def grow(self, logits: torch.Tensor, order: torch.Tensor, m: int, key: int) -> Layout:
        """This iteration's tree for the state whose block logits are `logits` [1, L, V]."""
        probs = torch.softmax(logits[0].to(torch.float64), -1)[order[:m]]
        p = probs.topk(min(K, probs.shape[-1]), dim=-1).values.tolist()  # the tree's host sync
        pj = self.position_prior(key)
        nodes: list[tuple[int, int, int, int]] = []  # parent, rank, token rank, depth
        q_added: list[float] = []
        used: list[tuple[int, ...]] = []
        heap: list[tuple[float, int, int, int, int, tuple[int, ...]]] = [(-1.0, 0, -1, 0, 0, ())]
        pushed, rows, cuts = 1, 0, []
        while heap and rows < self.budget and len(nodes) < 8 * self.budget:
            negq, _, parent, rank, k, path = heapq.heappop(heap)
            depth = len(path) + 1
            nodes.append((parent, rank, k, depth))
            q_added.append(-negq)
            used.append((*path, rank))
            if depth < m:
                rows += 1
                cuts.append(len(nodes))
                me = len(nodes) - 1
                free = [r for r in range(m) if r not in used[me]]
                for j, r in enumerate(free[:J]):
                    for kk in range(len(p[r])):
                        q = -negq * pj[j] * p[r][kk]
                        heapq.heappush(heap, (-q, pushed, me, r, kk, used[me]))
                        pushed += 1
        if self.cost is not None and cuts:
            best = max(range(len(cuts)), key=lambda b: sum(q_added[: cuts[b]]) / self.cost.ms(b + 1))
            nodes = nodes[: cuts[best]]
        return order_rows(nodes, m)

    def observe(self, layout: Layout, best: int, choice: torch.Tensor, order: torch.Tensor, key: int) -> None:
        """Count, at each evaluated node on the accepted path, which free rank stepwise chose."""
        path, a = [], best
        while a >= 0:
            path.append(a)
            a = layout.parent[a]
        path = [u for u in reversed(path) if u < layout.evaluated]
        if not path:
            return
        chosen = choice[path].tolist()
        rank_of = {pos: r for r, pos in enumerate(order.tolist())}
        c = self.counts.setdefault(key, [0.0] * (J + 1))
        for u, pos in zip(path, chosen, strict=True):
            on_path, v = set(), u
            while v >= 0:
                on_path.add(layout.rank[v])
                v = layout.parent[v]
            r = rank_of[pos]
            j = sum(1 for s in range(r) if s not in on_path)
            c[min(j, J)] += 1
