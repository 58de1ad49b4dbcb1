"""Task adapters published as PEFT LoRA folders (one per task), read with PEFT's own code into a LoraSet.

Used by every family whose adapters are PEFT folders (v3 -hf: `<checkpoint>/retrieval_query/`; v5:
`<checkpoint>/adapters/retrieval/`). A family passes the folder of each task and a function that maps PEFT's
module path (after `base_model.model.`) to the reference model's module name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch

from embcc.core.errors import EmbccError
from embcc.core.lora import LoraSet, LoraWeights
from embcc.core.weights import shape_of

ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
UNSAFE_ADAPTER_WEIGHTS = ("adapter_model.bin",)


def read_peft_folders(
    folders: dict[str, Path], rename: Callable[[str], str] = lambda m: m
) -> LoraSet:
    """Read one PEFT LoRA folder per task (in task-id order) and stack them; scaling alpha/r folded into B."""
    from peft import LoraConfig
    from peft.utils import load_peft_weights

    per_task: list[dict[str, LoraWeights]] = []
    for task, folder in folders.items():
        if not (folder / ADAPTER_CONFIG).is_file():
            raise EmbccError(f"adapter folder {folder} for task {task} has no {ADAPTER_CONFIG}",
                             "copy every adapter file published with the model")
        if not (folder / ADAPTER_WEIGHTS).is_file():
            unsafe = [n for n in UNSAFE_ADAPTER_WEIGHTS if (folder / n).is_file()]
            raise EmbccError(
                f"adapter folder {folder} has no {ADAPTER_WEIGHTS}" + (f" (only {unsafe[0]}, which embcc never unpickles)" if unsafe else ""),
                "copy the adapter weights (safetensors only)")
        try:
            cfg = LoraConfig.from_pretrained(str(folder))
        except Exception as e:  # PEFT raises assorted errors for bad or foreign configs
            raise EmbccError(f"{folder}/{ADAPTER_CONFIG} is not a PEFT LoRA config ({e})", "re-download the adapter") from e
        if getattr(cfg, "use_dora", False) or getattr(cfg, "rank_pattern", None) or getattr(cfg, "alpha_pattern", None):
            raise EmbccError(f"{folder}: DoRA or per-module rank/alpha patterns are not supported",
                             "use plain LoRA adapters as Jina publishes them")
        scaling = cfg.lora_alpha / (cfg.r ** 0.5 if cfg.use_rslora else cfg.r)
        try:
            state = load_peft_weights(str(folder), device="cpu")
        except Exception as e:  # safetensors' own errors for truncated or corrupt files
            raise EmbccError(f"{folder}/{ADAPTER_WEIGHTS} is not a readable safetensors file ({e})", "re-download the adapter") from e
        per_task.append(peft_modules(state, scaling, rename, where=folder))
    tasks = list(folders)
    names = set(per_task[0])
    for task, mods in zip(tasks, per_task):
        if set(mods) != names:
            raise EmbccError(f"adapter {task} adapts other modules than adapter {tasks[0]}", "all task adapters must share targets")
    for m in sorted(names):
        shapes = {(tuple(p[m].A.shape), tuple(p[m].B.shape)) for p in per_task}
        if len(shapes) > 1:
            raise EmbccError(f"the task adapters of {m} have different shapes", "all task adapters must belong to one base model")
    modules = {
        m: LoraWeights(per_task[0][m].kind, torch.stack([p[m].A for p in per_task]), torch.stack([p[m].B for p in per_task]))
        for m in sorted(names)
    }
    return LoraSet(tasks, modules)


def peft_modules(
    state: dict[str, torch.Tensor], scaling: float, rename: Callable[[str], str], *, where: Path
) -> dict[str, LoraWeights]:
    """PEFT tensors of one adapter -> {reference module: LoraWeights} in the stacked convention, scaling in B."""
    a: dict[str, torch.Tensor] = {}
    b: dict[str, torch.Tensor] = {}
    emb: set[str] = set()
    for key, value in state.items():
        m = re.match(r"^(.*)\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B)(\.[A-Za-z_]+)?(\.weight)?$", key)
        if m is None:
            raise EmbccError(f"{where}: unexpected adapter tensor {key}", "only PEFT LoRA adapters are supported")
        module = rename(m.group(1).removeprefix("base_model.model."))
        (a if m.group(2).endswith("A") else b)[module] = value.float()
        if "embedding" in m.group(2):
            emb.add(module)
    if set(a) != set(b):
        raise EmbccError(f"{where}: adapter of {sorted(set(a) ^ set(b))[0]} lacks lora_A or lora_B", "re-download the adapter")
    out = {}
    for module in a:
        if module in emb:  # PEFT: delta = (B @ A).T with A [r, vocab], B [dim, r]
            out[module] = LoraWeights("embedding", a[module].T.contiguous(), (b[module].T * scaling).contiguous())
        else:
            out[module] = LoraWeights("linear", a[module], b[module] * scaling)
    return out


def check_lora(lora: LoraSet, weights: dict[str, torch.Tensor], *, where: Path) -> None:
    """Adapters must sit on modules the model has, with shapes that fit the base weight."""
    for module, w in lora.modules.items():
        if f"{module}.weight" not in weights:
            raise EmbccError(f"{where}: adapter for {module}, which the model does not have", "the adapters belong to another model")
        base = shape_of(weights, f"{module}.weight")  # the shape only: LazyWeights reads no data for it
        if w.A.ndim != 3 or w.B.ndim != 3 or len(base) != 2:
            fits = False
        elif w.kind == "linear":
            fits = w.A.shape[2] == base[1] and w.B.shape[1] == base[0] and w.A.shape[1] == w.B.shape[2]
        else:
            fits = w.A.shape[1] == base[0] and w.B.shape[2] == base[1] and w.A.shape[2] == w.B.shape[1]
        if not fits:
            raise EmbccError(
                f"{where}: adapter of {module} has shapes {list(w.A.shape)}/{list(w.B.shape)} that do not fit "
                f"weight {list(base)}",
                "the adapters were trained for a different base model",
            )


def check_no_stray_adapters(root: Path, folders: dict[str, Path], *, where: str) -> None:
    """Refuse an adapter folder (a directory under `root` holding adapter_config.json) for a task that config.json
    does not name: exporting without it would silently drop a task the checkpoint ships."""
    if not root.is_dir():
        return
    known = {f.resolve() for f in folders.values()}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and (p / ADAPTER_CONFIG).is_file()):
        if d.resolve() not in known:
            raise EmbccError(f"{d} holds an adapter for task {d.name!r}, which {where} does not name",
                             f"add the task to {where}, or remove the folder")
