"""Independent float64 re-implementations of jina-embeddings-v3 (both layouts), -v2 and -v5, written from the published layouts.

Nothing here comes from embcc (or from transformers' JinaEmbeddingsV3Model): the weights are read straight
from `model.safetensors` under their published names, and every step of the forward pass is spelled out, so
a mistake in embcc's key renaming, adapter handling or model code shows up as a difference.

Only torch, numpy, safetensors, json and `tokenizers` are used.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

F64 = torch.float64


# ---- shared pieces -----------------------------------------------------------------------------------------


def _read(ckpt_dir: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    ckpt_dir = Path(ckpt_dir)
    config = json.loads((ckpt_dir / "config.json").read_text())
    tensors = {k: v.to(F64) for k, v in load_file(str(ckpt_dir / "model.safetensors")).items()}
    return config, tensors


def _token_ids(ckpt_dir: str | Path, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Ids as the model sees them: special tokens added by tokenizer.json's post-processor, then truncated."""
    tok = Tokenizer.from_file(str(Path(ckpt_dir) / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length)
    return [tok.encode(t).ids for t in texts]


def _pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids [B, L] and a boolean mask [B, L] (True on real tokens)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = True
    return ids, mask


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    y = x @ weight.T
    return y if bias is None else y + bias


def _layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)  # biased variance, as nn.LayerNorm
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def _gelu(x: torch.Tensor) -> torch.Tensor:
    """The exact (erf) GELU."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, h = x.shape
    return x.view(b, n, heads, h // heads).transpose(1, 2)  # [B, heads, L, d]


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, heads, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, heads * d)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
            bias: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v with padded keys masked out; q/k/v [B, heads, L, d], mask [B, L]."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def _mean_pool_normalize(states: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    m = mask[..., None].to(F64)
    pooled = (states * m).sum(1) / m.sum(1)
    return (pooled / pooled.norm(dim=-1, keepdim=True)).numpy()


def _in_batches(rows: list[list[int]], batch_size: int) -> list[list[list[int]]]:
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


# ---- jina-embeddings-v3, original layout (jinaai/jina-embeddings-v3) ---------------------------------------


def _v3_weight(sd: dict[str, torch.Tensor], module: str, task: int | None, scaling: float,
               embedding: bool) -> torch.Tensor:
    """The weight of `module` with task `task`'s LoRA adapter applied (as the LoRA parametrization does)."""
    original = sd.get(f"{module}.parametrizations.weight.original")
    if original is None:  # a module without an adapter
        return sd[f"{module}.weight"]
    if task is None:
        return original
    a = sd[f"{module}.parametrizations.weight.0.lora_A"][task]
    b = sd[f"{module}.parametrizations.weight.0.lora_B"][task]
    if embedding:  # A [vocab, r], B [r, dim]
        return original + (a @ b) * scaling
    return original + (b @ a) * scaling  # linear: A [r, in], B [out, r]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def _rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Non-interleaved rotary embedding over the full head dim, positions 0..L-1; x [B, heads, L, d]."""
    d, n = x.shape[-1], x.shape[-2]
    inv_freq = 1.0 / theta ** (torch.arange(0, d, 2, dtype=F64) / d)
    freqs = torch.arange(n, dtype=F64)[:, None] * inv_freq[None, :]  # [L, d/2]
    angles = torch.cat([freqs, freqs], dim=-1)  # [L, d]
    return x * angles.cos() + _rotate_half(x) * angles.sin()


def v3_original_reference(ckpt_dir: str | Path, texts: Sequence[str], task: str | None,
                          rope_theta: float | None = None, *, max_length: int = 8192,
                          batch_size: int = 1) -> np.ndarray:
    """float64 [N, H] L2-normalised jina-embeddings-v3 sentence embeddings of `texts` for `task`.

    `task=None` runs the base weights without a prefix. `batch_size > 1` runs right-padded batches.
    """
    config, sd = _read(ckpt_dir)
    tasks = list(config["lora_adaptations"])
    t = None if task is None else tasks.index(task)
    scaling = float(config["lora_alpha"]) / float(config["lora_rank"])
    theta = float(rope_theta if rope_theta is not None else config["rotary_emb_base"])

    def weight(module: str, embedding: bool = False) -> torch.Tensor:
        return _v3_weight(sd, "roberta." + module, t, scaling, embedding)

    return _v3_encode(ckpt_dir, config, sd, weight, texts, _v3_prefix(config, task), theta, max_length, batch_size)


# -hf module names (transformers' JinaEmbeddingsV3Model) -> Jina's original ones, and which third of the fused
# Wqkv a q/k/v projection is
_HF_TO_JINA = [
    (r"^embeddings\.LayerNorm$", "emb_ln", None),
    (r"^layers\.(\d+)\.self_attn\.q_proj$", r"encoder.layers.\1.mixer.Wqkv", 0),
    (r"^layers\.(\d+)\.self_attn\.k_proj$", r"encoder.layers.\1.mixer.Wqkv", 1),
    (r"^layers\.(\d+)\.self_attn\.v_proj$", r"encoder.layers.\1.mixer.Wqkv", 2),
    (r"^layers\.(\d+)\.self_attn\.o_proj$", r"encoder.layers.\1.mixer.out_proj", None),
    (r"^layers\.(\d+)\.post_attention_layernorm$", r"encoder.layers.\1.norm1", None),
    (r"^layers\.(\d+)\.post_mlp_layernorm$", r"encoder.layers.\1.norm2", None),
    (r"^layers\.(\d+)\.mlp\.(fc1|fc2)$", r"encoder.layers.\1.mlp.\2", None),
]


def _hf_to_jina(module: str) -> tuple[str, int | None]:
    for pattern, target, part in _HF_TO_JINA:
        if re.match(pattern, module):
            return re.sub(pattern, target, module), part
    return module, None


def _jina_names(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """-hf base weights under Jina's names (`roberta.` prefix, fused Wqkv), whichever names the file uses."""
    sd: dict[str, torch.Tensor] = {}
    parts: dict[str, dict[int, torch.Tensor]] = {}
    for key, value in raw.items():
        key = key.removeprefix("roberta.")
        module, _, leaf = key.rpartition(".")
        jina, part = _hf_to_jina(module)
        if part is None:
            sd[f"roberta.{jina}.{leaf}"] = value
        else:
            parts.setdefault(f"roberta.{jina}.{leaf}", {})[part] = value
    for key, p in parts.items():
        sd[key] = torch.cat([p[0], p[1], p[2]])
    return sd


def v3_hf_reference(ckpt_dir: str | Path, texts: Sequence[str], task: str | None,
                    rope_theta: float | None = None, *, max_length: int = 8192,
                    batch_size: int = 1) -> np.ndarray:
    """float64 jina-embeddings-v3 embeddings from the -hf layout: base weights + the task's PEFT folder.

    The adapter folder is `<ckpt>/<task with . and - as _>/` (adapter_config.json r / lora_alpha,
    adapter_model.safetensors with PEFT key names); each delta is added to Jina's fused weight it belongs to.
    RoPE theta: config.json `rope_parameters.rope_theta`, else transformers' default for this model (20000).
    """
    ckpt_dir = Path(ckpt_dir)
    config, raw = _read(ckpt_dir)
    sd = _jina_names(raw)
    deltas: dict[str, torch.Tensor] = {}
    if task is not None:
        folder = ckpt_dir / task.replace(".", "_").replace("-", "_")
        acfg = json.loads((folder / "adapter_config.json").read_text())
        scaling = float(acfg["lora_alpha"]) / float(acfg["r"])
        ad = {k.removeprefix("base_model.model."): v.to(F64)
              for k, v in load_file(str(folder / "adapter_model.safetensors")).items()}
        for key in ad:
            if key.endswith(".lora_A.weight"):  # Linear: delta = B @ A
                module = key.removesuffix(".lora_A.weight")
                delta = ad[module + ".lora_B.weight"] @ ad[key] * scaling
            elif key.endswith(".lora_embedding_A"):  # Embedding: delta = (B @ A)^T, A [r, vocab], B [dim, r]
                module = key.removesuffix(".lora_embedding_A")
                delta = (ad[module + ".lora_embedding_B"] @ ad[key]).T * scaling
            else:
                continue
            jina, part = _hf_to_jina(module)
            if part is None:
                deltas[jina] = delta
            else:
                h = delta.shape[0]
                full = deltas.setdefault(jina, torch.zeros(3 * h, delta.shape[1], dtype=F64))
                full[part * h : (part + 1) * h] = delta
    rp = config.get("rope_parameters") or {}
    theta = float(rope_theta if rope_theta is not None else rp.get("rope_theta", 20000.0))

    def weight(module: str, embedding: bool = False) -> torch.Tensor:
        w = sd[f"roberta.{module}.weight"]
        return w + deltas[module] if module in deltas else w

    return _v3_encode(ckpt_dir, config, sd, weight, texts, _v3_prefix(config, task), theta, max_length, batch_size)


def _v3_prefix(config: dict, task: str | None) -> str:
    return "" if task is None else (config.get("task_instructions") or {}).get(task) or ""


def _v3_encode(ckpt_dir: str | Path, config: dict, sd: dict[str, torch.Tensor], weight: Callable[..., torch.Tensor],
               texts: Sequence[str], prefix: str, theta: float, max_length: int, batch_size: int) -> np.ndarray:
    """The v3 forward pass over Jina's module names; `weight(module, embedding)` gives the adapted weight."""
    eps = float(config["layer_norm_eps"])
    heads = int(config["num_attention_heads"])
    p = "roberta."

    def bias(module: str) -> torch.Tensor:
        return sd[f"{p}{module}.bias"]

    word = weight("embeddings.word_embeddings", embedding=True)
    token_type = weight("embeddings.token_type_embeddings", embedding=True)
    layers = []
    for i in range(int(config["num_hidden_layers"])):
        m = f"encoder.layers.{i}."
        layers.append({
            "qkv": (weight(m + "mixer.Wqkv"), bias(m + "mixer.Wqkv")),
            "out": (weight(m + "mixer.out_proj"), bias(m + "mixer.out_proj")),
            "norm1": (sd[p + m + "norm1.weight"], bias(m + "norm1")),
            "fc1": (weight(m + "mlp.fc1"), bias(m + "mlp.fc1")),
            "fc2": (weight(m + "mlp.fc2"), bias(m + "mlp.fc2")),
            "norm2": (sd[p + m + "norm2.weight"], bias(m + "norm2")),
        })

    rows = _token_ids(ckpt_dir, [prefix + x for x in texts], max_length)
    pad_id = int(config.get("pad_token_id", 1))
    out = []
    for group in _in_batches(rows, batch_size):
        ids, mask = _pad(group, pad_id)
        x = word[ids] + token_type[0]
        x = _layer_norm(x, sd[p + "emb_ln.weight"], sd[p + "emb_ln.bias"], eps)
        for layer in layers:
            q, k, v = _linear(x, *layer["qkv"]).chunk(3, dim=-1)
            q, k, v = (_split_heads(y, heads) for y in (q, k, v))
            attn = _merge_heads(_attend(_rope(q, theta), _rope(k, theta), v, mask))
            x = _layer_norm(x + _linear(attn, *layer["out"]), *layer["norm1"], eps)
            h = _linear(_gelu(_linear(x, *layer["fc1"])), *layer["fc2"])
            x = _layer_norm(x + h, *layer["norm2"], eps)
        out.append(_mean_pool_normalize(x, mask))
    return np.concatenate(out)


# ---- jina-embeddings-v2 (JinaBERT) -------------------------------------------------------------------------


def alibi_slopes(n: int) -> list[float]:
    """The ALiBi head slopes (Press et al.), including the rule for a head count that is not a power of 2."""

    def power_of_2(m: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(m) - 3)))
        return [start * start**i for i in range(m)]

    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + alibi_slopes(2 * closest)[0::2][: n - closest]


def _alibi(heads: int, n: int) -> torch.Tensor:
    """bias[h, i, j] = -slope_h * |i - j|, shape [1, heads, L, L]."""
    pos = torch.arange(n, dtype=F64)
    distance = (pos[None, :] - pos[:, None]).abs()
    slopes = torch.tensor(alibi_slopes(heads), dtype=F64)
    return (-slopes[:, None, None] * distance[None])[None]


def v2_reference(ckpt_dir: str | Path, texts: Sequence[str], *, max_length: int = 8192,
                 batch_size: int = 1) -> np.ndarray:
    """float64 [N, H] L2-normalised jina-embeddings-v2 sentence embeddings of `texts`."""
    config, raw = _read(ckpt_dir)
    sd = {k.removeprefix("bert."): v for k, v in raw.items()}
    eps = float(config.get("layer_norm_eps", 1e-12))
    heads = int(config["num_attention_heads"])
    inter = int(config["intermediate_size"])

    def lin(name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        return sd[f"{name}.weight"], sd.get(f"{name}.bias")

    def ln(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return sd[f"{name}.weight"], sd[f"{name}.bias"]

    rows = _token_ids(ckpt_dir, texts, max_length)
    pad_id = int(config.get("pad_token_id", 0))
    out = []
    for group in _in_batches(rows, batch_size):
        ids, mask = _pad(group, pad_id)
        x = sd["embeddings.word_embeddings.weight"][ids] + sd["embeddings.token_type_embeddings.weight"][0]
        x = _layer_norm(x, *ln("embeddings.LayerNorm"), eps)
        alibi = _alibi(heads, ids.shape[1])
        for i in range(int(config["num_hidden_layers"])):
            m = f"encoder.layer.{i}."
            q, k, v = (_split_heads(_linear(x, *lin(m + f"attention.self.{n}")), heads)
                       for n in ("query", "key", "value"))
            attn = _merge_heads(_attend(q, k, v, mask, alibi))
            x = _layer_norm(x + _linear(attn, *lin(m + "attention.output.dense")),
                            *ln(m + "attention.output.LayerNorm"), eps)
            h = _linear(x, sd[m + "mlp.gated_layers.weight"], None)
            gated, plain = h[..., :inter], h[..., inter:]
            h = _linear(_gelu(gated) * plain, *lin(m + "mlp.wo"))
            x = _layer_norm(x + h, *ln(m + "mlp.layernorm"), eps)
        out.append(_mean_pool_normalize(x, mask))
    return np.concatenate(out)


# ---- jina-embeddings-v5-text (Qwen3 small / EuroBERT nano), base layout with PEFT adapters ------------------


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * weight


def v5_reference(ckpt_dir: str | Path, texts: Sequence[str], *, task: str | None = "retrieval",
                 role: str = "document", theta: float | None = None, max_length: int = 32768,
                 batch_size: int = 1) -> np.ndarray:
    """float64 [N, H] L2-normalised v5 sentence embeddings: prefix by role, the tokenizer's EOS pooled.

    Small vs nano from the weights: Qwen3 has per-head q/k RMSNorms and attends causally; EuroBERT has neither.
    The task's adapter is read from `adapters/{task}/` (PEFT key names, W + B @ A * alpha / r); task=None runs
    the base weights (a pre-merged checkpoint).
    """
    ckpt_dir = Path(ckpt_dir)
    config, raw = _read(ckpt_dir)
    sd = {k.removeprefix("model."): v for k, v in raw.items()}
    if task is not None:
        folder = ckpt_dir / "adapters" / task
        acfg = json.loads((folder / "adapter_config.json").read_text())
        scaling = acfg["lora_alpha"] / acfg["r"]
        ad = {k.removeprefix("base_model.model."): v.to(F64)
              for k, v in load_file(str(folder / "adapter_model.safetensors")).items()}
        for key in [k for k in ad if k.endswith(".lora_A.weight")]:
            module = key.removesuffix(".lora_A.weight")
            sd[module + ".weight"] = sd[module + ".weight"] + ad[module + ".lora_B.weight"] @ ad[key] * scaling
    causal = "layers.0.self_attn.q_norm.weight" in sd
    heads, kv = int(config["num_attention_heads"]), int(config["num_key_value_heads"])
    d = int(config.get("head_dim") or config["hidden_size"] // heads)
    eps = float(config["rms_norm_eps"])
    theta = float(theta if theta is not None else config["rope_theta"])
    prefix = {"query": "Query: ", "document": "Document: "}[role]
    rows = _token_ids(ckpt_dir, [prefix + x for x in texts], max_length)
    out = []
    for group in _in_batches(rows, batch_size):
        ids, mask = _pad(group, 0)
        x = sd["embed_tokens.weight"][ids]
        n = ids.shape[1]
        allowed = mask[:, None, :].expand(-1, n, -1)
        if causal:
            allowed = allowed & torch.ones(n, n, dtype=torch.bool).tril()[None]
        for i in range(int(config["num_hidden_layers"])):
            m = f"layers.{i}."
            h = _rms_norm(x, sd[m + "input_layernorm.weight"], eps)
            q = _linear(h, sd[m + "self_attn.q_proj.weight"], None).view(*h.shape[:2], heads, d).transpose(1, 2)
            k = _linear(h, sd[m + "self_attn.k_proj.weight"], None).view(*h.shape[:2], kv, d).transpose(1, 2)
            v = _linear(h, sd[m + "self_attn.v_proj.weight"], None).view(*h.shape[:2], kv, d).transpose(1, 2)
            if causal:
                q = _rms_norm(q, sd[m + "self_attn.q_norm.weight"], eps)
                k = _rms_norm(k, sd[m + "self_attn.k_norm.weight"], eps)
            q, k = _rope(q, theta), _rope(k, theta)
            k, v = k.repeat_interleave(heads // kv, dim=1), v.repeat_interleave(heads // kv, dim=1)
            scores = (q @ k.transpose(-1, -2) / math.sqrt(d)).masked_fill(~allowed[:, None], float("-inf"))
            attn = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(*h.shape[:2], heads * d)
            x = x + _linear(attn, sd[m + "self_attn.o_proj.weight"], None)
            h = _rms_norm(x, sd[m + "post_attention_layernorm.weight"], eps)
            gate = _linear(h, sd[m + "mlp.gate_proj.weight"], None)
            h = (gate * torch.sigmoid(gate)) * _linear(h, sd[m + "mlp.up_proj.weight"], None)
            x = x + _linear(h, sd[m + "mlp.down_proj.weight"], None)
        x = _rms_norm(x, sd["norm.weight"], eps)
        pooled = x[torch.arange(len(group)), mask.sum(1) - 1]  # right padding: the last real token (the EOS)
        out.append((pooled / pooled.norm(dim=-1, keepdim=True)).numpy())
    return np.concatenate(out)


def sharpen_attention(ckpt: Path, out: Path, factor: float) -> Path:
    """A copy of an original-layout v3 checkpoint, the q and k rows of every fused Wqkv scaled by `factor`."""
    shutil.copytree(ckpt, out)
    tensors = load_file(str(out / "model.safetensors"))
    for key, w in tensors.items():
        if key.endswith(".mixer.Wqkv.parametrizations.weight.original"):
            h = w.shape[1]
            tensors[key] = torch.cat([w[: 2 * h] * factor, w[2 * h :]]).contiguous()
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out
