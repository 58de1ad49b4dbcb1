"""jina-embeddings-v2 (JinaBERT): an independent float64 re-implementation from the published key names.

No maintained library holds JinaBERT (transformers would load the weights as a plain BERT and silently give
other vectors; Jina's own modeling code is never executed). This module reads model.safetensors under the
published names (`bert.` prefix optional) and runs the forward pass in float64 with torch.nn.functional:

  x = LayerNorm(word[ids] + token_type[0])
  per layer (post-LN):
    attention: softmax(q k^T / sqrt(d) + alibi) v, alibi[h, i, j] = -slope_h * |i - j| (symmetric), padded keys masked
    x = LayerNorm_attn(x + dense(attention))
    h = gated_layers(x) (no bias) -> [gated | plain], each intermediate_size wide
    x = LayerNorm_mlp(x + wo(act(gated) * plain))          (GEGLU: act = exact gelu)
  mean over the attention mask (modules.json / 1_Pooling), then L2.

ALiBi slopes follow Press et al.: for n heads with p = the largest power of 2 <= n, slopes 2^(-8 k / p) for
k = 1..p, then, when n > p, the odd-numbered slopes of the 2p-head rule, 2^(-4 (2j + 1) / p), for the remaining
n - p heads. Queries are processed in chunks so an 8,192-token text stays within memory in float64.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from embcc.core.errors import EmbccError
from embcc.reference.base import ReferenceBase
from embcc.reference.common import read_pooling, versions, weight_files

F64 = torch.float64
QUERY_CHUNK = 1024
ACTIVATIONS = {"geglu": "gelu", "reglu": "relu"}


def alibi_slopes(heads: int) -> torch.Tensor:
    p = 1 << (heads.bit_length() - 1)  # largest power of 2 <= heads
    slopes = [2.0 ** (-8.0 * k / p) for k in range(1, p + 1)]
    slopes += [2.0 ** (-4.0 * (2 * j + 1) / p) for j in range(heads - p)]
    return torch.tensor(slopes, dtype=F64)


class V2Reference(ReferenceBase):
    family = "jina-embeddings-v2"

    def __init__(self, ckpt: Path, config: dict):
        from safetensors.torch import load_file

        super().__init__(ckpt, config, read_pooling(ckpt, "mean"))
        if config.get("position_embedding_type", "alibi") != "alibi":
            raise EmbccError(f"{ckpt} has {config['position_embedding_type']} positions, not JinaBERT's ALiBi",
                             "pass a jina-embeddings-v2 checkpoint")
        kind = config.get("feed_forward_type", "geglu")
        if kind not in ACTIVATIONS:
            raise EmbccError(f"{ckpt}: feed_forward_type {kind!r} is not one the reference runs",
                             "pass a jina-embeddings-v2 small/base checkpoint (geglu)")
        self.act = ACTIVATIONS[kind]
        w: dict[str, torch.Tensor] = {}
        for f in weight_files(ckpt):
            w.update({k.removeprefix("bert."): v.to(F64) for k, v in load_file(str(f)).items()})
        self.w = w
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.inter = int(config["intermediate_size"])
        self.dim = int(config["hidden_size"])
        self.tasks, self.roles, self.default_role = [], {}, None
        self.slopes = alibi_slopes(self.heads)
        for key in ["embeddings.word_embeddings.weight", "embeddings.LayerNorm.weight"] + [
                f"encoder.layer.{i}.{n}.weight" for i in range(self.layers)
                for n in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                          "attention.output.LayerNorm", "mlp.gated_layers", "mlp.wo", "mlp.layernorm")]:
            if key not in w:
                raise EmbccError(f"{ckpt}: JinaBERT weight {key} is missing", "pass a jina-embeddings-v2 checkpoint "
                                 "in its published layout")
        if w["encoder.layer.0.mlp.gated_layers.weight"].shape[0] != 2 * self.inter:
            raise EmbccError(f"{ckpt}: mlp.gated_layers is not [2 x intermediate_size, hidden]",
                             "config.json does not belong to these weights")

    def _lin(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.w[f"{name}.weight"], self.w.get(f"{name}.bias"))

    def _ln(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.eps)

    def _attention(self, x: torch.Tensor, mask: torch.Tensor, p: str) -> torch.Tensor:
        b, n, h = x.shape
        d = h // self.heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, d).permute(0, 2, 1, 3)

        q, k, v = (heads(self._lin(x, f"{p}attention.self.{name}")) for name in ("query", "key", "value"))
        keep = mask.bool()[:, None, None, :]  # [B, 1, 1, L]
        pos = torch.arange(n, dtype=x.dtype)  # float64 as verify runs it; float32 where bench casts the weights
        out = torch.empty_like(q)
        for s in range(0, n, QUERY_CHUNK):
            e = min(n, s + QUERY_CHUNK)
            bias = -self.slopes.to(x.dtype)[:, None, None] * (pos[s:e, None] - pos[None, :]).abs()[None]  # [heads, c, L]
            bias = bias[None].masked_fill(~keep, float("-inf"))
            out[:, :, s:e] = F.scaled_dot_product_attention(q[:, :, s:e], k, v, attn_mask=bias)
        return out.permute(0, 2, 1, 3).reshape(b, n, h)

    def _states(self, input_ids: torch.Tensor, mask: torch.Tensor, task: str | None) -> torch.Tensor:
        w = self.w
        x = w["embeddings.word_embeddings.weight"][input_ids]
        if "embeddings.token_type_embeddings.weight" in w:
            x = x + w["embeddings.token_type_embeddings.weight"][0]
        x = self._ln(x, "embeddings.LayerNorm")
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            x = self._ln(x + self._lin(self._attention(x, mask, p), p + "attention.output.dense"),
                         p + "attention.output.LayerNorm")
            gated, plain = F.linear(x, w[p + "mlp.gated_layers.weight"]).split(self.inter, dim=-1)
            act = F.gelu(gated) if self.act == "gelu" else F.relu(gated)
            x = self._ln(x + self._lin(act * plain, p + "mlp.wo"), p + "mlp.layernorm")
        return x

    def describe(self) -> dict:
        v = versions()
        return {
            "family": self.family, "library": f"independent float64 re-implementation (torch {v['torch']})",
            "class": "embcc.reference.jina_v2.V2Reference (JinaBERT: no maintained library has it)",
            "torch": v["torch"], "dtype": "float64", "attention": "torch scaled_dot_product_attention, ALiBi bias",
            "layout": "v2 published key names (bert. prefix optional), read with safetensors",
            "adapters": "none (v2 has no task adapters)",
            "alibi_slopes": [round(float(s), 8) for s in self.slopes], "pooling": self.pooling.source,
            "prompts": "none (v2 has no prompts)", "tokenizer": self.tokens.describe(), "tasks": [],
            "notes": ("an independent re-implementation written from the published key names (post-LN, symmetric "
                      f"ALiBi, {self.act}-gated MLP on mlp.gated_layers); it imports nothing from embcc's export path"),
        }

    def _release(self) -> None:
        self.w = {}

