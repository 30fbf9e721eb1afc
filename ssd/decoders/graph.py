"""A calibrated draft graph for SSD: each iteration's verification rows chosen from a position model
fitted offline on stepwise's own choices, every state verified once whatever order reaches it.

Why. The adaptive tree (adaptive.py) estimates P(stepwise commits the j-th free rank | depth) from the
depth alone. On the arith model its misses are mostly (a) positions of nearly tied confidence committed in
another order than s_0's, each order a separate branch of rows, and (b) a low-confidence position that
jumps ahead once its neighbour is committed. Both orders of the same commits reach one state: verified
once, with both parents leading to it (Spiffy's directed draft graph, arXiv 2509.18085), it frees the
rows a tree spends on duplicates; conditioning on s_0's confidence and on which neighbours are committed
catches the jumps. The model is data (`decoder.tree_calibration`, written by scripts/tree_calibrate.py).

The rule. A state S is s_0 plus a set of commits (rank x in s_0's confidence order, token rank k); the
root is s_0 plus stepwise's own choice (x = 0, k = 0). Stepwise's next choice at S is estimated as

    P(x, k | S) = softmax over S's free ranks y of (w_d . f(y, S)) at x   *   p(x, k)

with d = |S| (capped at the calibration's deepest), p(x, k) s_0's softmax probability of its k-th token
at rank x, and f: one-hot of x's index among S's free ranks (0, 1, 2, 3, 4+), z = logit of s_0's
confidence at x (clamped to +-30), whether x's left / right neighbour is not a masked position of the
block (committed, or outside it), and whether it is committed in S. The reach r(S') = sum over parents
S of r(S) P(commit | S) (r(root) = 1) is computed depth by depth over a beam of the `beam` likeliest
states, children from the `positions` likeliest free ranks and `tokens` likeliest tokens. Rows: from the
root, repeatedly take the candidate of largest r(S) |S|^power that has a taken parent, until `budget`
rows. Unseeded, states filling the block are left out (with one position left stepwise commits it
without a forward, so they save nothing); seeding (`fill`), they compete too, the first `fill` a row each.
Each taken state is one node; its first taken parent is its tree parent, the others merge edges
(tree.Layout.merges), walked by the acceptance. Which rows are sent never changes the tokens, only NFE.
"""

from __future__ import annotations

import heapq
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ssd.decoders.tree import Layout, order_rows
from ssd.errors import SSDError

FORMAT = "ssd-draft-graph/1"
RANKS = 4  # one-hot of the free index 0..RANKS-1, then one for all beyond
FEATURES = (
    *(f"free_index_{j}" for j in range(RANKS)),
    f"free_index_{RANKS}+",
    "confidence_logit",
    "left_done",
    "right_done",
    "left_on_path",
    "right_on_path",
)
Z_CLAMP = 30.0
NEGLIGIBLE = 1e-6  # reach below which a state is not drafted
MAX_TOKENS = 32  # below any vocabulary the harness runs


def confidence_logit(c: float) -> float:
    if c >= 1.0:
        return Z_CLAMP
    if c <= 0.0:
        return -Z_CLAMP
    return max(-Z_CLAMP, min(Z_CLAMP, math.log(c / (1.0 - c))))


@dataclass(frozen=True)
class Calibration:
    """A fitted position model and the graph's shape knobs (see the module docstring)."""

    weights: tuple[tuple[float, ...], ...]  # [depth 1..D][feature]; deeper states use the last
    positions: int = 4
    tokens: int = 8
    beam: int = 48
    depth_power: float = 2.0
    provenance: dict | None = None

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        p = Path(path)
        if not p.is_file() and not p.is_absolute():  # a relative path: else from the checkout's root
            p = Path(__file__).resolve().parents[2] / p
        fix = "write one with scripts/tree_calibrate.py"
        if not p.is_file():
            raise SSDError(f"decoder.tree_calibration: {p} not found: {fix}")
        try:
            d = json.loads(p.read_text())
            if d.get("format") != FORMAT:
                raise ValueError(f"format is {d.get('format')!r}, not {FORMAT!r}")
            if tuple(d["features"]) != FEATURES:
                raise ValueError(f"features {d['features']} are not {list(FEATURES)}")
            g = d["graph"]
            cal = cls(
                weights=tuple(tuple(float(w) for w in row) for row in d["weights"]),
                positions=int(g["positions"]),
                tokens=int(g["tokens"]),
                beam=int(g["beam"]),
                depth_power=float(g["depth_power"]),
                provenance=d.get("provenance"),
            )
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise SSDError(
                f"decoder.tree_calibration: {p} is not a draft-graph calibration ({e}): {fix}"
            ) from e
        if problem := cal.problem():
            raise SSDError(f"decoder.tree_calibration: {p}: {problem}: {fix}")
        return cal

    def problem(self) -> str:
        if not self.weights or any(len(r) != len(FEATURES) for r in self.weights):
            return f"weights must be one row of {len(FEATURES)} numbers per depth"
        if not all(math.isfinite(w) for r in self.weights for w in r):
            return "weights must be finite"
        if min(self.positions, self.tokens, self.beam) < 1:
            return "graph.positions, graph.tokens and graph.beam must be >= 1"
        if self.tokens > MAX_TOKENS:
            return f"graph.tokens must be at most {MAX_TOKENS} (token candidates drafted per position)"
        if not math.isfinite(self.depth_power) or self.depth_power < 0:
            return "graph.depth_power must be a number >= 0"
        return ""

    def save(self, path: str | Path) -> None:
        d = {
            "format": FORMAT,
            "provenance": self.provenance or {},
            "graph": {
                "positions": self.positions,
                "tokens": self.tokens,
                "beam": self.beam,
                "depth_power": self.depth_power,
            },
            "features": list(FEATURES),
            "weights": [list(r) for r in self.weights],
        }
        Path(path).write_text(json.dumps(d, indent=1) + "\n")


def features(x: int, j: int, z: float, neighbours: tuple[int, int], used: int) -> list[float]:
    """f(x, S) for free rank x at free index j; neighbours: the ranks of x's left / right neighbour if
    masked at s_0, else -1; used: S's committed ranks as a bit mask."""
    f = [0.0] * len(FEATURES)
    f[min(j, RANKS)] = 1.0
    f[RANKS + 1] = z
    for side, y in enumerate(neighbours):
        on_path = y >= 0 and used >> y & 1
        f[RANKS + 2 + side] = float(y < 0 or on_path)
        f[RANKS + 4 + side] = float(on_path)
    return f


def score(w: tuple[float, ...], j: int, z: float, neighbours: tuple[int, int], used: int) -> float:
    """w . features(...), unrolled: the graph's inner loop."""
    (left, right), done = neighbours, RANKS + 2
    s = w[min(j, RANKS)] + w[RANKS + 1] * z
    if left < 0 or used >> left & 1:
        s += w[done] + (w[done + 2] if left >= 0 else 0.0)
    if right < 0 or used >> right & 1:
        s += w[done + 1] + (w[done + 3] if right >= 0 else 0.0)
    return s


class DraftGraph:
    def __init__(self, budget: int, calibration: Calibration) -> None:
        self.budget = budget
        self.cal = calibration

    def grow(
        self, logits: torch.Tensor, order: torch.Tensor, m: int, fill: int = 0
    ) -> tuple[Layout, list[list[float]]]:
        """This iteration's rows for the state whose block logits are `logits` [1, L, V] (as
        AdaptiveTree.grow), and s_0's token probabilities p(x, k) by rank."""
        cal = self.cal
        probs = torch.softmax(logits[0].to(torch.float64), -1)[order[:m]]
        p = probs.topk(min(cal.tokens, probs.shape[-1]), dim=-1).values.tolist()
        positions = order.tolist()
        rank_of = {q: r for r, q in enumerate(positions[:m])}
        length = logits.shape[1]
        neighbours = [
            (rank_of.get(q - 1, -1), rank_of.get(q + 1, -1) if q + 1 < length else -1) for q in positions[:m]
        ]
        z = [confidence_logit(row[0]) for row in p]
        deepest = m if fill else m - 1
        # the beam, depth by depth: state (token rank per rank, -1 free) -> reach, and its parents
        root = tuple([0] + [-1] * (m - 1))
        reach: dict[tuple[int, ...], float] = {root: 1.0}
        parents: dict[tuple[int, ...], list[tuple[tuple[int, ...], int]]] = {root: []}
        layer = [root]
        for d in range(1, min(deepest, self.budget)):  # a state of depth d + 1 takes d + 1 rows
            w = cal.weights[min(d, len(cal.weights)) - 1]
            grown: dict[tuple[int, ...], float] = {}
            links: dict[tuple[int, ...], list[tuple[tuple[int, ...], int]]] = {}
            for s in layer:
                used = sum(1 << x for x, k in enumerate(s) if k >= 0)
                free = [x for x in range(m) if s[x] < 0]
                scores = [score(w, j, z[x], neighbours[x], used) for j, x in enumerate(free)]
                top = max(scores)
                e = [math.exp(v - top) for v in scores]
                scale = reach[s] / sum(e)
                for i in sorted(range(len(free)), key=e.__getitem__, reverse=True)[: cal.positions]:
                    x, rx = free[i], e[i] * scale
                    for k, pk in enumerate(p[x]):
                        if rx * pk < NEGLIGIBLE:
                            break  # p[x] is sorted: the rest are smaller
                        child = s[:x] + (k,) + s[x + 1 :]
                        grown[child] = grown.get(child, 0.0) + rx * pk
                        links.setdefault(child, []).append((s, x))
            layer = sorted(grown, key=grown.__getitem__, reverse=True)[: cal.beam]
            for c in layer:
                reach[c], parents[c] = grown[c], links[c]
        return self._select(reach, parents, m, fill), p

    def _select(
        self,
        reach: dict[tuple[int, ...], float],
        parents: dict[tuple[int, ...], list[tuple[tuple[int, ...], int]]],
        m: int,
        fill: int,
    ) -> Layout:
        """Take states by r |S|^power, each once one of its parents is taken, within the row budget."""
        children: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
        for c in reach:
            for s, _ in parents[c]:
                children.setdefault(s, []).append(c)
        power = self.cal.depth_power
        prio = {c: r * (m - c.count(-1)) ** power for c, r in reach.items()}
        root = next(iter(reach))
        index = {root: 0}
        nodes = [(-1, 0, 0, 1)]
        rows, fills = (1, 0) if m > 1 else (0, 0)
        frontier: list[tuple[float, int, tuple[int, ...], tuple[int, ...], int]] = []
        pushed = 0

        def open_children(s: tuple[int, ...]) -> None:
            nonlocal pushed
            for c in children.get(s, []):
                if c not in index:
                    x = next(x for t, x in parents[c] if t == s)
                    heapq.heappush(frontier, (-prio[c], pushed, c, s, x))
                    pushed += 1

        open_children(root)
        while frontier and rows < self.budget:
            _, _, c, s, x = heapq.heappop(frontier)
            if c in index:
                continue
            filling = c.count(-1) == 0
            if filling and fills >= fill:
                continue
            index[c] = len(nodes)
            nodes.append((index[s], x, c[x], m - c.count(-1)))
            rows, fills = rows + 1, fills + filling
            open_children(c)
        merges = tuple(
            (index[s], index[c], x)
            for c in index
            for s, x in parents[c]
            if s in index and index[s] != nodes[index[c]][0]
        )
        return order_rows(nodes, m, fill, merges)
