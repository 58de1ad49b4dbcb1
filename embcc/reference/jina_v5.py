"""jina-embeddings-v5-text small / nano as transformers users run them: Qwen3Model / EuroBertModel + PEFT.

transformers knows no model_type "jina_embeddings_v5": the backbone's config class (Qwen3Config for small,
EuroBertConfig for nano) is built from the config dict, then `Qwen3Model.from_pretrained(ckpt, config=cfg)` /
`EuroBertModel.from_pretrained(...)` loads the weights (`layers.*`, with or without `model.`), float32, SDPA.
Base repos: `PeftModel.from_pretrained` on `adapters/{task}` for the first task in `task_names`, `load_adapter`
for the rest, unmerged, `set_adapter(task)` per call. Pre-merged repos (no `adapters/`): the weights alone; the
task only chooses the prompt. Prompts by role from config_sentence_transformers.json `prompts`
("Query: " for retrieval queries, "Document: " otherwise; default `default_prompt_name`). Pooling from
modules.json / 1_Pooling (last token: the EOS the tokenizer appends; right padding, so the last real token),
then L2. RoPE theta: the config's legacy top-level `rope_theta` (or `rope_parameters`), unless overridden.
"""

from __future__ import annotations

from pathlib import Path

import torch

from embcc.core.errors import EmbccError
from embcc.reference.base import ReferenceBase
from embcc.reference.common import (
    from_pretrained,
    load_peft,
    read_optional_json,
    read_pooling,
    tensor_names,
    versions,
)

TASKS = ["retrieval", "text-matching", "classification", "clustering"]  # used only when config.json has none
QUERY_TASKS = ("retrieval",)  # tasks whose inputs can be queries; every other task takes documents
PROMPTS = {"query": "Query: ", "document": "Document: "}  # Jina's values, when the checkpoint names none
# config keys only one backbone's config class writes
SMALL_KEYS = ("use_sliding_window", "max_window_layers", "sliding_window", "layer_types")
NANO_KEYS = ("mlp_bias", "mask_token_id", "classifier_pooling", "clf_pooling")
_NOT_CONFIG = ("model_type", "architectures", "auto_map", "transformers_version", "torch_dtype", "dtype",
               "_name_or_path", "task_names")


def size_of(config: dict, ckpt: Path) -> str:
    """"small" (Qwen3) or "nano" (EuroBERT): the config's own keys, else q/k norm tensors (Qwen3 only)."""
    if config.get("model_type") in ("qwen3", "eurobert"):
        return "small" if config["model_type"] == "qwen3" else "nano"
    small, nano = sum(k in config for k in SMALL_KEYS), sum(k in config for k in NANO_KEYS)
    if small != nano:
        return "small" if small > nano else "nano"
    return "small" if any(n.endswith("self_attn.q_norm.weight") for n in tensor_names(ckpt)) else "nano"


class V5Reference(ReferenceBase):
    def __init__(self, ckpt: Path, config: dict, rope_theta: float | None):
        from transformers import EuroBertConfig, EuroBertModel, Qwen3Config, Qwen3Model

        super().__init__(ckpt, config, read_pooling(ckpt, "last"))
        self.size = size_of(config, ckpt)
        self.family = f"jina-embeddings-v5-text-{self.size}"
        config_class, model_class = (Qwen3Config, Qwen3Model) if self.size == "small" else (EuroBertConfig, EuroBertModel)
        self.model_class = model_class.__name__
        try:
            cfg = config_class(**{k: v for k, v in config.items() if k not in _NOT_CONFIG})
        except (TypeError, ValueError) as e:
            raise EmbccError(f"{ckpt}/config.json is not a valid {config_class.__name__} ({e})",
                             "repair or re-download config.json") from e
        if rope_theta is not None:
            cfg.rope_parameters = {**(cfg.rope_parameters or {"rope_type": "default"}), "rope_theta": float(rope_theta)}
        self.theta = float(cfg.rope_parameters["rope_theta"])
        model, self.unexpected = from_pretrained(model_class, ckpt, cfg, ckpt)
        self.dim = int(cfg.hidden_size)
        names = config.get("task_names") or TASKS
        if not isinstance(names, list) or len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            raise EmbccError(f"{ckpt}/config.json has malformed task_names {names}", "repair or re-download it")
        self.tasks = list(names)
        self.roles = {t: (["query", "document"] if t in QUERY_TASKS else ["document"]) for t in self.tasks}
        self.prompts, self.default_role, self.prompt_source = _prompts(ckpt)
        self.model: torch.nn.Module = model
        self.premerged = not (ckpt / "adapters").is_dir()
        if not self.premerged:
            folders = {t: ckpt / "adapters" / t for t in self.tasks}
            for t, folder in folders.items():
                if not (folder / "adapter_config.json").is_file() or not (folder / "adapter_model.safetensors").is_file():
                    raise EmbccError(f"{folder} has no adapter_config.json + adapter_model.safetensors for task {t}",
                                     "copy every adapter published with the model (safetensors only)")
            self.model = load_peft(model, folders, {t: _adapter_name(t) for t in self.tasks})

    def _check(self, task: str | None, role: str | None) -> str | None:
        if task is None:
            raise EmbccError(f"{self.family} needs a task (it picks the adapter and the prompt)",
                             f"pass task= one of: {', '.join(self.tasks)}")
        return super()._check(task, role)

    def _prompt(self, task: str | None, role: str | None) -> str:
        return self.prompts[role or "document"]

    def _states(self, input_ids: torch.Tensor, mask: torch.Tensor, task: str | None) -> torch.Tensor:
        kw = {"use_cache": False} if self.size == "small" else {}
        if not self.premerged:
            self.model.set_adapter(_adapter_name(task or ""))
        return self.model(input_ids=input_ids, attention_mask=mask, **kw).last_hidden_state

    def describe(self) -> dict:
        v = versions()
        if self.premerged:
            adapters = "none: pre-merged weights (no adapters/); the task only chooses the prompt"
        else:
            adapters = ("PEFT LoraModel, unmerged, adapters/{task} per task, set_adapter("
                        + ", ".join(repr(_adapter_name(t)) for t in self.tasks) + ") per call")
        notes = [f"transformers has no jina_embeddings_v5: {self.model_class.replace('Model', 'Config')} built from "
                 "config.json; an independent path (transformers + PEFT from the checkpoint's files)"]
        if self.unexpected:
            notes.append(f"ignored as transformers ignores them: {', '.join(self.unexpected[:6])}")
        return {
            "family": self.family, "library": f"transformers {v['transformers']} + peft {v['peft']}",
            "class": self.model_class, "torch": v["torch"], "dtype": "float32", "attention": "sdpa",
            "layout": "v5 pre-merged" if self.premerged else "v5 base (adapters/{task} PEFT folders)",
            "adapters": adapters, "rope_theta": self.theta, "pooling": self.pooling.source,
            "prompts": self.prompt_source, "default_role": self.default_role,
            "tokenizer": self.tokens.describe(), "tasks": list(self.tasks), "notes": "; ".join(notes),
        }

    def _release(self) -> None:
        self.model = None  # type: ignore[assignment]


def _adapter_name(task: str) -> str:
    return task.replace(".", "_")


def _prompts(ckpt: Path) -> tuple[dict[str, str], str, str]:
    st = read_optional_json(ckpt / "config_sentence_transformers.json")
    if not isinstance(st, dict) or not isinstance(st.get("prompts"), dict):
        return dict(PROMPTS), "document", "Jina's documented prompts (no config_sentence_transformers.json prompts)"
    given = {k: str(v) for k, v in st["prompts"].items() if k in PROMPTS}
    prompts = {**PROMPTS, **given}
    default = st.get("default_prompt_name")
    default = default if default in prompts else "document"
    missing = [k for k in PROMPTS if k not in given]
    source = "config_sentence_transformers.json prompts" + (f" (Jina's value for {', '.join(missing)})" if missing else "")
    return prompts, default, source
