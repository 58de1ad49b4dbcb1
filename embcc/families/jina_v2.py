"""jina-embeddings-v2 small/base: JinaBERT (ALiBi, GEGLU, post-LN), mean pooling, no task adapters."""

from __future__ import annotations

from pathlib import Path

import torch

from embcc.errors import EmbccError
from embcc.export.gguf_table import Cfg, GgufTable
from embcc.families import fixture_tokenizers
from embcc.families.base import (
    Bundle,
    Family,
    check_tensors,
    hash_checkpoint,
    read_config,
    read_safetensors,
    save_fixture_weights,
    tokenizer_files,
    weight_files,
    write_json,
    write_st_modules,
)
from embcc.families.jinabert import JinaBertConfig, JinaBertModel
from embcc.modelspec import ModelSpec

# Published extras that are not part of the embedding path.
IGNORED = ("pooler.", "cls.", "lm_head.")

SIZES = {
    # name: (layers, hidden, heads, intermediate, vocab)
    ("jina-v2-small", "full"): (4, 512, 8, 2048, 30528),
    ("jina-v2-base", "full"): (12, 768, 12, 3072, 30528),
    ("jina-v2-small", "tiny"): (2, 64, 4, 128, 1024),
    ("jina-v2-base", "tiny"): (2, 96, 6, 192, 1024),  # 6 heads: exercises non power-of-2 ALiBi slopes
    # hidden and intermediate sizes that are multiples of 256, the block size of llama.cpp's K-quants
    ("jina-v2-small", "tiny256"): (2, 256, 4, 512, 1024),
    ("jina-v2-base", "tiny256"): (2, 256, 4, 512, 1024),
}

_L = "encoder.layer.{bid}."
# llama.cpp's jina-bert-v2: post-LN BERT, ALiBi (max bias 8), GEGLU with gate and up fused in ffn_up
# (gelu on the first half, as JinaBERT's mlp.gated_layers), WordPiece vocabulary in "phantom space" form.
GGUF = GgufTable(
    arch="jina-bert-v2",
    tensors={
        "token_embd.weight": "embeddings.word_embeddings.weight",
        "token_types.weight": "embeddings.token_type_embeddings.weight",
        "token_embd_norm.weight": "embeddings.LayerNorm.weight",
        "token_embd_norm.bias": "embeddings.LayerNorm.bias",
        "blk.{bid}.attn_q.weight": _L + "attention.self.query.weight",
        "blk.{bid}.attn_q.bias": _L + "attention.self.query.bias",
        "blk.{bid}.attn_k.weight": _L + "attention.self.key.weight",
        "blk.{bid}.attn_k.bias": _L + "attention.self.key.bias",
        "blk.{bid}.attn_v.weight": _L + "attention.self.value.weight",
        "blk.{bid}.attn_v.bias": _L + "attention.self.value.bias",
        "blk.{bid}.attn_output.weight": _L + "attention.output.dense.weight",
        "blk.{bid}.attn_output.bias": _L + "attention.output.dense.bias",
        "blk.{bid}.attn_output_norm.weight": _L + "attention.output.LayerNorm.weight",
        "blk.{bid}.attn_output_norm.bias": _L + "attention.output.LayerNorm.bias",
        "blk.{bid}.ffn_up.weight": _L + "mlp.gated_layers.weight",
        "blk.{bid}.ffn_down.weight": _L + "mlp.wo.weight",
        "blk.{bid}.ffn_down.bias": _L + "mlp.wo.bias",
        "blk.{bid}.layer_output_norm.weight": _L + "mlp.layernorm.weight",
        "blk.{bid}.layer_output_norm.bias": _L + "mlp.layernorm.bias",
    },
    hparams={
        "block_count": Cfg("num_hidden_layers"),
        "embedding_length": Cfg("hidden_size"),
        "feed_forward_length": Cfg("intermediate_size"),
        "attention.head_count": Cfg("num_attention_heads"),
        "attention.head_count_kv": Cfg("num_attention_heads"),
        "attention.layer_norm_epsilon": Cfg("layer_norm_eps", cast=float),
        "attention.max_alibi_bias": 8.0,
    },
    tokenizer="bert",
    pre_tokenizer="jina-v2-en",
)


def _is_jinabert(config: dict) -> bool:
    auto = " ".join(str(v) for v in (config.get("auto_map") or {}).values())
    return config.get("model_type") == "bert" and (
        "jina-bert" in auto or config.get("position_embedding_type") == "alibi" or "feed_forward_type" in config
    )


class JinaV2(Family):
    name = "jina-v2"
    fixtures = ("jina-v2-small", "jina-v2-base")
    layouts = ("original",)
    gguf = GGUF

    @classmethod
    def detect(cls, config: dict, path: Path) -> bool:
        return _is_jinabert(config)

    def load(self, path: Path) -> Bundle:
        config = read_config(path)
        if config.get("position_embedding_type", "alibi") != "alibi":
            raise EmbccError(f"{path} is a BERT with {config['position_embedding_type']} positions, not JinaBERT", "pass a jina-embeddings-v2 checkpoint")
        ff = config.get("feed_forward_type", "geglu")
        if ff != "geglu":
            raise EmbccError(f"{path} uses feed_forward_type {ff!r}; embcc supports JinaBERT's 'geglu'", "pass a jina-embeddings-v2 checkpoint")
        c = JinaBertConfig.from_dict(config)
        raw = read_safetensors(weight_files(path))
        renamed = {k.removeprefix("bert."): v for k, v in raw.items()}
        with torch.device("meta"):
            want = {k: v.shape for k, v in JinaBertModel(c).state_dict().items()}
        weights = check_tensors(renamed, want, ignored=IGNORED, where=path)
        max_len = int(config.get("model_max_length") or config.get("max_position_embeddings") or 8192)
        spec = ModelSpec(family=self.name, pooling="mean", dim=c.hidden_size, max_length=max_len, position="alibi")
        return Bundle(self, path, "original", config, spec, weights, None, tokenizer_files(path), hash_checkpoint(path))

    def backbone(self, bundle: Bundle, weights: dict[str, torch.Tensor], rope_theta: float | None = None) -> torch.nn.Module:
        model = JinaBertModel(JinaBertConfig.from_dict(bundle.config))
        model.load_state_dict(weights, strict=True)
        return model.float().eval()

    def write_fixture(self, name: str, out: Path, *, size: str, layout: str | None, seed: int) -> None:
        if layout not in (None, "original"):
            raise EmbccError(f"{name} has one published layout, not {layout!r}", "leave out --layout")
        layers, hidden, heads, inter, vocab = SIZES[(name, size)]
        fixture_tokenizers.write_bert_wordpiece(out, vocab_size=vocab, lowercase=True, model_max_length=8192)
        config = {
            "architectures": ["JinaBertForMaskedLM"],
            "attention_probs_dropout_prob": 0.0,
            "auto_map": {
                "AutoConfig": "jinaai/jina-bert-implementation--configuration_bert.JinaBertConfig",
                "AutoModel": "jinaai/jina-bert-implementation--modeling_bert.JinaBertModel",
                "AutoModelForMaskedLM": "jinaai/jina-bert-implementation--modeling_bert.JinaBertForMaskedLM",
            },
            "classifier_dropout": None,
            "emb_pooler": "mean",
            "feed_forward_type": "geglu",
            "gradient_checkpointing": False,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "hidden_size": hidden,
            "initializer_range": 0.02,
            "intermediate_size": inter,
            "layer_norm_eps": 1e-12,
            "max_position_embeddings": 8192,
            "model_max_length": 8192,
            "model_type": "bert",
            "num_attention_heads": heads,
            "num_hidden_layers": layers,
            "pad_token_id": 0,
            "position_embedding_type": "alibi",
            "torch_dtype": "bfloat16",
            "type_vocab_size": 2,
            "use_cache": True,
            "vocab_size": vocab,
        }
        write_json(out / "config.json", config)
        g = torch.Generator().manual_seed(seed)
        with torch.device("meta"):
            shapes = {k: v.shape for k, v in JinaBertModel(JinaBertConfig.from_dict(config)).state_dict().items()}
        tensors = {k: _init(k, s, g) for k, s in shapes.items()}
        tensors["pooler.dense.weight"] = torch.randn(hidden, hidden, generator=g) * 0.02
        tensors["pooler.dense.bias"] = torch.zeros(hidden)
        save_fixture_weights({k: v.to(torch.bfloat16) for k, v in tensors.items()}, out)
        _write_sentence_transformers(out, hidden)


def _init(key: str, shape: torch.Size, g: torch.Generator) -> torch.Tensor:
    """Random weights with the statistics of a trained model: norm gains near 1, small biases."""
    if "LayerNorm" in key or "layernorm" in key:
        base = 1.0 if key.endswith("weight") else 0.0
        return base + 0.05 * torch.randn(shape, generator=g)
    if key.endswith("bias"):
        return 0.02 * torch.randn(shape, generator=g)
    return 0.05 * torch.randn(shape, generator=g)


def _write_sentence_transformers(out: Path, dim: int) -> None:
    write_st_modules(out, dim, {"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
                                "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False})
    write_json(out / "sentence_bert_config.json", {"max_seq_length": 8192, "do_lower_case": False})
