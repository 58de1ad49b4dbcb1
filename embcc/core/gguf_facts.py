"""The vocabulary a family uses to declare its llama.cpp facts (no `gguf` import, so families stay cheap).

A family declares one `GgufFacts` per backbone: llama.cpp's architecture name, hyperparameters, tokenizer kind
and pre-tokenizer name (named, never guessed by hashing), whether attention is causal, and only the tensor
names gguf-py's own map (`gguf.get_tensor_name_map(arch, n_blocks)`) does not know: `extra_tensors`, GGUF
name -> source name(s) (`{bid}` for the block index; a tuple is concatenated along dim 0, e.g. a fused QKV).
Sources are names in `Bundle.weights` (the backbone's own). `context_length`, `rope.freq_base`, `pooling_type`
and `attention.causal` come from the ModelSpec and the export options. Example (v2: gguf-py knows every name)::

    GgufFacts(arch="jina-bert-v2", tokenizer="bert", pre_tokenizer="jina-v2-en",
              hparams={"block_count": Cfg("num_hidden_layers"), "attention.max_alibi_bias": 8.0, ...})
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
class GgufFacts:
    arch: str  # llama.cpp's architecture name (gguf.MODEL_ARCH_NAMES)
    hparams: dict[str, object]  # "{arch}." key suffix -> literal, Cfg, or callable(config) -> value
    tokenizer: str  # llama.cpp tokenizer model: "bert" (WordPiece), "t5" (sentencepiece Unigram), "gpt2" (BPE)
    pre_tokenizer: str  # llama.cpp pre-tokenizer name
    causal: bool = False
    extra_tensors: dict[str, str | tuple[str, ...]] = field(default_factory=dict)
    unused: tuple[str, ...] = ()  # source weights llama.cpp's graph does not use, dropped on purpose
    unsupported_parts: dict[str, str] = field(default_factory=dict)  # part -> why llama.cpp cannot run it
