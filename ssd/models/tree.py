"""Shared-cache tree verification: P candidate windows of one sequence in one row over one cache copy.

A verification forward evaluates P candidate states that differ only inside the window the cache does
not hold. The batch layout gives every candidate its own copy of the cache (it is read P times); the
tree layout folds the candidates into one row of P·W queries over one copy. Two ways to compute it:

- `tree_mask`: the candidates' keys are written behind the cached ones and one attention call runs
  over both, with a mask that lets each candidate see the cache and its own keys only: one attention
  call per layer, the cache read once.
- `shared_attention`, the bit-exact mode's: each query's attention is split in two,

      shared  every query against the cached keys of its sequence (one GEMM; the cache read once)
      own     candidate c's queries against candidate c's W fresh keys (a batched W×W product)
      out     softmax([shared scores ; own scores]) · [cached values ; own values]

  Both parts are plain matrix products whose result for a query row does not depend on the other rows
  or on which slot the row sits in, at a fixed shape: a state evaluated in slot c of a P-slot forward
  gets the same numbers as in slot 0 of another. (With the mask, a candidate's keys sit at a different
  offset in each slot, so the attention kernel's summation order, and its rounding, depends on the slot.)
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


def tree_mask(visible: torch.Tensor, candidates: int, width: int) -> torch.Tensor:
    """The attention mask of tree rows [G, 1, P·W, S + P·W]: every query sees the cached keys its
    sequence may see (visible [G, S]) and its own candidate's W keys, placed behind the cache."""
    n = candidates * width
    slot = torch.arange(n, device=visible.device) // width
    own = slot[:, None] == slot[None, :]
    g = visible.shape[0]
    return torch.cat([visible[:, None, :].expand(g, n, -1), own.expand(g, n, n)], dim=-1)[:, None]
