"""The vocabulary a family uses to declare its GGUF mapping (no `gguf` import here, so families stay cheap).

A family declares one `GgufTable`: the llama.cpp architecture name, the tensor-name table, the
hyperparameters, the tokenizer kind and pre-tokenizer name, and which adapters llama.cpp cannot apply and
where they fold instead. The writer (`embcc.export.gguf`) only walks the table. Example (v2)::

    GGUF = GgufTable(
        arch="jina-bert-v2",
        tensors={
            "token_embd.weight": "embeddings.word_embeddings.weight",
            "blk.{bid}.attn_q.weight": "encoder.layer.{bid}.attention.self.query.weight",
            ...
        },
        hparams={"embedding_length": Cfg("hidden_size"), "attention.max_alibi_bias": 8.0, ...},
        tokenizer="bert", pre_tokenizer="jina-v2-en",
    )

A v5-small family would declare (llama.cpp's qwen3; eurobert the same way with its own names, causal=False)::

    GGUF = GgufTable(
        arch="qwen3", causal=True, tokenizer="gpt2", pre_tokenizer="qwen2",
        tensors={"token_embd.weight": "embed_tokens.weight", "output_norm.weight": "norm.weight",
                 "blk.{bid}.attn_norm.weight": "layers.{bid}.input_layernorm.weight",
                 "blk.{bid}.attn_q.weight": "layers.{bid}.self_attn.q_proj.weight",
                 "blk.{bid}.attn_q_norm.weight": "layers.{bid}.self_attn.q_norm.weight", ...,
                 "blk.{bid}.ffn_gate.weight": "layers.{bid}.mlp.gate_proj.weight", ...},
        hparams={"block_count": Cfg("num_hidden_layers"), "embedding_length": Cfg("hidden_size"),
                 "feed_forward_length": Cfg("intermediate_size"), "attention.head_count": Cfg("num_attention_heads"),
                 "attention.head_count_kv": Cfg("num_key_value_heads"), "attention.key_length": Cfg("head_dim"),
                 "attention.value_length": Cfg("head_dim"),
                 "attention.layer_norm_rms_epsilon": Cfg("rms_norm_eps", cast=float)},
    )

with `gguf = GGUF` on the family class (a family with several backbones overrides `Family.gguf_table(bundle)`
instead: v5 declares GGUF_SMALL as `qwen3` and GGUF_NANO as `eurobert` in `embcc/families/jina_v5.py`); pooling (`last` -> 3), context length and rope.freq_base (the
ModelSpec's inference theta, or --rope-theta) are written by the writer. LoRA keep works for any table whose
adapted tensors are Linear or token embeddings; merge for any.

Tensor names are llama.cpp's (`gguf.TENSOR_NAMES`, with `{bid}` for the block index); sources are the names in
`Bundle.weights` (the reference model's own). A tuple of sources is concatenated along dim 0 (fused QKV).
Hyperparameter keys are written as `{arch}.<key>`; a value is a literal, `Cfg(config.json key)`, or a function
of the config dict.
`context_length`, `rope.freq_base`, `pooling_type` and `attention.causal` come from the ModelSpec and the
export options and need not be declared.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Cfg:
    """A hyperparameter read from the checkpoint's config.json (first key present wins)."""

    keys: tuple[str, ...]
    cast: type = int

    def __init__(self, *keys: str, cast: type = int):
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "cast", cast)

    def read(self, config: dict) -> int | float:
        for k in self.keys:
            if config.get(k) is not None:
                return self.cast(config[k])
        raise KeyError(self.keys[0])


@dataclass(frozen=True)
class GgufTable:
    arch: str  # llama.cpp's architecture name (gguf.MODEL_ARCH_NAMES)
    tensors: dict[str, str | tuple[str, ...]]  # GGUF tensor name -> source weight name(s)
    hparams: dict[str, object]  # "{arch}." key suffix -> literal, Cfg, or callable(config) -> value
    tokenizer: str  # llama.cpp tokenizer model: "bert" (WordPiece), "t5" (sentencepiece Unigram), "gpt2" (BPE)
    pre_tokenizer: str  # llama.cpp pre-tokenizer name, named by the family (never guessed by hashing)
    causal: bool = False
    # Adapters llama.cpp does not apply (it adds row 0 of the token-type table to every token), and the tensor
    # whose adapter carries their row-0 delta as one extra rank instead: {source tensor: target GGUF tensor}.
    fold_row0_adapters: dict[str, str] = field(default_factory=dict)
    # Weights of the checkpoint that llama.cpp's graph does not use and that are dropped on purpose.
    unused: tuple[str, ...] = ()
