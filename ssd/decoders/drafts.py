"""Drafts of a set policy's next steps (Fast-dLLM's threshold or factor rule), grown as a tree.

The rule (the project's own reading of speculation over a parallel decoder, as Spiffy and FreeDave do it;
neither published this draft model). A set policy commits, at every state, a prefix of the masked
positions sorted by confidence (ssd/decoders/policy.py). At s_0 the root is its real step (the first w
ranks of s_0's confidence order). Every other node guesses the policy's step at its parent, with the
free ranks F (those not committed on the path) in s_0's order and p(r, k) s_0's softmax probability of
the k-th candidate token at rank r:

    a prefix     the first n free ranks F[:n] with s_0's argmax tokens, or one of them with its k-th
                 token (1 <= n <= |F|, k < K = 3; a step of a threshold rule in a block of 32 can
                 commit a dozen positions at once)
    a singleton  the free rank F[j] alone with its k-th token                 (1 <= j < J = 2)

Its probability of being the policy's step is estimated as

    pi(prefix n)   = S(n | d) * prod_{r in F[:n]} T(0 | d, b_r)
    pi(j, k)       = S(1 | d) * P(j | d) * T(k | d, b_{F[j]})
    S(n | d)       = (s[d][n] + a * 2^-n) / (S[d] + a)
    P(j | d)       = (c[d][j] + a * 2^-(j+1)) / (C[d] + a)
    T(k | d, b)    = (t[d][b][k] + a * p(r, k)) / (T[d][b] + a),      a = 4

d the guessed steps on the path (the root's children: 1), capped at 4, b the bucket of p(r, 0) (edges 0.5,
0.8, 0.95, 0.99). The counts are what this decoder saw so far (`reset()` clears them): at every evaluated
node on an accepted path the policy's real step is known, and s[d][n] counts its size when it was a
prefix of the free ranks (other sets count in S[d] only), c[d][j] its rank when it was one position,
t[d][b][k] the rank among s_0's candidates of every token it committed. A node's path probability q is the
product of pi along its path (the root: 1). Growing, as the stepwise adaptive tree (adaptive.py): from the
root, repeatedly add the frontier node of highest q and push its children until the tree holds `budget`
evaluated nodes (nodes filling the block cost no row, unless seeding: the first `fill` popped). Without a
budget, the chain of `draft_length` rows: at each node its likeliest child. With a cost table the tree is
cut to the prefix maximising expected tokens per millisecond, as adaptive.py does.
Which tree is built never changes the tokens (acceptance checks the policy's real steps), only the NFE.
"""

from __future__ import annotations

import heapq
from bisect import bisect

import torch

from ssd.cost import CostTable
from ssd.decoders.tree import Layout, Node, order_nodes

J, K, PRIOR_WEIGHT, MAX_STEPS = 2, 3, 4.0, 4
EDGES = (0.5, 0.8, 0.95, 0.99)  # token model buckets of p(r, 0), as adaptive.py
LEVELS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # continuation buckets of p(r, 0)


class TransitionTree:
    def __init__(self, budget: int, draft_length: int, cost_path: str = "") -> None:
        self.budget, self.chain = budget, draft_length
        self.rows = budget or draft_length  # the most rows of one sequence per forward
        self.cost = CostTable.load(cost_path) if cost_path else None
        self.reset()

    def reset(self) -> None:
        d, b, c = MAX_STEPS + 1, len(EDGES) + 1, len(LEVELS) + 1
        self.kinds = [[0.0] * (J + 1) for _ in range(d)]  # [steps][a prefix, a lone F[j] (j >= 1), other]
        self.cont = [[[0.0, 0.0] for _ in range(c)] for _ in range(d)]  # [steps][level][stop, go on]
        self.tokens = [[[0.0] * (K + 1) for _ in range(b)] for _ in range(d)]  # [steps][bucket][k]

    def _kind(self, d: int, j: int) -> float:
        """P(the step is a prefix of the free ranks) (j = 0), or the lone free rank j."""
        c = self.kinds[min(d, MAX_STEPS)]
        prior = 0.8 if j == 0 else 0.2 * 2.0**-j
        return (c[j] + PRIOR_WEIGHT * prior) / (sum(c) + PRIOR_WEIGHT)

    def _go_on(self, d: int, p0: float) -> float:
        """P(a prefix step goes on to a free rank of s_0-confidence p0 | it reached the one before)."""
        stop, go = self.cont[min(d, MAX_STEPS)][bisect(LEVELS, p0)]
        return (go + PRIOR_WEIGHT * p0) / (stop + go + PRIOR_WEIGHT)

    def _token(self, d: int, p: list[float], k: int) -> float:
        t = self.tokens[min(d, MAX_STEPS)][bisect(EDGES, p[0])]
        return (t[k] + PRIOR_WEIGHT * p[k]) / (sum(t) + PRIOR_WEIGHT)

    def children(self, free: list[int], d: int, p: list[list[float]]) -> list[tuple[float, tuple]]:
        """(pi, commits) of each guess of the policy's step at a node with free ranks `free`, d steps
        below the root."""
        out, go, tokens = [], self._kind(d, 0), 1.0
        for n in range(1, len(free) + 1):
            if n > 1:
                go *= self._go_on(d, p[free[n - 1]][0])
            tokens *= self._token(d, p[free[n - 1]], 0)
            stop = 1.0 - self._go_on(d, p[free[n]][0]) if n < len(free) else 1.0
            prefix = tuple((r, 0) for r in free[:n])
            out.append((go * stop * tokens, prefix))
            for i, r in enumerate(free[: n if n <= J + 2 else 0]):  # one position's runner-up tokens
                argmax = self._token(d, p[r], 0)
                for k in range(1, len(p[r])):
                    variant = (*prefix[:i], (r, k), *prefix[i + 1 :])
                    out.append((go * stop * tokens / argmax * self._token(d, p[r], k), variant))
        for j in range(1, min(J, len(free))):
            r = free[j]
            out += [(self._kind(d, j) * self._token(d, p[r], k), ((r, k),)) for k in range(len(p[r]))]
        return out

    def grow(
        self,
        logits: torch.Tensor,
        order: torch.Tensor,
        m: int,
        root: tuple[int, ...],
        fill: int = 0,
        whole: bool = False,
    ) -> tuple[Layout, list[list[float]]]:
        """This iteration's tree for the state whose block logits are `logits` [1, L, V], rooted at the
        policy's step over the ranks `root` of its m masked positions in confidence order."""
        probs = torch.softmax(logits[0].to(torch.float64), -1)[order[:m]]
        p = probs.topk(min(K, probs.shape[-1]), dim=-1).values.tolist()  # the tree's host sync
        nodes: list[Node] = []
        q_added: list[float] = []
        # (-q, tie, parent, commits, steps below the root, ranks used on the path)
        start = tuple((r, 0) for r in root)
        heap: list[tuple[float, int, int, tuple, int, frozenset]] = [(-1.0, 0, -1, start, 0, frozenset())]
        pushed, rows, fills, cuts = 1, 0, 0, []
        while heap and rows < self.rows and len(nodes) < 8 * self.rows:
            negq, _, parent, commits, d, used = heapq.heappop(heap)
            used = used | {r for r, _ in commits}
            nodes.append((parent, commits, len(used)))
            q_added.append(-negq)
            filling = len(used) >= m
            if not filling or fills < fill:
                rows, fills = rows + 1, fills + filling
                cuts.append(len(nodes))
            if filling:
                continue
            free = [r for r in range(m) if r not in used]
            guesses = self.children(free, d + 1, p)
            if not self.budget:  # the chain: the likeliest guess only
                guesses = [max(guesses, key=lambda g: g[0])]
            for pi, step in guesses:
                heapq.heappush(heap, (negq * pi, pushed, len(nodes) - 1, step, d + 1, used))
                pushed += 1
        if self.cost is not None and cuts:
            c = self.cost

            def rate(b: int) -> float:  # b + 1 rows, all whole without a cache
                return sum(q_added[: cuts[b]]) / c.forward_ms(b + 1, b + 1 if whole else 0, logits.shape[1])

            nodes = nodes[: cuts[max(range(len(cuts)), key=rate)]]
        return order_nodes(nodes, m, fill), p

    def observe(
        self,
        layout: Layout,
        best: int,
        real: torch.Tensor,
        real_tokens: torch.Tensor,
        order: torch.Tensor,
        cands: torch.Tensor,
        p: list[list[float]],
    ) -> None:
        """Count, at each evaluated node on the accepted path, the policy's real step there: its size
        when it was a prefix of the free ranks, its rank when it was one position, its tokens' ranks."""
        path, a = [], best
        while a >= 0:
            path.append(a)
            a = layout.parent[a]
        path = [u for u in reversed(path) if u < layout.evaluated - layout.seeds]  # nodes with a step
        if not path:
            return
        index = torch.tensor(path, device=real.device)
        steps, tokens = real[index].tolist(), real_tokens[index].tolist()
        rank_of = {q: r for r, q in enumerate(order.tolist())}
        cand = cands.tolist()  # [U, L, K]
        used: set[int] = set()
        for d, (u, mask, toks) in enumerate(zip(path, steps, tokens, strict=True)):
            used |= {r for r, _ in layout.commits[u]}
            free = [r for r in range(len(p)) if r not in used]
            ranks = sorted(rank_of[q] for q, on in enumerate(mask) if on)
            s, n = min(d + 1, MAX_STEPS), len(ranks)
            if ranks == free[:n]:
                self.kinds[s][0] += 1
                for i in range(1, min(n + 1, len(free))):  # went on to free[1..n-1], stopped at free[n]
                    self.cont[s][bisect(LEVELS, p[free[i]][0])][int(i < n)] += 1
            elif n == 1 and ranks[0] in free[:J]:
                self.kinds[s][free.index(ranks[0])] += 1
            else:
                self.kinds[s][J] += 1
            mine = cand[min(layout.depth[u], len(cand) - 1)]  # drafted for u's children
            for q, on in enumerate(mask):
                if on and rank_of[q] < len(p):
                    k = mine[q].index(toks[q]) if toks[q] in mine[q] else K
                    self.tokens[s][bisect(EDGES, p[rank_of[q]][0])][min(k, K)] += 1
