"""Dream (Dream-org/Dream-v0-Instruct-7B): a Qwen2.5 body with non-causal attention, Qwen2 names.

Dream was initialised from an autoregressive model and keeps its habit: the hidden state at position
i-1 predicts token i. `aligned_logits` shifts that back inside this class, so decoders always see
"index i predicts token i".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ssd.models.base import DiffusionLM
from ssd.models.checkpoint import parse_config
from ssd.models.layers import RMSNorm, Rotary, Window, attention, swiglu


@dataclass
class DreamConfig:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    vocab_size: int
    num_key_value_heads: int | None = None
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    mask_token_id: int = 151666
    pad_token_id: int = 151643
    bos_token_id: int = 151643
    eos_token_id: int = 151643
    rope_scaling: None = None  # checked: only plain RoPE is implemented

    def __post_init__(self) -> None:
        self.num_key_value_heads = self.num_key_value_heads or self.num_attention_heads


SUPPORTED = {"rope_scaling": {None}}


class DreamAttention(nn.Module):
    def __init__(self, c: DreamConfig) -> None:
        super().__init__()
        d, hd = c.hidden_size, c.hidden_size // c.num_attention_heads
        self.q_proj = nn.Linear(d, c.num_attention_heads * hd, bias=True)
        self.k_proj = nn.Linear(d, c.num_key_value_heads * hd, bias=True)
        self.v_proj = nn.Linear(d, c.num_key_value_heads * hd, bias=True)
        self.o_proj = nn.Linear(c.num_attention_heads * hd, d, bias=False)
        self.n_heads, self.n_kv_heads = c.num_attention_heads, c.num_key_value_heads

    def forward(self, x: torch.Tensor, rotary: Rotary, window: Window, layer: int) -> torch.Tensor:
        h = attention(
            x,
            self.q_proj,
            self.k_proj,
            self.v_proj,
            rotary,
            window,
            self.n_heads,
            self.n_kv_heads,
            layer,
        )
        return self.o_proj(h)


class DreamMLP(nn.Module):
    def __init__(self, c: DreamConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swiglu(x, self.gate_proj, self.up_proj, self.down_proj)


class DreamLayer(nn.Module):
    def __init__(self, c: DreamConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.self_attn = DreamAttention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.mlp = DreamMLP(c)

    def forward(self, x: torch.Tensor, rotary: Rotary, window: Window, layer: int) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rotary, window, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


class Dream(DiffusionLM):
    predicts_from_previous_position = True
    end_of_turn_token = "<|im_end|>"

    def __init__(self, c: DreamConfig) -> None:
        super().__init__()
        self.config = c
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.model.layers = nn.ModuleList(DreamLayer(c) for _ in range(c.num_hidden_layers))
        self.model.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        if not c.tie_word_embeddings:
            self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        self.rotary = Rotary(c.hidden_size // c.num_attention_heads, c.rope_theta, full_precision=False)
        self.mask_id, self.eos_id, self.bos_id = c.mask_token_id, c.eos_token_id, c.bos_token_id
        self.max_length = c.max_position_embeddings

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Dream:
        return cls(parse_config(DreamConfig, config, "Dream", SUPPORTED))

    def config_dict(self) -> dict[str, Any]:
        return {"model_type": "Dream", "architectures": ["DreamModel"], **asdict(self.config)}

    def body(self, tokens: torch.Tensor, window: Window) -> torch.Tensor:
        x = self.model.embed_tokens(tokens)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, self.rotary, window, i)
        return x

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        h = self.model.norm(hidden)
        return self.lm_head(h) if hasattr(self, "lm_head") else h @ self.model.embed_tokens.weight.T

    def aligned_logits(self, hidden: torch.Tensor, offset: int, a: int, b: int) -> torch.Tensor:
        """Token i is predicted at position i-1. The window's first position has no predictor inside
        the window (position 0 of a sequence, or the block start under a cache): its row is zeros, a
        uniform distribution, and decoders never read it: a block start under a cache is committed at the
        refresh (BlockForward.first_position_from_refresh), and position 0 is never generated, since an
        empty prompt is decoded as [BOS] (DiffusionLM.decoding_prompt)."""
        lo, hi = a - 1 - offset, b - 1 - offset
        if lo >= 0:
            return self.head(hidden[:, lo:hi])
        logits = self.head(hidden[:, :hi])
        return torch.cat([logits.new_zeros(logits.shape[0], 1, logits.shape[2]), logits], dim=1)
