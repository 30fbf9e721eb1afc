"""Verification trees for SSD: shapes as data, their nodes as candidate states, and the acceptance walk.

A tree is rooted at s_1 = s_0 + the policy's own step at s_0 (always accepted). Every other node adds one
guessed step to its parent's state: a set of commits (position, token), read off s_0's forward, guessing
the policy's step at the parent. Stepwise commits one position per step; Fast-dLLM's rules commit a
prefix of the masked positions by confidence (ssd/decoders/policy.py), so positions are named by their
rank in s_0's confidence order. For stepwise, a child is named by two ranks:

    j  its position is the j-th most confident masked position of s_0 not committed on the path
       (j = 0: the chain's guess; j > 0: a "mix-order" sibling)
    k  its token is the k-th most likely token there under s_0's logits (k = 0: the argmax)

Shape spec (`decoder.tree`): node paths below the root separated by `-`; a path is one element per
step, an element a digit j optionally followed by a letter for k (`a` = 0, `b` = 1, ...). The chain of
draft length N is `0-00-000...` (N - 1 paths); `0-1-00-0b` is the chain's first two steps plus a
mix-order and a runner-up-token sibling. Every prefix of a path must itself be a node; "" is the
root alone (the chain of draft length 1).

Shapes name single commits, so they are stepwise's; speculation over a set policy grows its trees from
estimated probabilities (ssd/decoders/drafts.py).

Nodes whose commits fill the block are not evaluated (nothing is left to choose there): a verification
forward has one row per other node. Acceptance follows from the root the child whose step equals the
policy's step at its parent (positions and tokens, computed from the parent's row) and stops at the
deepest node reached. A layout may also carry merge edges (a draft graph, ssd/decoders/graph.py): a node
whose state another node reaches with one more commit (another order of the same commits) is that
node's child too, so the state is verified once whichever order stepwise takes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import torch

from ssd.errors import SSDError

_ELEMENT = re.compile(r"(\d)([a-z]?)")


# A node before row ordering: its parent's index (-1: the root), its own commits as (position rank in
# s_0's confidence order, token rank) pairs, and the commits on its path (its own included).
Node = tuple[int, tuple[tuple[int, int], ...], int]


@dataclass(frozen=True)
class Layout:
    """A tree resolved for m masked positions at s_0: nodes in row order (evaluated ones first).

    commits[i]: node i's own step, (position rank in s_0's confidence order, token rank) pairs;
    parent[i]: -1 for the root; depth[i]: commits on its path (the root's included); `evaluated`: rows
    sent, the last `seeds` of them states that fill the block (evaluated only to seed the next one: no
    step is read there). merges: extra edges (parent, child, rank) of single commits: the child's state
    is the parent's plus the commit the child's own path makes at that rank (a draft graph; a tree has
    none)."""

    parent: tuple[int, ...]
    commits: tuple[tuple[tuple[int, int], ...], ...]
    depth: tuple[int, ...]
    evaluated: int
    seeds: int = 0
    merges: tuple[tuple[int, int, int], ...] = ()

    @property
    def size(self) -> int:
        return len(self.parent)

    @property
    def rank(self) -> tuple[int, ...]:
        """Each node's (first) position rank: its only one in a stepwise tree."""
        return tuple(c[0][0] for c in self.commits)

    @property
    def token(self) -> tuple[int, ...]:
        """Each node's (first) token rank: its only one in a stepwise tree."""
        return tuple(c[0][1] for c in self.commits)


def parse(spec: str, block_length: int | None = None) -> tuple[tuple[tuple[int, int], ...], ...]:
    """The node paths of a shape spec (see the module docstring), root excluded, prefixes checked, and
    (given `block_length`) every element a position such a block can have: a path of i elements stands
    after i + 1 commits, so its next element j needs j < block_length - i - 1."""
    paths = []
    for part in spec.split("-") if spec else []:
        elements = _ELEMENT.findall(part)
        if not part or "".join(j + k for j, k in elements) != part:
            raise SSDError(
                f"decoder.tree: bad path {part!r} in {spec!r}: use digits (position ranks), each "
                "optionally followed by a letter (token rank, a = argmax), paths separated by '-'"
            )
        paths.append(tuple((int(j), ord(k) - ord("a") if k else 0) for j, k in elements))
        if block_length is not None:
            _check_fits(part, paths[-1], block_length)
    known = set(paths)
    if len(known) != len(paths):
        raise SSDError(f"decoder.tree: a path appears twice in {spec!r}")
    for p in paths:
        if len(p) > 1 and p[:-1] not in known:
            raise SSDError(f"decoder.tree: path {p} needs its parent path {p[:-1]} in {spec!r}")
    return tuple(sorted(paths, key=len))


def _check_fits(part: str, path: tuple[tuple[int, int], ...], block_length: int) -> None:
    """A path whose node no block of this size has would only mislabel the run: refuse it."""
    if len(path) + 1 > block_length:
        raise SSDError(
            f"decoder.tree: path {part!r} is {len(path) + 1} commits deep, deeper than "
            f"decoder.block_length={block_length} (a draft stays in its block): shorten it"
        )
    for i, (j, _) in enumerate(path):
        if j >= block_length - i - 1:
            raise SSDError(
                f"decoder.tree: path {part!r} asks for free position {j} after {i + 1} commits, but a "
                f"block of {block_length} leaves {block_length - i - 1} (0..{block_length - i - 2}): "
                "lower it"
            )


def chain_spec(n: int) -> str:
    """The chain of draft length n as a shape spec (n - 1 paths below the root)."""
    return "-".join("0" * d for d in range(1, n))


@lru_cache(maxsize=256)
def resolve(paths: tuple[tuple[tuple[int, int], ...], ...], m: int, fill: int = 0) -> Layout:
    """The shape's nodes whose positions exist with m masked positions left, in row order (`fill`: how
    many of the nodes that fill the block are evaluated too, the first ones in the shape's order)."""
    nodes: list[tuple[int, int, int, int]] = [(-1, 0, 0, 1)]  # parent, rank, token rank, depth
    index: dict[tuple, int] = {(): 0}
    ranks: dict[tuple, tuple[int, ...]] = {(): (0,)}
    for path in paths:
        if path[:-1] not in index:
            continue
        used = ranks[path[:-1]]
        j, k = path[-1]
        free = [r for r in range(m) if r not in used]
        if j >= len(free):
            continue
        index[path] = len(nodes)
        ranks[path] = (*used, free[j])
        nodes.append((index[path[:-1]], free[j], k, len(used) + 1))
    return order_rows(nodes, m, fill)


def order_rows(
    nodes: list[tuple[int, int, int, int]],
    m: int,
    fill: int = 0,
    merges: tuple[tuple[int, int, int], ...] = (),
) -> Layout:
    """`order_nodes` for single-commit nodes (parent, rank, token rank, depth): stepwise's trees."""
    return order_nodes([(p, ((r, k),), d) for p, r, k, d in nodes], m, fill, merges)


def order_nodes(
    nodes: list[Node], m: int, fill: int = 0, merges: tuple[tuple[int, int, int], ...] = ()
) -> Layout:
    """Nodes that leave a masked position (depth < m) first, then those filling the block, each group in
    its given order; parents (and merge edges) re-indexed. Evaluated: the first group and the first
    `fill` of the second."""
    keep = [i for i, n in enumerate(nodes) if n[2] < m] + [i for i, n in enumerate(nodes) if n[2] >= m]
    new = {old: i for i, old in enumerate(keep)}
    rows = [nodes[i] for i in keep]
    partial = sum(1 for n in rows if n[2] < m)
    seeds = min(fill, len(rows) - partial)
    return Layout(
        parent=tuple(new[p] if p >= 0 else -1 for p, _, _ in rows),
        commits=tuple(c for _, c, _ in rows),
        depth=tuple(d for *_, d in rows),
        evaluated=partial + seeds,
        seeds=seeds,
        merges=tuple((new[a], new[b], r) for a, b, r in merges),
    )


class TreeTensors:
    """A layout's index tensors on the device, built once per layout and device.

    A node's tokens are drafted with the noise of the step its parent stands at (temperature > 0): the
    commits on the path before its own, `before`. `levels` are the distinct values of `before` in the
    tree (stepwise: 0 .. depth - 1), one candidate set each (SelfSpeculative.candidates)."""

    def __init__(self, layout: Layout, device: torch.device) -> None:
        n, ranks = layout.size, 1 + max(r for c in layout.commits for r, _ in c)
        before = [d - len(c) for d, c in zip(layout.depth, layout.commits, strict=True)]
        self.levels = tuple(sorted(set(before)))
        level = {b: i for i, b in enumerate(self.levels)}
        commits = torch.full((n, ranks), -1, dtype=torch.long)
        commit_level = torch.zeros((n, ranks), dtype=torch.long)
        own = torch.zeros((n, ranks), dtype=torch.bool)
        ancestors = torch.zeros(n, n)
        for i in range(n):
            for r, _ in layout.commits[i]:
                own[i, r] = True
            a = i
            while a >= 0:
                for r, k in layout.commits[a]:
                    commits[i, r] = k
                    commit_level[i, r] = level[before[a]]
                ancestors[i, a] = 1.0
                a = layout.parent[a]
        self.commits = commits.to(device)  # [n, ranks]: token rank committed at each rank, -1: none
        self.commit_level = commit_level.to(device)  # [n, ranks]: the level its token is drafted at
        self.own = own.to(device)  # [n, ranks]: the ranks a node commits itself
        self.ancestors = ancestors.to(device)  # [n, n]: ancestor-or-self
        self.parent = torch.tensor([max(p, 0) for p in layout.parent], device=device)
        self.depth = torch.tensor(layout.depth, dtype=torch.float, device=device)
        self.steps = torch.tensor(layout.depth, dtype=torch.long, device=device)  # commits at each node
        self.merge_parent, self.merge_child, self.merge_rank = (
            torch.tensor([e[i] for e in layout.merges], dtype=torch.long, device=device) for i in range(3)
        )
        self.max_depth = max(layout.depth)


def candidate_tokens(scores: torch.Tensor, k: int) -> torch.Tensor:
    """[D, L, k] token candidates from scores [D, L, V] (one set per depth: at temperature > 0 each
    depth's own noise): the argmax (ties: the lowest id, as the decoder's own choice), then runners-up."""
    best = scores.argmax(-1, keepdim=True)
    if k == 1:
        return best
    top = scores.topk(k, dim=-1).indices
    top[..., :1] = best
    return top


def node_states(
    x: torch.Tensor, start: int, order: torch.Tensor, cands: torch.Tensor, t: TreeTensors
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All nodes' states [n, T], and each node's own step over the block: positions [n, L] (bool) and
    their tokens [n, L] (0 elsewhere), followed by each merge edge's commit (no position where the
    parent's state plus that commit is not the child's: at temperature > 0 two orders may draft a
    position's token from different noise).

    cands [U, L, k]: the candidates drafted at each level of the tree (one set when greedy)."""
    n, ranks = t.commits.shape
    positions = order[:ranks]  # block-relative, s_0's confidence order
    level = t.commit_level.clamp(max=cands.shape[0] - 1)
    tokens = cands[level, positions[None, :].expand_as(level), t.commits.clamp(min=0)]  # [n, ranks]
    states = x.repeat(n, 1)
    cols = start + positions
    states[:, cols] = torch.where(t.commits >= 0, tokens, states[:, cols])
    length = order.shape[0]
    own = torch.zeros((n, length), dtype=torch.bool, device=x.device)
    own[:, positions] = t.own
    own_tokens = torch.zeros((n, length), dtype=tokens.dtype, device=x.device)
    own_tokens[:, positions] = torch.where(t.own, tokens, 0)
    if t.merge_child.numel():
        e, pos = torch.arange(t.merge_rank.shape[0], device=x.device), order[t.merge_rank]
        tok = states[t.merge_child, start + pos]
        after = states[t.merge_parent]
        after[e, start + pos] = tok
        same = (after == states[t.merge_child]).all(-1)
        merge_own = torch.zeros((e.shape[0], length), dtype=torch.bool, device=x.device)
        merge_own[e, pos] = same
        merge_tokens = torch.zeros((e.shape[0], length), dtype=tokens.dtype, device=x.device)
        merge_tokens[e, pos] = tok
        own, own_tokens = torch.cat([own, merge_own]), torch.cat([own_tokens, merge_tokens])
    return states, own, own_tokens


def deepest_reached(
    t: TreeTensors,
    own: torch.Tensor,
    own_tokens: torch.Tensor,
    step: torch.Tensor,
    step_tokens: torch.Tensor,
) -> torch.Tensor:
    """Index of the deepest node whose every step on its path is the policy's step at its parent (with
    merge edges: on some path through the graph; the nodes reached are one per depth, the policy's states).

    step [E, L] (bool) / step_tokens [E, L]: the policy's step at each evaluated node (rows 0..E-1) and
    the tokens it commits (read where it commits)."""
    pad = t.parent.shape[0] - step.shape[0]
    if pad:  # the parents of all nodes are evaluated; unevaluated rows are never looked up
        step = torch.cat([step, step.new_zeros((pad, step.shape[1]))])
        step_tokens = torch.cat([step_tokens, step_tokens.new_zeros((pad, step.shape[1]))])
    n = t.parent.shape[0]
    match = _matches(own[:n], own_tokens[:n], step[t.parent], step_tokens[t.parent])
    match[0] = True
    if not t.merge_child.numel():
        reached = (t.ancestors @ (~match).float()) == 0
        return (t.depth * reached).argmax()
    mp = t.merge_parent
    merge_match = _matches(own[n:], own_tokens[n:], step[mp], step_tokens[mp])
    reached = torch.zeros_like(match)
    reached[0] = True
    for _ in range(t.max_depth - 1):  # one more commit per round
        via = torch.zeros(n, dtype=torch.long, device=match.device)
        via.index_add_(0, t.merge_child, (reached[mp] & merge_match).long())
        reached = reached | (reached[t.parent] & match) | (via > 0)
    return (t.depth * reached).argmax()


def _matches(
    own: torch.Tensor, own_tokens: torch.Tensor, step: torch.Tensor, tokens: torch.Tensor
) -> torch.Tensor:
    """Whether each edge's step (own positions and tokens) is the policy's step at its parent."""
    return (own == step).all(-1) & ((own_tokens == tokens) | ~own).all(-1)
