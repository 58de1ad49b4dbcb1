"""jina-embeddings-v3 as transformers users run it: JinaEmbeddingsV3Model + PEFT task adapters, unmerged.

- `-hf` layout (model_type "jina_embeddings_v3"): `JinaEmbeddingsV3Model.from_pretrained(ckpt)` (its conversion
  mapping takes Jina's module names as well as the native ones), then `PeftModel.from_pretrained` on the first
  task's adapter folder and `load_adapter` for the rest; `set_adapter(task)` per call.
- original layout (model_type "xlm-roberta" + `lora_adaptations`): transformers' conversion mapping renames
  `emb_ln`, `encoder.layers`, `mixer.Wqkv` (split), `mixer.out_proj`, `norm1`, `norm2`, but knows neither the
  `.parametrizations.weight.original` suffix nor the stacked adapters. `convert_original` writes, in a scratch
  directory outside the checkpoint: a config.json in the -hf form, a model.safetensors whose header drops the
  suffix and the adapter tensors (tensor bytes copied as they are, no decoding), and one PEFT adapter folder per
  task (Linear: lora_A = A[t], lora_B = B[t]; Embedding: lora_embedding_A = A[t]^T, lora_embedding_B = B[t]^T;
  the fused Wqkv adapter becomes q/k/v adapters sharing A, B split by rows; r = lora_rank, alpha = lora_alpha,
  so PEFT scales by alpha / r as Jina's parametrization does). Then the same PEFT path as -hf.

Prompts: config.json `task_instructions` (else config_sentence_transformers.json `prompts`, else the model
card's). Pooling from modules.json / 1_Pooling (mean), then L2. task=None runs the base weights without a prompt
(adapters disabled), as Jina's own code does without a task. The pooler and its adapter are loaded (as
transformers does) and unused.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

import torch

from embcc.core.errors import EmbccError
from embcc.reference.base import ReferenceBase
from embcc.reference.common import (
    Scratch,
    from_pretrained,
    load_peft,
    read_json,
    read_optional_json,
    read_pooling,
    versions,
    weight_files,
)

TASKS = ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"]
# the model card's instructions, used only when the checkpoint names none (config.json task_instructions or
# config_sentence_transformers.json prompts)
MODEL_CARD_INSTRUCTIONS = {
    "retrieval.query": "Represent the query for retrieving evidence documents: ",
    "retrieval.passage": "Represent the document for retrieval: ",
}
PARAM = ".parametrizations.weight.original"
LORA = re.compile(r"^(?P<module>.+)\.parametrizations\.weight\.0\.lora_(?P<ab>[AB])$")
# Jina's original module path (after `roberta.`) -> JinaEmbeddingsV3Model's, for the adapters only: the base
# weights keep Jina's names and transformers' own conversion mapping renames them.
PEFT_MODULES = [
    (re.compile(r"^encoder\.layers\.(\d+)\.mixer\.Wqkv$"), r"layers.\1.self_attn.{qkv}_proj"),
    (re.compile(r"^encoder\.layers\.(\d+)\.mixer\.out_proj$"), r"layers.\1.self_attn.o_proj"),
    (re.compile(r"^encoder\.layers\.(\d+)\.mlp\.(fc1|fc2)$"), r"layers.\1.mlp.\2"),
    (re.compile(r"^(embeddings\.(?:word|token_type)_embeddings|pooler\.dense)$"), r"\1"),
]
_NOT_FOR_TRANSFORMERS = ("auto_map", "architectures", "model_type", "_name_or_path")


def peft_folder_name(task: str) -> str:
    """The -hf repo's adapter folder (and PEFT adapter name) of a task: retrieval.query -> retrieval_query."""
    return task.replace(".", "_").replace("-", "_")


def _adapter_name(task: str) -> str:
    return task.replace(".", "_")  # PEFT adapter names become module names: no dots


# ---- the original layout, converted for transformers + PEFT -------------------------------------------------


def hf_config(config: dict, theta: float) -> dict:
    """The original config.json in the -hf form (model_type jina_embeddings_v3, rope_parameters)."""
    out = {k: v for k, v in config.items() if k not in _NOT_FOR_TRANSFORMERS}
    out.update(model_type="jina_embeddings_v3", architectures=["JinaEmbeddingsV3Model"],
               rope_parameters={"rope_type": "default", "rope_theta": float(theta)})
    return out


def _header(path: Path) -> tuple[int, dict]:
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise EmbccError(f"{path} is not a safetensors file (too short)", "re-download the weights")
        (n,) = struct.unpack("<Q", raw)
        try:
            return 8 + n, json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise EmbccError(f"{path} has a corrupt safetensors header ({e})", "re-download the weights") from e


def _copy_range(src, dst, offset: int, count: int) -> None:
    """Copy `count` bytes at `offset` of src to dst's position, in the kernel where it can."""
    if hasattr(os, "copy_file_range"):
        try:
            while count > 0:
                done = os.copy_file_range(src.fileno(), dst.fileno(), count, offset)
                if done == 0:
                    break
                offset, count = offset + done, count - done
            if count == 0:
                return
        except OSError:
            pass
    src.seek(offset)
    while count > 0:
        chunk = src.read(min(count, 64 << 20))
        if not chunk:
            raise EmbccError(f"{src.name} is truncated", "re-download the weights")
        dst.write(chunk)
        count -= len(chunk)


def rewrite_weights(src: Path, dst: Path, rename=None) -> list[str]:
    """dst: src's base tensors, `.parametrizations.weight.original` renamed to `.weight`, adapters left out;
    `rename(key)` maps each other key to its name in dst, or to None to leave it out (jina-clip-v2's towers).

    Only the header is new; each tensor's bytes are copied unchanged. Returns the adapter tensor names.
    """
    start, header = _header(src)
    meta = header.pop("__metadata__", None)
    adapters = [k for k in header if LORA.match(k)]
    rename = rename or (lambda k: k)
    kept = sorted((k for k in header if k not in adapters and rename(k) is not None),
                  key=lambda k: header[k]["data_offsets"][0])
    new: dict = {}
    pos = 0
    for key in kept:
        s, e = header[key]["data_offsets"]
        name = rename(key)
        name = name[: -len(PARAM)] + ".weight" if name.endswith(PARAM) else name
        new[name] = {"dtype": header[key]["dtype"], "shape": header[key]["shape"], "data_offsets": [pos, pos + e - s]}
        pos += e - s
    if meta is not None:
        new["__metadata__"] = meta
    blob = json.dumps(new, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        fo.write(struct.pack("<Q", len(blob)) + blob)
        fo.flush()
        for key in kept:
            s, e = header[key]["data_offsets"]
            _copy_range(fi, fo, start + s, e - s)
            fo.seek(0, os.SEEK_END)
    return adapters


def convert_original(ckpt: Path, config: dict, out: Path, theta: float) -> dict[str, dict[str, torch.Tensor]]:
    """Write the -hf form of an original-layout checkpoint into `out`; returns the stacked adapters by module.

    {jina module path (after `roberta.`): {"A": [T, ...], "B": [T, ...]}}; PEFT folders are written later, once
    the model shows which modules are Embeddings.
    """
    (out / "config.json").write_text(json.dumps(hf_config(config, theta), indent=2, sort_keys=True))
    files = weight_files(ckpt)
    adapter_keys: dict[Path, list[str]] = {}
    for f in files:
        adapter_keys[f] = rewrite_weights(f, out / f.name)
    index = ckpt / "model.safetensors.index.json"
    if index.is_file():
        idx = read_json(index)
        idx["weight_map"] = {(k[: -len(PARAM)] + ".weight" if k.endswith(PARAM) else k): v
                             for k, v in idx["weight_map"].items() if not LORA.match(k)}
        (out / index.name).write_text(json.dumps(idx, indent=2))
    from safetensors import safe_open

    stacked: dict[str, dict[str, torch.Tensor]] = {}
    for f, keys in adapter_keys.items():
        with safe_open(str(f), framework="pt") as h:
            for key in keys:
                m = LORA.match(key)
                assert m is not None
                stacked.setdefault(m["module"].removeprefix("roberta."), {})[m["ab"]] = h.get_tensor(key)
    for module, ab in stacked.items():
        if set(ab) != {"A", "B"}:
            raise EmbccError(f"{ckpt}: the adapter of {module} has only lora_{''.join(ab)}", "re-download the checkpoint")
    return stacked


def write_peft_folders(model: torch.nn.Module, stacked: dict[str, dict[str, torch.Tensor]], tasks: list[str],
                       rank: int, alpha: float, out: Path, where: Path) -> dict[str, Path]:
    """One PEFT LoRA folder per task in `out`, key names of `model`'s own modules; {task: folder}."""
    from peft import LoraConfig
    from safetensors.torch import save_file

    per_task: list[dict[str, torch.Tensor]] = [{} for _ in tasks]
    targets: list[str] = []
    for module, ab in sorted(stacked.items()):
        a, b = ab["A"], ab["B"]
        if a.ndim != 3 or b.ndim != 3 or a.shape[0] != len(tasks) or b.shape[0] != len(tasks):
            raise EmbccError(f"{where}: the adapter of {module} stacks {a.shape[0]} tasks, but lora_adaptations "
                             f"names {len(tasks)}", "the config.json does not belong to these weights")
        native = _peft_module(module, where)
        parts = [native.format(qkv=p) for p in "qkv"] if "{qkv}" in native else [native]
        for i, name in enumerate(parts):
            try:
                layer = model.get_submodule(name)
            except AttributeError:
                raise EmbccError(f"{where}: adapter for {module}, which JinaEmbeddingsV3Model has no {name} for",
                                 "the adapters belong to another model") from None
            targets.append(name)
            for t in range(len(tasks)):
                key = f"base_model.model.{name}"
                if isinstance(layer, torch.nn.Embedding):  # Jina: W + A @ B, A [vocab, r], B [r, dim]
                    _fits(a[t].shape, (layer.num_embeddings, rank), b[t].shape, (rank, layer.embedding_dim), module, where)
                    per_task[t][f"{key}.lora_embedding_A"] = a[t].T.contiguous()
                    per_task[t][f"{key}.lora_embedding_B"] = b[t].T.contiguous()
                elif isinstance(layer, torch.nn.Linear):  # Jina: W + B @ A, A [r, in], B [out, r]
                    rows = b[t].shape[0] // len(parts)
                    bt = b[t][i * rows : (i + 1) * rows]
                    _fits(a[t].shape, (rank, layer.in_features), bt.shape, (layer.out_features, rank), module, where)
                    per_task[t][f"{key}.lora_A.weight"] = a[t].clone()  # q, k, v share A: one copy each
                    per_task[t][f"{key}.lora_B.weight"] = bt.contiguous()
                else:
                    raise EmbccError(f"{where}: adapter on {module}, which is neither Linear nor Embedding",
                                     "the adapters belong to another model")
    folders = {}
    for t, task in enumerate(tasks):
        folder = out / "adapters" / peft_folder_name(task)
        folder.mkdir(parents=True)
        LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=sorted(set(targets)),
                   bias="none").save_pretrained(str(folder))
        save_file(per_task[t], str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
        folders[task] = folder
    return folders


def _peft_module(module: str, where: Path) -> str:
    for pattern, target in PEFT_MODULES:
        if pattern.match(module):
            return pattern.sub(target, module)
    raise EmbccError(f"{where}: adapter on {module}, a module the published v3 layout does not adapt",
                     "pass a jina-embeddings-v3 checkpoint in its published layout")


def _fits(a: torch.Size, want_a: tuple, b: torch.Size, want_b: tuple, module: str, where: Path) -> None:
    if tuple(a) != want_a or tuple(b) != want_b:
        raise EmbccError(f"{where}: the adapter of {module} has shapes {list(a)}/{list(b)}, the model wants "
                         f"{list(want_a)}/{list(want_b)} (lora_rank from config.json)",
                         "the adapters or config.json belong to another model")


# ---- the reference -----------------------------------------------------------------------------------------


def find_peft_folders(ckpt: Path, tasks: list[str]) -> dict[str, Path]:
    """The -hf layout's adapter folder per task ({} when the checkpoint ships none)."""
    found = {}
    for task in tasks:
        for folder in (ckpt / peft_folder_name(task), ckpt / "adapters" / task, ckpt / task):
            if (folder / "adapter_config.json").is_file():
                found[task] = folder
                break
    if found and len(found) != len(tasks):
        missing = next(t for t in tasks if t not in found)
        raise EmbccError(f"{ckpt} has no adapter folder {peft_folder_name(missing)}/ for task {missing}",
                         "copy every adapter folder published with the model")
    for task, folder in found.items():
        if not (folder / "adapter_model.safetensors").is_file():
            raise EmbccError(f"{folder} has no adapter_model.safetensors for task {task}",
                             "copy the adapter weights (safetensors only; pickled .bin files are never loaded)")
    return found


class V3Reference(ReferenceBase):
    family = "jina-embeddings-v3"

    def __init__(self, ckpt: Path, config: dict, layout: str, rope_theta: float | None):
        from transformers import JinaEmbeddingsV3Config, JinaEmbeddingsV3Model

        super().__init__(ckpt, config, read_pooling(ckpt, "mean"))
        self.layout = layout
        self.scratch: Scratch | None = None
        try:
            if layout == "original":
                if config.get("position_embedding_type", "rotary") != "rotary":
                    raise EmbccError(f"{ckpt} has {config['position_embedding_type']} positions, not v3's rotary",
                                     "pass a jina-embeddings-v3 checkpoint")
                self.scratch = Scratch()
                own = float(config.get("rotary_emb_base", 10000.0))  # Jina's config class default
                stacked = convert_original(ckpt, config, self.scratch.path, own)
                model_dir = self.scratch.path
                tasks = list(config.get("lora_adaptations") or [])
                if stacked and not tasks:
                    raise EmbccError(f"{ckpt}/config.json has adapters but no lora_adaptations",
                                     "repair or re-download config.json")
            else:
                stacked, model_dir = {}, ckpt
                tasks = list(config.get("lora_adaptations") or TASKS)
            cfg = JinaEmbeddingsV3Config.from_pretrained(str(model_dir))
            if rope_theta is not None:
                cfg.rope_parameters = {**(cfg.rope_parameters or {"rope_type": "default"}), "rope_theta": float(rope_theta)}
            # the pooler is built and loaded as transformers does (add_pooling_layer=True) and never used
            model, self.unexpected = from_pretrained(JinaEmbeddingsV3Model, model_dir, cfg, ckpt,
                                                     ignore_missing=("pooler.",))
            if layout == "original":
                if stacked:
                    rank, alpha = int(config.get("lora_rank", 4)), float(config.get("lora_alpha", 1))
                    folders = write_peft_folders(model, stacked, tasks, rank, alpha, model_dir, ckpt)
                else:
                    folders, tasks = {}, []
            else:
                folders = find_peft_folders(ckpt, tasks)
                if not folders:
                    tasks = []
            self.tasks = tasks
            self.roles, self.default_role = {}, None
            self.dim = int(cfg.hidden_size)
            self.theta = float(cfg.rope_parameters["rope_theta"])
            self.folders = folders
            self.model: torch.nn.Module = model
            if folders:
                self.model = load_peft(model, folders, {t: _adapter_name(t) for t in tasks})
            self.instructions, self.prompt_source = _instructions(ckpt, config, tasks)
        except BaseException:
            self._release()
            raise

    def _states(self, input_ids: torch.Tensor, mask: torch.Tensor, task: str | None) -> torch.Tensor:
        if not self.folders:
            return self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        if task is None:
            with self.model.disable_adapter():
                return self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        self.model.set_adapter(_adapter_name(task))
        return self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state

    def describe(self) -> dict:
        v = versions()
        if self.layout == "original":
            layout = ("v3 original (roberta., parametrizations, stacked LoRA): converted in a scratch directory "
                      "to the -hf form (config.json with rope_parameters, model.safetensors with the "
                      ".parametrizations.weight.original suffix dropped and adapters left out, one PEFT folder per "
                      "task); transformers' conversion mapping renames the rest")
        else:
            layout = "v3 -hf (model_type jina_embeddings_v3), loaded as published"
        adapters = ("PEFT LoraModel, unmerged, one adapter per task, set_adapter("
                    + ", ".join(repr(_adapter_name(t)) for t in self.tasks) + ") per call; task=None disables them"
                    if self.folders else "none (the checkpoint ships no adapters)")
        notes = ["an independent path: transformers + PEFT from the checkpoint's files, no embcc loader"]
        own = self.config.get("rotary_emb_base")
        if self.layout == "hf" and own is not None and float(own) != self.theta:
            notes.append(f"config.json rotary_emb_base {own} is not read by transformers (rope_parameters decides)")
        if self.unexpected:
            notes.append(f"ignored as transformers ignores them: {', '.join(self.unexpected[:6])}"
                         + (" ..." if len(self.unexpected) > 6 else ""))
        return {
            "family": self.family, "library": f"transformers {v['transformers']} + peft {v['peft']}",
            "class": "JinaEmbeddingsV3Model", "torch": v["torch"], "dtype": "float32", "attention": "sdpa",
            "layout": layout, "adapters": adapters, "rope_theta": self.theta, "pooling": self.pooling.source,
            "prompts": self.prompt_source, "tokenizer": self.tokens.describe(), "tasks": list(self.tasks),
            "notes": "; ".join(notes),
        }

    def _release(self) -> None:
        self.model = None  # type: ignore[assignment]
        if self.scratch is not None:
            self.scratch.close()


def _instructions(ckpt: Path, config: dict, tasks: list[str]) -> tuple[dict[str, str], str]:
    ti = config.get("task_instructions")
    if isinstance(ti, dict):
        return {t: str(ti.get(t) or "") for t in tasks}, "config.json task_instructions"
    st = read_optional_json(ckpt / "config_sentence_transformers.json") or {}
    prompts = st.get("prompts") if isinstance(st, dict) else None
    if isinstance(prompts, dict) and any(t in prompts for t in tasks):
        return {t: str(prompts.get(t) or "") for t in tasks}, "config_sentence_transformers.json prompts"
    return ({t: MODEL_CARD_INSTRUCTIONS.get(t, "") for t in tasks},
            "Jina's model-card instructions (the checkpoint names no task instructions)")
