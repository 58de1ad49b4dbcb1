"""jina-embeddings-v3: XLM-RoBERTa with RoPE and five task LoRA adapters; reference JinaEmbeddingsV3Model.

Two published layouts load into the same thing (native transformers weight names + stacked adapters):
- original (`jinaai/jina-embeddings-v3`, custom code): `roberta.` prefix, fused `mixer.Wqkv`, every Linear and
  Embedding weight as `<module>.parametrizations.weight.original` with stacked `...weight.0.lora_A/lora_B`;
- hf (`jinaai/jina-embeddings-v3-hf`): transformers' native names, adapters as PEFT folders.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import JinaEmbeddingsV3Config, JinaEmbeddingsV3Model

from embcc.core.bundle import Bundle
from embcc.core.errors import EmbccError
from embcc.core.gguf_facts import Cfg, GgufFacts
from embcc.core.spec import ModelSpec, Task
from embcc.families import jina_v3_layouts as layouts
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

TASKS = ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"]
INSTRUCTIONS = {
    "retrieval.query": "Represent the query for retrieving evidence documents: ",
    "retrieval.passage": "Represent the document for retrieval: ",
    "separation": "",
    "classification": "",
    "text-matching": "",
}
IGNORED = ("pooler.", "lm_head.", "classifier.", "qa_outputs.")

_L = "layers.{bid}."
# llama.cpp's jina-bert-v3: XLM-RoBERTa with NeoX-style RoPE, post-LN, gelu MLP, sentencepiece Unigram vocab.
# gguf-py's map has XLM-R's names; transformers' native v3 names that it lacks are declared here, with q, k and
# v fused into attn_qkv as llama.cpp's own converter writes them (Jina's original Wqkv).
GGUF = GgufFacts(
    arch="jina-bert-v3",
    extra_tensors={
        "blk.{bid}.attn_qkv.weight": tuple(_L + f"self_attn.{p}_proj.weight" for p in "qkv"),
        "blk.{bid}.attn_qkv.bias": tuple(_L + f"self_attn.{p}_proj.bias" for p in "qkv"),
        "blk.{bid}.attn_output_norm.weight": _L + "post_attention_layernorm.weight",
        "blk.{bid}.attn_output_norm.bias": _L + "post_attention_layernorm.bias",
        "blk.{bid}.layer_output_norm.weight": _L + "post_mlp_layernorm.weight",
        "blk.{bid}.layer_output_norm.bias": _L + "post_mlp_layernorm.bias",
        "blk.{bid}.ffn_up.weight": _L + "mlp.fc1.weight",
        "blk.{bid}.ffn_up.bias": _L + "mlp.fc1.bias",
        "blk.{bid}.ffn_down.weight": _L + "mlp.fc2.weight",
        "blk.{bid}.ffn_down.bias": _L + "mlp.fc2.bias",
    },
    hparams={
        "block_count": Cfg("num_hidden_layers"),
        "embedding_length": Cfg("hidden_size"),
        "feed_forward_length": Cfg("intermediate_size"),
        "attention.head_count": Cfg("num_attention_heads"),
        "attention.head_count_kv": Cfg("num_attention_heads"),
        "attention.layer_norm_epsilon": Cfg("layer_norm_eps", cast=float),
        "rope.dimension_count": lambda c: c["hidden_size"] // c["num_attention_heads"],  # rotary dim = head dim
    },
    tokenizer="t5",
    pre_tokenizer="default",
)


class V3Backbone(JinaEmbeddingsV3Model):
    """JinaEmbeddingsV3Model returning the token states, so adapter names stay the model's own."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def native_config(config: dict, layout: str, rope_theta: float | None = None) -> JinaEmbeddingsV3Config:
    """A JinaEmbeddingsV3Config from either layout's config.json."""
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id",
            "bos_token_id", "eos_token_id")
    kw = {k: config[k] for k in keys if k in config}
    theta = rope_theta if rope_theta is not None else default_theta(config, layout)
    return JinaEmbeddingsV3Config(**kw, rope_parameters={"rope_type": "default", "rope_theta": float(theta)},
                                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def default_theta(config: dict, layout: str) -> float:
    if layout == "original":
        return float(config.get("rotary_emb_base", 10000.0))
    rp = config.get("rope_parameters") or {}
    for value in (rp.get("rope_theta"), config.get("rope_theta"), config.get("rotary_emb_base")):
        if value is not None:
            return float(value)
    return float(JinaEmbeddingsV3Config.default_theta)


class JinaV3(Family):
    name = "jina-v3"
    layouts = ("original", "hf")
    gguf = GGUF

    @classmethod
    def detect(cls, config: dict, path: Path) -> bool:
        return config.get("model_type") == "jina_embeddings_v3" or (
            config.get("model_type") == "xlm-roberta" and "lora_adaptations" in config
        )

    def load(self, path: Path) -> Bundle:
        config = read_config(path)
        layout = "hf" if config.get("model_type") == "jina_embeddings_v3" else "original"
        if layout == "original" and config.get("position_embedding_type", "rotary") != "rotary":
            raise EmbccError(f"{path} has {config['position_embedding_type']} positions, not v3's rotary", "pass a jina-embeddings-v3 checkpoint")
        cfg = native_config(config, layout)
        raw = read_safetensors(weight_files(path))
        if layout == "original":
            tasks = list(config.get("lora_adaptations") or [])
            scaling = float(config.get("lora_alpha", 1)) / float(config.get("lora_rank", 4))
            renamed, lora = layouts.from_original(raw, tasks, scaling, where=path)
            instructions = config.get("task_instructions") or {}
        else:
            renamed = layouts.from_hf(raw)
            tasks = list(config.get("lora_adaptations") or TASKS)
            lora = layouts.read_peft_adapters(path, tasks)
            if lora is None:
                tasks = []
            instructions = config.get("task_instructions") or INSTRUCTIONS
        with torch.device("meta"):
            want = {k: v.shape for k, v in JinaEmbeddingsV3Model(cfg, add_pooling_layer=False).state_dict().items()}
        weights = check_tensors(renamed, want, ignored=IGNORED, where=path)
        if lora is not None:
            layouts.check_lora(lora, weights, where=path)
        spec = ModelSpec(
            family=self.name, pooling="mean", dim=cfg.hidden_size,
            max_length=int(config.get("max_position_embeddings", 8194)) - 2, position="rope",
            tasks=[Task(t, i, instructions.get(t, "")) for i, t in enumerate(tasks)],
            matryoshka_dims=list(config.get("matryoshka_dimensions") or []),
            rope_theta=default_theta(config, layout),
        )
        return Bundle(self, path, layout, config, spec, weights, lora, tokenizer_files(path), hash_checkpoint(path))

    def client_config(self, bundle: Bundle, spec: ModelSpec) -> dict:
        """XLM-RoBERTa's keys under its own transformers type (`xlm-roberta`, which every transformers release
        parses; `jina_embeddings_v3` exists only from transformers 5), whichever layout was loaded, without the
        original layout's auto_map; the RoPE base the artifact runs as Jina's config names it."""
        cfg = native_config(bundle.config, bundle.layout, spec.rope_theta)
        keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id",
                "bos_token_id", "eos_token_id")
        return {"architectures": ["XLMRobertaModel"], "model_type": "xlm-roberta",
                **{k: getattr(cfg, k) for k in keys if getattr(cfg, k, None) is not None},
                "position_embedding_type": "rotary", "rotary_emb_base": float(spec.rope_theta)}

    def attention(self, bundle: Bundle, part: str) -> dict | None:
        c = native_config(bundle.config, bundle.layout)  # bidirectional RoPE attention: tiled MultiHeadAttention
        return {"kind": "mha", "heads": c.num_attention_heads, "kv_heads": c.num_attention_heads,
                "head_dim": c.hidden_size // c.num_attention_heads, "causal": False}

    def backbone(self, bundle: Bundle, weights: dict[str, torch.Tensor], rope_theta: float | None = None) -> torch.nn.Module:
        cfg = native_config(bundle.config, bundle.layout, rope_theta)
        cfg._attn_implementation = "sdpa"
        return build_backbone(lambda: V3Backbone(cfg, add_pooling_layer=False), weights)
