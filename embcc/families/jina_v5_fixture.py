"""Random-weight jina-embeddings-v5 checkpoints in the published layout.

The backbone is saved by transformers itself (`save_pretrained` of Qwen3Model / EuroBertModel, bfloat16), the
adapters by PEFT itself (a LoraConfig r=32 alpha=32 over q,k,v,o,gate,up,down; `save_pretrained` into
`adapters/{task}`), the tokenizer is a small trained byte-level BPE of the published kind, and config.json
carries `model_type` "jina_embeddings_v5", `task_names` and the legacy top-level `rope_theta`.
The `premerged` layout is the same checkpoint with the retrieval adapter merged in and no `adapters/`.
Weights are scaled so attention is far from uniform (q/k larger than an initializer would make them): with
random weights that attend uniformly, RoPE (and so --rope-theta) would barely change the vectors.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from embcc.families.base import write_json, write_st_modules
from embcc.families.fixture_bpe import write_llama3_bpe, write_qwen2_bpe
from embcc.families.jina_v5 import LORA_ALPHA, LORA_RANK, LORA_TARGETS, PROMPTS, SIZES, TASKS, Variant


def native(variant: Variant, size: str) -> tuple[object, dict]:
    """The backbone config object and the published config.json for a fixture size."""
    layers, hidden, heads, kv, head_dim, inter, vocab, bpe = SIZES[(variant.size, size)]
    common = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                  num_attention_heads=heads, num_key_value_heads=kv, head_dim=head_dim, hidden_act="silu",
                  max_position_embeddings=32768, attention_bias=False)
    if variant.size == "small":
        extra = dict(rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=bpe, eos_token_id=bpe,
                     use_sliding_window=False, sliding_window=None, max_window_layers=layers)
    else:
        extra = dict(rms_norm_eps=1e-5, tie_word_embeddings=False, mlp_bias=False, bos_token_id=bpe,
                     eos_token_id=bpe + 1, pad_token_id=bpe + 1, mask_token_id=bpe + 2)
    theta = variant.default_theta
    cfg = variant.config_class(**common, **extra, rope_parameters={"rope_type": "default", "rope_theta": theta})
    published = {
        "architectures": ["JinaEmbeddingsV5Model"],
        "auto_map": {"AutoConfig": "configuration_jina_embeddings_v5.JinaEmbeddingsV5Config",
                     "AutoModel": "modeling_jina_embeddings_v5.JinaEmbeddingsV5Model"},
        "model_type": "jina_embeddings_v5",
        **common, **extra,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "rope_scaling": None,
        "rope_theta": theta,  # legacy key (transformers 4.5x): the inference value
        "task_names": list(TASKS),
        "torch_dtype": "bfloat16",
        "transformers_version": "4.57.1",
        "use_cache": variant.size == "small",
    }
    if variant.size == "small":
        published["layer_types"] = ["full_attention"] * layers
    else:
        published.update(classifier_pooling="late", pretraining_tp=1)
    return cfg, dict(sorted(published.items()))


def random_state(model: torch.nn.Module, g: torch.Generator) -> dict[str, torch.Tensor]:
    """bfloat16-representable random weights: norms near 1, Linear ~ N(0, 1/in), q/k scaled up."""
    out = {}
    for k, v in model.state_dict().items():
        if k.endswith("norm.weight"):
            w = 1.0 + 0.1 * torch.randn(v.shape, generator=g)
        elif k == "embed_tokens.weight":
            w = torch.randn(v.shape, generator=g)
        else:
            w = torch.randn(v.shape, generator=g) / v.shape[-1] ** 0.5
            if ".q_proj." in k or ".k_proj." in k:
                w = w * 2.0
        out[k] = w.to(torch.bfloat16).float()
    return out


def random_adapters(model: torch.nn.Module, g: torch.Generator) -> list[dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Per task: {module: (A [r, in], B [out, r])}, bfloat16-representable, delta about 0.3 of the weight."""
    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in LORA_TARGETS]
    out = []
    for _ in TASKS:
        per = {}
        for n, m in targets:
            a = torch.randn(LORA_RANK, m.in_features, generator=g) / m.in_features ** 0.5
            b = torch.randn(m.out_features, LORA_RANK, generator=g) * 0.3 / LORA_RANK ** 0.5
            per[n] = (a.to(torch.bfloat16).float(), b.to(torch.bfloat16).float())
        out.append(per)
    return out


def write(variant: Variant, out: Path, *, size: str, layout: str, seed: int) -> None:
    from embcc.errors import EmbccError

    if layout not in ("base", "premerged"):
        raise EmbccError(f"unknown layout {layout!r} for jina-v5-{variant.size}", "choose one of: base, premerged")
    if (variant.size, size) not in SIZES:
        raise EmbccError(f"unknown fixture size {size!r}", "choose tiny or full")
    cfg, published = native(variant, size)
    bpe = SIZES[(variant.size, size)][7]
    if variant.size == "small":
        write_qwen2_bpe(out, bpe_size=bpe)
    else:
        write_llama3_bpe(out, bpe_size=bpe)
    g = torch.Generator().manual_seed(seed)
    model = variant.base_class(cfg)
    model.load_state_dict(random_state(model, g))
    adapters = random_adapters(model, g)
    if layout == "premerged":
        with torch.no_grad():
            for module, (a, b) in adapters[TASKS.index("retrieval")].items():
                w = model.get_submodule(module).weight
                w.copy_((w.double() + (b.double() @ a.double()) * (LORA_ALPHA / LORA_RANK)).float())
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.to(torch.bfloat16).save_pretrained(str(out), safe_serialization=True)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    model.float()
    write_json(out / "config.json", published)
    if layout == "base":
        write_peft_adapters(model, adapters, out / "adapters", variant.repo)
    write_sentence_transformers(out, cfg.hidden_size)


def write_peft_adapters(model: torch.nn.Module, adapters: list[dict], where: Path, repo: str) -> None:
    """One folder per task, written by PEFT's own save_pretrained from a LoraConfig over the reference module."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, lora_dropout=0.1, target_modules=list(LORA_TARGETS),
                        bias="none", task_type="FEATURE_EXTRACTION")
    with warnings.catch_warnings():  # PEFT calls a transformers method that transformers deprecates
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, config)
    peft_model.peft_config["default"].base_model_name_or_path = repo
    base = peft_model.base_model.model
    for task, per in zip(TASKS, adapters):
        with torch.no_grad():
            for module, (a, b) in per.items():
                layer = base.get_submodule(module)
                layer.lora_A["default"].weight.data = a.to(torch.bfloat16)
                layer.lora_B["default"].weight.data = b.to(torch.bfloat16)
        peft_model.save_pretrained(str(where / task), save_embedding_layers=False)


def write_sentence_transformers(out: Path, dim: int) -> None:
    write_st_modules(out, dim, {
        "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": True, "include_prompt": True,
    })
    write_json(out / "config_sentence_transformers.json", {
        "prompts": dict(PROMPTS), "default_prompt_name": "document", "similarity_fn_name": "cosine",
    })
