"""Shared-cache tree verification: P candidate windows of one sequence in one row over one cache copy.

A verification forward evaluates P candidate states that differ only inside the window the cache does
not hold. The batch layout gives every candidate its own copy of the cache (it is read P times); the
tree layout folds the candidates into one row of P·W queries and splits each query's attention in two:

    shared  every query against the cached keys of its sequence (one GEMM; the cache is read once)
    own     candidate c's queries against candidate c's W fresh keys (a batched W×W product)

    out = softmax([shared scores ; own scores]) · [cached values ; own values]

which equals each candidate's own attention over `cache with its window in place` (the mask a tree
attention would need to keep candidates apart is implicit: no candidate sees another's keys).

Both parts are plain matrix products whose result for a query row does not depend on the other rows
or on which slot the row sits in, at a fixed shape. That is what the bit-exact mode relies on: a state
evaluated in slot c of a P-slot forward gets the same numbers as in slot 0 of another.
"""

from __future__ import annotations

import torch


def shared_attention(
    q: torch.Tensor,
    cached_k: torch.Tensor,
    cached_v: torch.Tensor,
    visible: torch.Tensor | None,
    k: torch.Tensor,
    v: torch.Tensor,
    candidates: int,
) -> torch.Tensor:
    """Attention output [G, H, P·W, D] of the tree rows.

    q [G, H, P·W, D]: P candidate windows of W queries per row (candidate-major); cached_k/v
    [G, Hkv, S, D]: the row's sequence in the cache; visible [G, S] bool: the cached keys a window may
    see (None: all); k/v [G, Hkv, P·W, D]: the candidates' fresh keys/values, in the same order as q.
    """
    g, h, pw, d = q.shape
    hkv, p = cached_k.shape[1], candidates
    group, w = h // hkv, pw // p
    # Query heads h = j * group + i share key/value head j (grouped-query attention, no copies).
    qg = q.reshape(g, hkv, group * pw, d)
    shared = torch.matmul(qg, cached_k.transpose(-1, -2)).view(g, hkv, group, p, w, -1)
    kc = k.reshape(g, hkv, 1, p, w, d)
    vc = v.reshape(g, hkv, 1, p, w, d)
    own = torch.matmul(qg.view(g, hkv, group, p, w, d), kc.transpose(-1, -2))
    scores = torch.cat([shared, own], dim=-1).float() * d**-0.5
    if visible is not None:
        hidden = torch.cat([~visible, visible.new_zeros(g, w)], dim=-1)
        scores = scores.masked_fill(hidden[:, None, None, None, None, :], -torch.inf)
    probs = torch.softmax(scores, dim=-1).to(q.dtype)
    s = cached_k.shape[2]
    out = torch.matmul(probs[..., :s].reshape(g, hkv, group * pw, s), cached_v).view(g, hkv, group, p, w, d)
    out = out + torch.matmul(probs[..., s:], vc)
    return out.reshape(g, h, pw, d)
