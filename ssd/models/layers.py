"""Building blocks shared by the LLaMA-like bodies of LLaDA and Dream.

RMSNorm, RoPE and SwiGLU follow transformers' Llama/Qwen2 op order. Attention does not: it goes through
torch's `scaled_dot_product_attention` (grouped heads repeated), while transformers' eager attention
computes softmax(QK^T / sqrt(d)) in float32 and then multiplies by V. Same function, different kernels and
reduction order, so our forwards match transformers' within float tolerance, not bit for bit
(tests/test_models.py checks it at 1e-5). docs/algorithms.md lists this among the known differences.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# (layer, fresh keys, fresh values): a refresh forward hands the cache what it keeps.
RecordHook = Callable[[int, torch.Tensor, torch.Tensor], None]
# (layer, queries, fresh keys, fresh values) -> attention output: a cached forward's attention.
AttendHook = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Window:
    """Where a window of tokens sits: RoPE positions, which keys each row may see, the cache hooks.

    Without `attend` the window attends to its own keys (a full forward); with it, the cache decides
    what the queries attend to (ssd/models/cache.py).
    """

    positions: torch.Tensor  # [W], or [R, W] when rows are left-padded by different amounts
    mask: torch.Tensor | None = None  # [R, 1, 1, W] bool, True where a key is real (None: every key)
    record: RecordHook | None = None
    attend: AttendHook | None = None


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class Rotary:
    """Rotate-half RoPE over absolute positions; frequencies and cos/sin always in float32.

    Not an nn.Module on purpose: `model.to(bfloat16)` must not round the frequencies.
    """

    def __init__(self, head_dim: int, theta: float, full_precision: bool) -> None:
        self.head_dim, self.theta = head_dim, theta
        # True (LLaDA's rope_full_precision): rotate q/k in float32; False (Qwen2): in the model dtype.
        self.full_precision = full_precision
        self._inv_freq: dict[torch.device, torch.Tensor] = {}

    def inv_freq(self, device: torch.device) -> torch.Tensor:
        if device not in self._inv_freq:
            exponents = (
                torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=device).float() / self.head_dim
            )
            self._inv_freq[device] = 1.0 / (self.theta**exponents)
        return self._inv_freq[device]

    def __call__(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        freqs = positions.float()[..., None] * self.inv_freq(positions.device)
        emb = torch.cat([freqs, freqs], dim=-1)
        if emb.dim() == 3:  # per-row positions [R, W, D]: broadcast over heads
            emb = emb[:, None]
        cos, sin = emb.cos(), emb.sin()
        dtype = torch.float32 if self.full_precision else q.dtype
        cos, sin = cos.to(dtype), sin.to(dtype)
        return _rotate(q.to(dtype), cos, sin).to(q.dtype), _rotate(k.to(dtype), cos, sin).to(k.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def attention(
    x: torch.Tensor,
    q_proj: nn.Linear,
    k_proj: nn.Linear,
    v_proj: nn.Linear,
    rotary: Rotary,
    window: Window,
    n_heads: int,
    n_kv_heads: int,
    layer: int,
) -> torch.Tensor:
    """Bidirectional (non-causal) multi-head attention of the window `x` [B, W, d]; returns [B, W, d].

    The window's own keys/values are always computed fresh; `window.record` lets a refresh keep them,
    `window.attend` lets a cache supply the rest (prefix or dual cache). `window.mask` hides left padding.
    """
    b, w, _ = x.shape
    q = q_proj(x).view(b, w, n_heads, -1).transpose(1, 2)
    k = k_proj(x).view(b, w, n_kv_heads, -1).transpose(1, 2)
    v = v_proj(x).view(b, w, n_kv_heads, -1).transpose(1, 2)
    q, k = rotary(q, k, window.positions)
    if window.record is not None:
        window.record(layer, k, v)
    out = sdpa(q, k, v, window.mask) if window.attend is None else window.attend(layer, q, k, v)
    return out.transpose(1, 2).reshape(b, w, -1)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Non-causal attention [B, H, Q, D] over keys [B, Hkv, S, D] (grouped heads repeated)."""
    if k.shape[1] != q.shape[1]:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def swiglu(x: torch.Tensor, gate: nn.Linear, up: nn.Linear, down: nn.Linear) -> torch.Tensor:
    return down(F.silu(gate(x)) * up(x))
