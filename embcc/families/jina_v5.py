"""jina-embeddings-v5-text small and nano: one family, two backbones, four PEFT task adapters.

- small: Qwen3-0.6B-Base, a causal decoder with grouped KV heads; reference transformers `Qwen3Model`.
- nano: EuroBERT-210m, a bidirectional encoder; reference transformers `EuroBertModel`.

Published layout (both sizes): config.json with `model_type` "jina_embeddings_v5", `architectures`
["JinaEmbeddingsV5Model"], `task_names`, and the backbone's own config keys (Qwen3's for small, EuroBERT's for
nano) with the legacy top-level `rope_theta` (the inference value); the backbone weights as transformers saves
the base model (`layers.{i}.self_attn.q_proj.weight` ..., a `model.` prefix is accepted); one PEFT LoRA folder per
task under `adapters/{task}/`. Jina's pre-merged per-task repos are the same without `adapters/`.
Every input gets a role prefix: "Query: " (retrieval queries) or "Document: " (retrieval documents and every
other task). Pooling: the last token (the EOS the tokenizer appends), then L2; Matryoshka 32..hidden.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import EuroBertConfig, EuroBertModel, Qwen3Config, Qwen3Model

from embcc.core.bundle import Bundle
from embcc.core.errors import EmbccError
from embcc.core.gguf_facts import Cfg, GgufFacts
from embcc.core.spec import ModelSpec, Task
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
from embcc.families.peft_adapters import check_lora, check_no_stray_adapters, read_peft_folders

TASKS = ["retrieval", "text-matching", "classification", "clustering"]  # the paper's names; ids follow the file
PROMPTS = {"query": "Query: ", "document": "Document: "}
ROLE_TASKS = {"retrieval": ("query", "document")}  # tasks with a query role; every other task: document only
DEFAULT_ROLE = "document"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_RANK = LORA_ALPHA = 32
IGNORED = ("lm_head.",)
MATRYOSHKA = (32, 64, 128, 256, 512, 768, 1024)


class _LastHiddenState:
    """forward(input_ids, attention_mask) -> token states; positions count real tokens only, so a left-padded
    row sees the same positions as a right-padded one (RoPE is relative, but this keeps it exact)."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        position_ids = (attention_mask.to(torch.long).cumsum(-1) - 1).clamp(min=0)
        return super().forward(input_ids=input_ids, attention_mask=attention_mask,  # type: ignore[misc]
                               position_ids=position_ids, **self.extra).last_hidden_state


class V5SmallBackbone(_LastHiddenState, Qwen3Model):
    extra: ClassVar[dict] = {"use_cache": False}  # Qwen3 is a decoder: no KV cache in an embedding graph


class V5NanoBackbone(_LastHiddenState, EuroBertModel):
    extra: ClassVar[dict] = {}


@dataclass(frozen=True)
class Variant:
    size: str  # "small" | "nano"
    config_class: type
    backbone: type
    base_class: type
    default_theta: float  # the inference value Jina documents (used when config.json has none)
    repo: str
    config_keys: tuple[str, ...]  # the backbone config keys read from config.json
    markers: tuple[str, ...]  # config keys only this backbone's config class writes
    gguf_arch: str  # llama.cpp arch (SPEC.md section 3)
    gguf_pre: str  # llama.cpp pre-tokenizer name, named from the family (its hash check refuses fixtures)


_COMMON_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "rms_norm_eps",
                "attention_bias", "bos_token_id", "eos_token_id", "pad_token_id")
SMALL = Variant("small", Qwen3Config, V5SmallBackbone, Qwen3Model, 3_500_000.0, "jinaai/jina-embeddings-v5-text-small",
                _COMMON_KEYS + ("tie_word_embeddings",),
                ("use_sliding_window", "max_window_layers", "sliding_window", "layer_types"), "qwen3", "qwen2")
NANO = Variant("nano", EuroBertConfig, V5NanoBackbone, EuroBertModel, 1_000_000.0, "jinaai/jina-embeddings-v5-text-nano",
               _COMMON_KEYS + ("mlp_bias", "mask_token_id"), ("mlp_bias", "mask_token_id", "classifier_pooling", "clf_pooling"),
               "eurobert", "jina-v5-nano")
VARIANTS = {"small": SMALL, "nano": NANO}

# llama.cpp's archs (SPEC.md section 3): small as `qwen3` (causal, q/k norms, tied embeddings: no output.weight
# needed for embeddings), nano as `eurobert` (bidirectional). gguf-py's name map knows every tensor name of both.
_HPARAMS = {
    "block_count": Cfg("num_hidden_layers"), "embedding_length": Cfg("hidden_size"),
    "feed_forward_length": Cfg("intermediate_size"), "attention.head_count": Cfg("num_attention_heads"),
    "attention.head_count_kv": Cfg("num_key_value_heads", "num_attention_heads"),
    "attention.key_length": lambda c: _head_dim(c), "attention.value_length": lambda c: _head_dim(c),
    "rope.dimension_count": lambda c: _head_dim(c),
    "attention.layer_norm_rms_epsilon": Cfg("rms_norm_eps", cast=float),
}


def _head_dim(config: dict) -> int:
    return int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])


GGUF_FACTS = {
    "small": GgufFacts(arch=SMALL.gguf_arch, causal=True, tokenizer="gpt2", pre_tokenizer=SMALL.gguf_pre,
                       hparams=_HPARAMS),
    "nano": GgufFacts(arch=NANO.gguf_arch, causal=False, tokenizer="gpt2", pre_tokenizer=NANO.gguf_pre,
                      hparams=_HPARAMS),
}

def variant_of(config: dict, path: Path) -> Variant:
    """small (Qwen3's config) or nano (EuroBERT's), from the config's own keys, else from the tensors."""
    scores = {v.size: sum(k in config for k in v.markers) for v in VARIANTS.values()}
    auto = json.dumps(config.get("auto_map") or {}).lower()
    if "eurobert" in auto or config.get("model_type") == "eurobert":
        scores["nano"] += 10
    if "qwen3" in auto or config.get("model_type") == "qwen3":
        scores["small"] += 10
    if scores["small"] != scores["nano"]:
        return SMALL if scores["small"] > scores["nano"] else NANO
    try:
        from safetensors import safe_open

        with safe_open(str(weight_files(path)[0]), framework="pt") as f:
            names = list(f.keys())
    except EmbccError:
        raise
    except Exception as e:
        raise EmbccError(f"{path}: cannot tell v5-small from v5-nano ({e})", "re-download the checkpoint") from e
    return SMALL if any(n.endswith("self_attn.q_norm.weight") for n in names) else NANO


def default_theta(config: dict, variant: Variant) -> float:
    rp = config.get("rope_parameters") or {}
    for value in (config.get("rope_theta"), rp.get("rope_theta")):
        if value is not None:
            return float(value)
    return variant.default_theta


def native_config(config: dict, variant: Variant, rope_theta: float | None = None) -> Any:
    scaling = config.get("rope_scaling") or {}
    kind = scaling.get("rope_type", scaling.get("type", "default")) if isinstance(scaling, dict) else "default"
    if kind not in (None, "default"):
        raise EmbccError(f"config.json asks for RoPE scaling {kind!r}, which embcc does not implement for v5",
                         "use the checkpoint as Jina publishes it (plain RoPE, rope_theta)")
    kw = {k: config[k] for k in variant.config_keys if k in config}
    vocab = int(kw.get("vocab_size", 0) or 0)
    for k in ("bos_token_id", "eos_token_id", "pad_token_id", "mask_token_id"):
        if isinstance(kw.get(k), int) and not 0 <= kw[k] < vocab:
            kw[k] = None  # an id past the embedding table (config copied from another size) is irrelevant here
    theta = rope_theta if rope_theta is not None else default_theta(config, variant)
    cfg = variant.config_class(**kw, rope_parameters={"rope_type": "default", "rope_theta": float(theta)},
                               attention_dropout=0.0)
    cfg._attn_implementation = "sdpa"
    return cfg


def _strip(name: str) -> str:
    return name.removeprefix("model.")


def _prompts(path: Path) -> tuple[dict[str, str], str]:
    """The sentence-transformers prompts and default prompt (role), as published; Jina's values otherwise."""
    f = path / "config_sentence_transformers.json"
    prompts, default = dict(PROMPTS), DEFAULT_ROLE
    if f.is_file():
        try:
            st = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise EmbccError(f"{f} is not valid JSON ({e.msg})", "repair or re-download it") from e
        prompts.update({k: v for k, v in (st.get("prompts") or {}).items() if k in PROMPTS})
        default = st.get("default_prompt_name") or default
    return prompts, default if default in PROMPTS else DEFAULT_ROLE


def tasks_with_roles(names: list[str], prompts: dict[str, str], default: str) -> list[Task]:
    out = []
    for i, name in enumerate(names):
        roles = {r: prompts[r] for r in ROLE_TASKS.get(name, ("document",))}
        out.append(Task(name, i, roles.get(default, prompts["document"]), roles))
    return out


class JinaV5(Family):
    name = "jina-v5"
    layouts = ("base", "premerged")

    @classmethod
    def detect(cls, config: dict, path: Path) -> bool:
        if config.get("model_type") == "jina_embeddings_v5" or "JinaEmbeddingsV5Model" in (config.get("architectures") or []):
            return True
        # a pre-merged repo saved as the plain backbone: recognised by v5's task names, its name, or its prompts
        if config.get("model_type") not in ("qwen3", "eurobert"):
            return False
        if config.get("task_names") or "jina-embeddings-v5" in str(config.get("_name_or_path", "")):
            return True
        st = path / "config_sentence_transformers.json"
        try:
            return st.is_file() and json.loads(st.read_text()).get("prompts") == PROMPTS
        except json.JSONDecodeError:
            return False

    def load(self, path: Path) -> Bundle:
        config = read_config(path)
        variant = variant_of(config, path)
        cfg = native_config(config, variant)
        names = list(config.get("task_names") or TASKS)
        if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            raise EmbccError(f"{path}/config.json has malformed task_names {names}", "repair or re-download it")
        raw = {_strip(k): v for k, v in read_safetensors(weight_files(path)).items()}
        with torch.device("meta"):
            want = {k: v.shape for k, v in variant.base_class(cfg).state_dict().items()}
        weights = check_tensors(raw, want, ignored=IGNORED, where=path)
        lora = None
        adapters = path / "adapters"
        if adapters.is_dir():
            check_no_stray_adapters(adapters, {t: adapters / t for t in names}, where="config.json's task_names")
            lora = read_peft_folders({t: adapters / t for t in names}, _strip)
            check_lora(lora, weights, where=path)
        prompts, role = _prompts(path)
        premerged_task = None if lora is not None else ("retrieval" if "retrieval" in names else names[0])
        spec = ModelSpec(
            family=f"jina-v5-{variant.size}", pooling="last", dim=cfg.hidden_size,
            max_length=int(config.get("max_position_embeddings", 32768)), position="rope",
            tasks=tasks_with_roles(names, prompts, role),
            matryoshka_dims=[d for d in MATRYOSHKA if d <= cfg.hidden_size],
            rope_theta=default_theta(config, variant), task=premerged_task, role=role,
        )
        layout = "base" if lora is not None else "premerged"
        return Bundle(self, path, layout, config, spec, weights, lora, tokenizer_files(path), hash_checkpoint(path))

    def gguf_facts(self, bundle: Bundle) -> GgufFacts:
        return GGUF_FACTS[variant_of(bundle.config, bundle.path).size]

    def client_config(self, bundle: Bundle, spec: ModelSpec) -> dict:
        """The backbone's own transformers type and keys (`qwen3` for small, parsed by transformers >= 4.51;
        `eurobert` for nano, known to transformers 5 only), not `jina_embeddings_v5` (remote code only), with the
        legacy top-level `rope_theta` every release reads, set to the artifact's RoPE base."""
        variant = variant_of(bundle.config, bundle.path)
        cfg = native_config(bundle.config, variant, spec.rope_theta)
        return {"architectures": [variant.base_class.__name__], "model_type": cfg.model_type,
                **{k: getattr(cfg, k) for k in variant.config_keys if getattr(cfg, k, None) is not None},
                "rope_theta": float(spec.rope_theta)}

    def attention(self, bundle: Bundle, part: str) -> dict | None:
        """small: causal GQA (GroupQueryAttention, its q/k norms kept as ops); nano: bidirectional MHA."""
        variant = variant_of(bundle.config, bundle.path)
        c = native_config(bundle.config, variant)
        heads, kv = c.num_attention_heads, c.num_key_value_heads or c.num_attention_heads
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
        small = variant.size == "small"
        return {"kind": "gqa" if small else "mha", "heads": heads, "kv_heads": kv, "head_dim": head_dim,
                "causal": small}

    def backbone(self, bundle: Bundle, weights: dict[str, torch.Tensor], rope_theta: float | None = None) -> torch.nn.Module:
        variant = variant_of(bundle.config, bundle.path)
        cfg = native_config(bundle.config, variant, rope_theta)
        return build_backbone(lambda: variant.backbone(cfg), weights)
