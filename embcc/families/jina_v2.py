"""jina-embeddings-v2 small/base: JinaBERT (ALiBi, GEGLU, post-LN), mean pooling, no task adapters."""

from __future__ import annotations

from pathlib import Path

import torch

from embcc.core.bundle import Bundle
from embcc.core.errors import EmbccError
from embcc.core.gguf_facts import Cfg, GgufFacts
from embcc.core.spec import ModelSpec
from embcc.families.base import (
    Family,
    build_backbone,
    check_tensors,
    hash_checkpoint,
    read_config,
    read_safetensors,
    tokenizer_files,
    weight_files,
)
from embcc.families.jinabert import JinaBertConfig, JinaBertModel

# Published extras that are not part of the embedding path.
IGNORED = ("pooler.", "cls.", "lm_head.")

# llama.cpp's jina-bert-v2: post-LN BERT, ALiBi (max bias 8), GEGLU with gate and up fused in ffn_up (gelu on
# the first half, as JinaBERT's mlp.gated_layers), WordPiece vocabulary in "phantom space" form. gguf-py's name
# map knows every JinaBERT tensor name.
GGUF = GgufFacts(
    arch="jina-bert-v2",
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

    def client_config(self, bundle: Bundle, spec: ModelSpec) -> dict:
        """BERT's own keys (transformers' `bert` type; JinaBERT's ALiBi and GEGLU named as Jina's config names them)
        without Jina's auto_map: an artifact's clients never build the PyTorch model from it."""
        c = JinaBertConfig.from_dict(bundle.config)
        return {"architectures": ["JinaBertModel"], "model_type": "bert", **vars(c),
                "max_position_embeddings": int(bundle.config.get("max_position_embeddings") or spec.max_length),
                "position_embedding_type": "alibi", "feed_forward_type": "geglu",
                "hidden_act": bundle.config.get("hidden_act", "gelu")}

    def attention(self, bundle: Bundle, part: str) -> dict | None:
        c = bundle.config  # ALiBi only enters ONNX Runtime's attention as a bias: fused, never tiled
        return {"kind": "bias", "heads": int(c["num_attention_heads"]), "kv_heads": int(c["num_attention_heads"]),
                "head_dim": int(c["hidden_size"]) // int(c["num_attention_heads"]), "causal": False}

    def backbone(self, bundle: Bundle, weights: dict[str, torch.Tensor], rope_theta: float | None = None) -> torch.nn.Module:
        cfg = JinaBertConfig.from_dict(bundle.config)
        return build_backbone(lambda: JinaBertModel(cfg), weights)
