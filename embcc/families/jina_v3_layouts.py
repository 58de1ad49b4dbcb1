"""The two published jina-embeddings-v3 layouts, read into (and written from) one form:
native JinaEmbeddingsV3Model weight names plus a LoraSet with alpha/rank folded into B.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from transformers import JinaEmbeddingsV3Config

from embcc.errors import EmbccError
from embcc.export.lora import LoraSet, LoraWeights
from embcc.families.base import write_json, write_st_modules
from embcc.families.peft_adapters import check_lora as check_lora  # re-exported for jina_v3
from embcc.families.peft_adapters import read_peft_folders

# Jina's original module names -> transformers' native ones (module paths, without the weight suffix).
ORIGINAL_TO_NATIVE = [
    (r"^emb_ln$", "embeddings.LayerNorm"),
    (r"^encoder\.layers\.(\d+)\.mixer\.Wqkv$", r"layers.\1.self_attn.qkv"),
    (r"^encoder\.layers\.(\d+)\.mixer\.out_proj$", r"layers.\1.self_attn.o_proj"),
    (r"^encoder\.layers\.(\d+)\.norm1$", r"layers.\1.post_attention_layernorm"),
    (r"^encoder\.layers\.(\d+)\.norm2$", r"layers.\1.post_mlp_layernorm"),
    (r"^encoder\.layers\.(\d+)\.mlp\.(fc1|fc2)$", r"layers.\1.mlp.\2"),
    (r"^encoder\.layers\.(\d+)\.(.+)$", r"layers.\1.\2"),  # hybrid names (already-split q/k/v under encoder.)
]
PARAM = ".parametrizations.weight.original"
LORA_A, LORA_B = ".parametrizations.weight.0.lora_A", ".parametrizations.weight.0.lora_B"


def _native_module(module: str) -> str:
    module = module.removeprefix("base_model.model.").removeprefix("roberta.")
    for pat, rep in ORIGINAL_TO_NATIVE:
        if re.match(pat, module):
            return re.sub(pat, rep, module)
    return module


def _is_embedding(module: str) -> bool:
    return module.startswith("embeddings.") and module.endswith("_embeddings")


def from_original(
    raw: dict[str, torch.Tensor], tasks: list[str], scaling: float, *, where: Path
) -> tuple[dict[str, torch.Tensor], LoraSet | None]:
    """Rename an original-layout state dict, split the fused Wqkv, and stack the adapters as a LoraSet."""
    weights: dict[str, torch.Tensor] = {}
    lora_a: dict[str, torch.Tensor] = {}
    lora_b: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        key = key.removeprefix("roberta.")
        for suffix, store in ((LORA_A, lora_a), (LORA_B, lora_b)):
            if key.endswith(suffix):
                store[_native_module(key[: -len(suffix)])] = value.float()
                break
        else:
            if key.endswith(PARAM):
                module, leaf = key[: -len(PARAM)], "weight"
            else:
                module, _, leaf = key.rpartition(".")
            weights[f"{_native_module(module)}.{leaf}"] = value
    if set(lora_a) != set(lora_b):
        odd = sorted(set(lora_a) ^ set(lora_b))[0]
        raise EmbccError(f"{where}: adapter of {odd} has only one of lora_A/lora_B", "the checkpoint is incomplete; re-download it")
    modules: dict[str, LoraWeights] = {}
    for module, a in lora_a.items():
        b = lora_b[module]
        if a.ndim != 3 or b.ndim != 3 or a.shape[0] != len(tasks) or b.shape[0] != len(tasks):
            raise EmbccError(
                f"{where}: adapter of {module} stacks {a.shape[0]} tasks but lora_adaptations names {len(tasks)}",
                "the config.json does not belong to these weights",
            )
        if _is_embedding(module):
            modules[module] = LoraWeights("embedding", a, b * scaling)
        else:
            modules[module] = LoraWeights("linear", a, b * scaling)
    return _split_qkv(weights), (LoraSet(tasks, _split_qkv_lora(modules)) if modules else None)


def _split_qkv(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Split the fused attention input projection into q, k, v (as transformers' conversion does)."""
    for key in [k for k in weights if ".self_attn.qkv." in k]:
        for name, part in zip(("q_proj", "k_proj", "v_proj"), weights.pop(key).chunk(3, dim=0)):
            weights[key.replace(".qkv.", f".{name}.")] = part
    return weights


def _split_qkv_lora(modules: dict[str, LoraWeights]) -> dict[str, LoraWeights]:
    """A fused adapter's A is shared by q, k and v; its B splits by rows. The pooler's adapter is dropped."""
    for module in [m for m in modules if m.endswith(".self_attn.qkv")]:
        w = modules.pop(module)
        for name, b in zip(("q_proj", "k_proj", "v_proj"), w.B.chunk(3, dim=1)):
            modules[module.replace(".qkv", f".{name}")] = LoraWeights("linear", w.A, b.contiguous())
    return {m: w for m, w in modules.items() if not m.startswith("pooler.")}


def from_hf(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The -hf base weights: Jina's module names without parametrizations (or native names); renamed and split."""
    weights = {}
    for key, value in raw.items():
        if key.endswith(PARAM):
            key = key[: -len(PARAM)] + ".weight"
        module, _, leaf = key.rpartition(".")
        weights[f"{_native_module(module)}.{leaf}"] = value
    return _split_qkv(weights)


def task_folder(task: str) -> str:
    """-hf adapter folder name of a task: retrieval.query -> retrieval_query."""
    return task.replace(".", "_").replace("-", "_")


def read_peft_adapters(path: Path, tasks: list[str]) -> LoraSet | None:
    """One PEFT LoRA folder per task (`<checkpoint>/<task_folder>/`), read with PEFT's own loaders."""
    folders = {t: path / task_folder(t) for t in tasks}
    present = {t: f for t, f in folders.items() if (f / "adapter_config.json").is_file()}
    if not present:
        return None
    missing = [t for t in tasks if t not in present]
    if missing:
        raise EmbccError(f"{path} has no adapter folder {task_folder(missing[0])}/ for task {missing[0]}",
                         "copy every adapter folder published with the model")
    lora = read_peft_folders(present, _native_module)
    return LoraSet(lora.task_names, _split_qkv_lora(lora.modules))


def write_peft_adapters(out: Path, weights: dict[str, torch.Tensor], lora: LoraSet, *, alpha: float, rank: int) -> None:
    """One PEFT LoRA folder per task, as the -hf repo publishes them (tensors in bfloat16)."""
    from safetensors.torch import save_file

    for t, task in enumerate(lora.task_names):
        folder = out / task_folder(task)
        folder.mkdir()
        write_json(folder / "adapter_config.json", {
            "peft_type": "LORA", "base_model_name_or_path": None, "r": rank, "lora_alpha": alpha,
            "lora_dropout": 0.0,
            "target_modules": ["word_embeddings", "token_type_embeddings", "q_proj", "k_proj", "v_proj", "o_proj",
                               "fc1", "fc2", "dense"],
        })
        tensors = {}
        for module, w in lora.modules.items():
            p = f"base_model.model.{module}"
            if w.kind == "embedding":
                tensors[f"{p}.lora_embedding_A"] = w.A[t].T
                tensors[f"{p}.lora_embedding_B"] = w.B[t].T
            else:
                tensors[f"{p}.lora_A.weight"] = w.A[t]
                tensors[f"{p}.lora_B.weight"] = w.B[t]
        h = weights["embeddings.LayerNorm.weight"].shape[0]
        tensors["base_model.model.pooler.dense.lora_A.weight"] = torch.zeros(rank, h)
        tensors["base_model.model.pooler.dense.lora_B.weight"] = torch.zeros(h, rank)
        save_file({k: v.to(torch.bfloat16).contiguous() for k, v in tensors.items()}, str(folder / "adapter_model.safetensors"))


# ---- fixtures ------------------------------------------------------------------------------------------------


def random_weights(cfg: JinaEmbeddingsV3Config, tasks: list[str], *, rank: int, seed: int) -> tuple[dict[str, torch.Tensor], LoraSet]:
    """Native weights and unscaled stacked adapters on every Linear and Embedding, rounded to bfloat16."""
    from transformers import JinaEmbeddingsV3Model

    g = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in JinaEmbeddingsV3Model(cfg, add_pooling_layer=False).state_dict().items()}

    def rnd(*shape: int, std: float, mean: float = 0.0) -> torch.Tensor:
        return (mean + std * torch.randn(*shape, generator=g)).to(torch.bfloat16).float()

    weights = {}
    for k, s in shapes.items():
        if "LayerNorm" in k or "layernorm" in k:
            weights[k] = rnd(*s, std=0.05, mean=1.0 if k.endswith("weight") else 0.0)
        else:
            weights[k] = rnd(*s, std=0.02 if k.endswith("bias") else 0.05)
    modules = {}
    t = len(tasks)
    for k, s in shapes.items():
        module = k.removesuffix(".weight")
        if not k.endswith(".weight") or "LayerNorm" in k or "layernorm" in k:
            continue
        if _is_embedding(module):
            modules[module] = LoraWeights("embedding", rnd(t, s[0], rank, std=0.1), rnd(t, rank, s[1], std=0.1))
        else:
            modules[module] = LoraWeights("linear", rnd(t, rank, s[1], std=0.1), rnd(t, s[0], rank, std=0.1))
    for module in [m for m in modules if m.endswith(".q_proj")]:  # q, k, v come from one fused Wqkv adapter
        for other in ("k_proj", "v_proj"):
            name = module.replace("q_proj", other)
            modules[name] = LoraWeights("linear", modules[module].A, modules[name].B)
    return weights, LoraSet(list(tasks), modules)


def to_original(weights: dict[str, torch.Tensor], lora: LoraSet | None) -> dict[str, torch.Tensor]:
    """Native weights + unscaled adapters in Jina's original key layout (fused Wqkv, parametrizations).

    With `lora=None` this is the -hf base file: the same names without parametrizations or adapters.
    """
    native_to_original = [
        (r"^embeddings\.LayerNorm$", "emb_ln"),
        (r"^layers\.(\d+)\.self_attn\.qkv$", r"encoder.layers.\1.mixer.Wqkv"),
        (r"^layers\.(\d+)\.self_attn\.o_proj$", r"encoder.layers.\1.mixer.out_proj"),
        (r"^layers\.(\d+)\.post_attention_layernorm$", r"encoder.layers.\1.norm1"),
        (r"^layers\.(\d+)\.post_mlp_layernorm$", r"encoder.layers.\1.norm2"),
        (r"^layers\.(\d+)\.mlp\.(fc1|fc2)$", r"encoder.layers.\1.mlp.\2"),
    ]

    def orig(module: str) -> str:
        for pat, rep in native_to_original:
            if re.match(pat, module):
                return "roberta." + re.sub(pat, rep, module)
        return "roberta." + module

    w = dict(weights)
    mods = dict(lora.modules) if lora is not None else {}
    for i in sorted({int(m.group(1)) for k in w if (m := re.match(r"layers\.(\d+)\.", k))}):
        p = f"layers.{i}.self_attn"
        for leaf in ("weight", "bias"):
            w[f"{p}.qkv.{leaf}"] = torch.cat([w.pop(f"{p}.{n}.{leaf}") for n in ("q_proj", "k_proj", "v_proj")])
        if not mods:
            continue
        parts = [mods.pop(f"{p}.{n}") for n in ("q_proj", "k_proj", "v_proj")]
        mods[f"{p}.qkv"] = LoraWeights("linear", parts[0].A, torch.cat([x.B for x in parts], dim=1))
    out = {}
    for key, value in w.items():
        module, _, leaf = key.rpartition(".")
        if leaf == "weight" and module in mods:
            out[orig(module) + PARAM] = value
        else:
            out[f"{orig(module)}.{leaf}"] = value
    for module, lw in mods.items():
        out[orig(module) + LORA_A] = lw.A
        out[orig(module) + LORA_B] = lw.B
    # the published checkpoints also carry the (unused) pooler, in the original layout with its own adapters
    h = weights["embeddings.LayerNorm.weight"].shape[0]
    out["roberta.pooler.dense.bias"] = torch.zeros(h)
    if lora is None:
        out["roberta.pooler.dense.weight"] = torch.zeros(h, h)
        return out
    t, r = lora.modules["embeddings.word_embeddings"].A.shape[0], lora.rank()
    out["roberta.pooler.dense" + PARAM] = torch.zeros(h, h)
    out["roberta.pooler.dense" + LORA_A] = torch.zeros(t, r, h)
    out["roberta.pooler.dense" + LORA_B] = torch.zeros(t, h, r)
    return out


def hf_config(cfg: JinaEmbeddingsV3Config, tasks: list[str], instructions: dict, dims: list[int]) -> dict:
    """config.json of the -hf port: the original keys kept, model_type/architectures native, no auto_map."""
    config = original_config(cfg, tasks, instructions, dims)
    del config["auto_map"]
    config.update(architectures=["JinaEmbeddingsV3Model"], model_type="jina_embeddings_v3",
                  transformers_version="4.30.2")
    return dict(sorted(config.items()))


def original_config(cfg: JinaEmbeddingsV3Config, tasks: list[str], instructions: dict, dims: list[int]) -> dict:
    return {
        "_name_or_path": "jinaai/jina-embeddings-v3",
        "architectures": ["XLMRobertaModel"],
        "attention_probs_dropout_prob": 0.1,
        "auto_map": {
            "AutoConfig": "jinaai/xlm-roberta-flash-implementation--configuration_xlm_roberta.XLMRobertaFlashConfig",
            "AutoModel": "jinaai/xlm-roberta-flash-implementation--modeling_lora.XLMRobertaLoRA",
            "AutoModelForMaskedLM": "jinaai/xlm-roberta-flash-implementation--modeling_xlm_roberta.XLMRobertaForMaskedLM",
            "AutoModelForPreTraining": "jinaai/xlm-roberta-flash-implementation--modeling_xlm_roberta.XLMRobertaForPreTraining",
        },
        "bos_token_id": 0,
        "classifier_dropout": None,
        "emb_pooler": None,
        "eos_token_id": 2,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": cfg.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": cfg.intermediate_size,
        "layer_norm_eps": 1e-05,
        "load_trained_adapters": True,
        "lora_adaptations": list(tasks),
        "lora_alpha": 1,
        "lora_dropout_p": 0.0,
        "lora_main_params_trainable": False,
        "lora_rank": 4,
        "matryoshka_dimensions": dims,
        "max_position_embeddings": 8194,
        "model_type": "xlm-roberta",
        "num_attention_heads": cfg.num_attention_heads,
        "num_hidden_layers": cfg.num_hidden_layers,
        "output_past": True,
        "pad_token_id": 1,
        "position_embedding_type": "rotary",
        "rotary_emb_base": 20000.0,
        "task_instructions": dict(instructions),
        "torch_dtype": "bfloat16",
        "transformers_version": "4.43.4",
        "truncate_dim": None,
        "type_vocab_size": 1,
        "use_cache": True,
        "use_flash_attn": True,
        "use_reentrant": False,
        "vocab_size": cfg.vocab_size,
    }


def write_sentence_transformers(out: Path, dim: int, instructions: dict) -> None:
    write_st_modules(out, dim, {
        "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False, "include_prompt": True,
    }, names=("transformer", "pooler", "normalizer"), transformer="custom_st.Transformer")
    write_json(out / "config_sentence_transformers.json", {
        "prompts": {k: v for k, v in instructions.items()}, "default_prompt_name": None, "similarity_fn_name": "cosine",
    })
