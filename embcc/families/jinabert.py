"""JinaBERT, the jina-embeddings-v2 backbone, in one readable file (transformers has no JinaBERT).

BERT with post-LN residual blocks, no position table but symmetric ALiBi (bias -slope * |i - j| added to the
attention scores), and a GEGLU MLP: `mlp.gated_layers` [2*I, H] without bias, gelu on the first half times the
second half, then `mlp.wo` and `mlp.layernorm`. Parameter names are Jina's published state-dict names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class JinaBertConfig:
    vocab_size: int = 30528
    hidden_size: int = 512
    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    intermediate_size: int = 2048
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> JinaBertConfig:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def alibi_slopes(n_heads: int) -> list[float]:
    """The standard ALiBi head slopes (Press et al.), including non power-of-2 head counts."""

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n_heads).is_integer():
        return power_of_2(n_heads)
    closest = 2 ** math.floor(math.log2(n_heads))
    return power_of_2(closest) + alibi_slopes(2 * closest)[0::2][: n_heads - closest]


def alibi_bias(slopes: torch.Tensor, length: int) -> torch.Tensor:
    """[H, L, L] symmetric ALiBi bias, built from the runtime length (never frozen at a traced length)."""
    pos = torch.arange(length, device=slopes.device)
    distance = (pos[None, :] - pos[:, None]).abs().to(slopes.dtype)
    return -slopes[:, None, None] * distance[None]


class JinaBertEmbeddings(nn.Module):
    def __init__(self, c: JinaBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        token_type = self.token_type_embeddings.weight[0]  # single-segment inputs: type 0 everywhere
        return self.LayerNorm(self.word_embeddings(input_ids) + token_type)


class JinaBertSelfAttention(nn.Module):
    def __init__(self, c: JinaBertConfig):
        super().__init__()
        self.heads = c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, h = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, h // self.heads).transpose(1, 2)

        out = nn.functional.scaled_dot_product_attention(
            split(self.query(x)), split(self.key(x)), split(self.value(x)), attn_mask=bias
        )
        return out.transpose(1, 2).reshape(b, n, h)


class JinaBertSelfOutput(nn.Module):
    def __init__(self, c: JinaBertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)


class JinaBertAttention(nn.Module):
    def __init__(self, c: JinaBertConfig):
        super().__init__()
        self.self = JinaBertSelfAttention(c)
        self.output = JinaBertSelfOutput(c)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.output.LayerNorm(x + self.output.dense(self.self(x, bias)))


class JinaBertGLUMLP(nn.Module):
    def __init__(self, c: JinaBertConfig):
        super().__init__()
        self.intermediate_size = c.intermediate_size
        self.gated_layers = nn.Linear(c.hidden_size, 2 * c.intermediate_size, bias=False)
        self.wo = nn.Linear(c.intermediate_size, c.hidden_size)
        self.layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gated, non_gated = self.gated_layers(x).split(self.intermediate_size, dim=-1)
        return self.layernorm(x + self.wo(nn.functional.gelu(gated) * non_gated))


class JinaBertLayer(nn.Module):
    def __init__(self, c: JinaBertConfig):
        super().__init__()
        self.attention = JinaBertAttention(c)
        self.mlp = JinaBertGLUMLP(c)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attention(x, bias))


class JinaBertEncoder(nn.Module):
    def __init__(self, c: JinaBertConfig):
        super().__init__()
        self.layer = nn.ModuleList(JinaBertLayer(c) for _ in range(c.num_hidden_layers))


class JinaBertModel(nn.Module):
    """forward(input_ids, attention_mask) -> last hidden states [B, L, H]."""

    def __init__(self, c: JinaBertConfig):
        super().__init__()
        self.config = c
        self.embeddings = JinaBertEmbeddings(c)
        self.encoder = JinaBertEncoder(c)
        self.register_buffer("slopes", torch.tensor(alibi_slopes(c.num_attention_heads)), persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(input_ids)
        keep = attention_mask.to(torch.bool)[:, None, None, :]  # [B, 1, 1, L]: padded keys get no weight
        bias = alibi_bias(self.slopes, input_ids.shape[1])[None]  # [1, H, L, L]
        bias = bias.masked_fill(~keep, torch.finfo(x.dtype).min)
        for layer in self.encoder.layer:
            x = layer(x, bias)
        return x
