"""The two published jina-embeddings-v3 layouts, read into one form: native JinaEmbeddingsV3Model weight
names plus a LoraSet with alpha/rank folded into B (embcc.fixtures.jina_v3 writes them)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from embcc.core.errors import EmbccError
from embcc.core.lora import LoraSet, LoraWeights
from embcc.families.peft_adapters import check_lora as check_lora  # re-exported for jina_v3
from embcc.families.peft_adapters import check_no_stray_adapters, read_peft_folders

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
    check_no_stray_adapters(path, folders, where="config.json's lora_adaptations")
    if not present:
        return None
    missing = [t for t in tasks if t not in present]
    if missing:
        raise EmbccError(f"{path} has no adapter folder {task_folder(missing[0])}/ for task {missing[0]}",
                         "copy every adapter folder published with the model")
    lora = read_peft_folders(present, _native_module)
    return LoraSet(lora.task_names, _split_qkv_lora(lora.modules))
