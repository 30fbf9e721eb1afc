"""Verification trees for SSD: shapes as data, their nodes as candidate states, and the acceptance walk.

A tree is rooted at s_1 = s_0 + stepwise's own choice at s_0 (always accepted). Every other node adds one
commit (position, token) to its parent's state; the commits are guesses, read off s_0's forward, of
stepwise's choice at the parent. A child is named by two ranks:

    j  its position is the j-th most confident masked position of s_0 not committed on the path
       (j = 0: the chain's guess; j > 0: a "mix-order" sibling)
    k  its token is the k-th most likely token there under s_0's logits (k = 0: the argmax)

Shape spec (`decoder.tree`): node paths below the root separated by `-`; a path is one element per
step, an element a digit j optionally followed by a letter for k (`a` = 0, `b` = 1, ...). The chain of
draft length N is `0-00-000...` (N - 1 paths); `0-1-00-0b` is the chain's first two steps plus a
mix-order and a runner-up-token sibling. Every prefix of a path must itself be a node; "" is the
root alone (the chain of draft length 1).

Nodes whose commits fill the block are not evaluated (nothing is left to choose there): a verification
forward has one row per other node. Acceptance follows from the root the child whose commit equals
stepwise's choice at its parent (computed from the parent's row) and stops at the deepest node reached.
A layout may also carry merge edges (a draft graph, ssd/decoders/graph.py): a node whose state another
node reaches with one more commit (another order of the same commits) is that node's child too, so the
state is verified once whichever order stepwise takes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import torch

from ssd.errors import SSDError

_ELEMENT = re.compile(r"(\d)([a-z]?)")


@dataclass(frozen=True)
class Layout:
    """A tree resolved for m masked positions at s_0: nodes in row order (evaluated ones first).

    rank[i]: node i's position as an index into s_0's confidence order; token[i]: its token rank;
    parent[i]: -1 for the root; depth[i]: commits on its path (root: 1); `evaluated`: rows sent, the last
    `seeds` of them states that fill the block (evaluated only to seed the next one: no choice is read).
    merges: extra edges (parent, child, rank): the child's state is the parent's plus the commit the
    child's own path makes at that rank (a draft graph; a tree has none)."""

    parent: tuple[int, ...]
    rank: tuple[int, ...]
    token: tuple[int, ...]
    depth: tuple[int, ...]
    evaluated: int
    seeds: int = 0
    merges: tuple[tuple[int, int, int], ...] = ()

    @property
    def size(self) -> int:
        return len(self.parent)


def parse(spec: str) -> tuple[tuple[tuple[int, int], ...], ...]:
    """The node paths of a shape spec (see the module docstring), root excluded, prefixes checked."""
    paths = []
    for part in spec.split("-") if spec else []:
        elements = _ELEMENT.findall(part)
        if not part or "".join(j + k for j, k in elements) != part:
            raise SSDError(
                f"decoder.tree: bad path {part!r} in {spec!r}: use digits (position ranks), each "
                "optionally followed by a letter (token rank, a = argmax), paths separated by '-'"
            )
        paths.append(tuple((int(j), ord(k) - ord("a") if k else 0) for j, k in elements))
    known = set(paths)
    if len(known) != len(paths):
        raise SSDError(f"decoder.tree: a path appears twice in {spec!r}")
    for p in paths:
        if len(p) > 1 and p[:-1] not in known:
            raise SSDError(f"decoder.tree: path {p} needs its parent path {p[:-1]} in {spec!r}")
    return tuple(sorted(paths, key=len))


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
    """Nodes that leave a masked position (depth < m) first, then those filling the block, each group in
    its given order; parents (and merge edges) re-indexed. Evaluated: the first group and the first
    `fill` of the second."""
    keep = [i for i, n in enumerate(nodes) if n[3] < m] + [i for i, n in enumerate(nodes) if n[3] >= m]
    new = {old: i for i, old in enumerate(keep)}
    rows = [nodes[i] for i in keep]
    partial = sum(1 for n in rows if n[3] < m)
    seeds = min(fill, len(rows) - partial)
    return Layout(
        parent=tuple(new[p] if p >= 0 else -1 for p, *_ in rows),
        rank=tuple(r for _, r, _, _ in rows),
        token=tuple(k for *_, k, _ in rows),
        depth=tuple(d for *_, d in rows),
        evaluated=partial + seeds,
        seeds=seeds,
        merges=tuple((new[a], new[b], r) for a, b, r in merges),
    )


class TreeTensors:
    """A layout's index tensors on the device, built once per layout and device."""

    def __init__(self, layout: Layout, device: torch.device) -> None:
        n = layout.size
        commits = torch.full((n, max(layout.rank) + 1), -1, dtype=torch.long)
        commit_depth = torch.zeros((n, max(layout.rank) + 1), dtype=torch.long)
        ancestors = torch.zeros(n, n)
        for i in range(n):
            a = i
            while a >= 0:
                commits[i, layout.rank[a]] = layout.token[a]
                commit_depth[i, layout.rank[a]] = layout.depth[a] - 1
                ancestors[i, a] = 1.0
                a = layout.parent[a]
        self.commits = commits.to(device)  # [n, ranks]: token rank committed at each rank, -1: none
        self.commit_depth = commit_depth.to(device)  # [n, ranks]: depth - 1 of the node committing it
        self.ancestors = ancestors.to(device)  # [n, n]: ancestor-or-self
        self.parent = torch.tensor([max(p, 0) for p in layout.parent], device=device)
        self.rank = torch.tensor(layout.rank, device=device)
        self.token = torch.tensor(layout.token, device=device)
        self.depth_index = torch.tensor([d - 1 for d in layout.depth], device=device)
        self.depth = torch.tensor(layout.depth, dtype=torch.float, device=device)
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
    """All nodes' states [n, T], and each node's own commit: block position [n] and token [n], followed
    by each merge edge's commit (position -1 where the parent's state plus that commit is not the
    child's: at temperature > 0 two orders may draft a position's token from different noise).

    cands [D, L, k]: the candidates of a node at depth d are cands[min(d, D) - 1]."""
    ranks = t.commits.shape[1]
    positions = order[:ranks]  # block-relative, s_0's confidence order
    last = cands.shape[0] - 1
    depth = t.commit_depth.clamp(max=last)
    tokens = cands[depth, positions[None, :].expand_as(depth), t.commits.clamp(min=0)]  # [n, ranks]
    states = x.repeat(t.commits.shape[0], 1)
    cols = start + positions
    states[:, cols] = torch.where(t.commits >= 0, tokens, states[:, cols])
    own_pos = order[t.rank]
    own_tok = cands[t.depth_index.clamp(max=last), own_pos, t.token]
    if t.merge_child.numel():
        pos = order[t.merge_rank]
        tok = states[t.merge_child, start + pos]
        after = states[t.merge_parent]
        after[torch.arange(pos.shape[0], device=pos.device), start + pos] = tok
        same = (after == states[t.merge_child]).all(-1)
        own_pos = torch.cat([own_pos, torch.where(same, pos, -1)])
        own_tok = torch.cat([own_tok, tok])
    return states, own_pos, own_tok


def deepest_reached(
    t: TreeTensors,
    own_pos: torch.Tensor,
    own_tok: torch.Tensor,
    choice: torch.Tensor,
    choice_tok: torch.Tensor,
) -> torch.Tensor:
    """Index of the deepest node whose every commit on its path is stepwise's choice at its parent (with
    merge edges: on some path through the graph; the nodes reached are one per depth, stepwise's states).

    choice/choice_tok [E]: stepwise's position and token at each evaluated node (rows 0..E-1)."""
    pad = t.parent.shape[0] - choice.shape[0]
    if pad:  # the parents of all nodes are evaluated; unevaluated rows are never looked up
        choice = torch.cat([choice, choice.new_zeros(pad)])
        choice_tok = torch.cat([choice_tok, choice_tok.new_zeros(pad)])
    n = t.parent.shape[0]
    match = (choice[t.parent] == own_pos[:n]) & (choice_tok[t.parent] == own_tok[:n])
    match[0] = True
    if not t.merge_child.numel():
        reached = (t.ancestors @ (~match).float()) == 0
        return (t.depth * reached).argmax()
    mp = t.merge_parent
    merge_match = (choice[mp] == own_pos[n:]) & (choice_tok[mp] == own_tok[n:])
    reached = torch.zeros_like(match)
    reached[0] = True
    for _ in range(t.max_depth - 1):  # one more commit per round
        via = torch.zeros(n, dtype=torch.long, device=match.device)
        via.index_add_(0, t.merge_child, (reached[mp] & merge_match).long())
        reached = reached | (reached[t.parent] & match) | (via > 0)
    return (t.depth * reached).argmax()
