"""The jina-embeddings-v4 reference: transformers' own Qwen2.5-VL and PEFT's own LoRA, from the checkpoint files.

Independent of embcc's export side (imports nothing of embcc.families, embcc.export or embcc.runtimes). What it
does, step by step, and where each step comes from:

- config: `Qwen2_5_VLConfig.from_pretrained(path)` (transformers' own parsing; no remote code);
- backbone: `Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=float32)`: transformers maps the
  old naming (`model.layers...`, `visual...`) itself; `multi_vector_projector` (which it does not know) is read
  with safetensors into an nn.Linear attached to the model, where Jina's JinaEmbeddingsV4Model has it;
- adapters: PEFT's `inject_adapter_in_model` with the published adapter_config.json, once per task, then PEFT's
  `set_peft_model_state_dict` with that task's tensors (Jina's per-task keys `...lora_A.<task>.weight` renamed to
  PEFT's `...lora_A.weight`); `set_adapter(task)` picks the task. PEFT applies LoRA unmerged, as Jina's
  MultiAdapterLinear does (base(x) + B(A(x)) * alpha / r);
- text: the tokenizer's own files (AutoTokenizer), Jina's prefixes (`Query: ` / `Passage: `, text-matching always
  `Query: `), padding "longest", truncation at min(max_length, 32768); positions from the model's own
  `get_rope_index` (as Jina's get_last_hidden_states computes them);
- images: transformers' `Qwen2VLImageProcessorPil` (the PIL path; the torchvision processor cannot be imported
  with the pinned CPU torch) with preprocessor_config.json, Jina's image prompt with `<|image_pad|>` repeated
  grid.prod() / merge^2 times (the Qwen2.5-VL processor's rule), splicing and 3-D positions by transformers'
  own `Qwen2_5_VLModel.forward`;
- outputs (Jina's code): single = mean of the last hidden state over the attention mask (images: over
  vision_start..vision_end inclusive), L2, optional Matryoshka slice + L2; multi = projector(last hidden state),
  L2 per token, times the mask, returned per input without the padded rows.

Differences from Jina's own run, on purpose: float32 throughout (Jina autocasts to bfloat16); the PIL image
processor (Jina's `use_fast=True` resizes with torchvision: pixel values differ slightly, grids are equal).
"""

from __future__ import annotations

import contextlib
import json
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embcc.core.errors import EmbccError
from embcc.reference.common import length_batches

PREFIX = {"query": "Query: ", "passage": "Passage: "}
IMAGE_PROMPT = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|>\n"
TEXT_MAX_LENGTH = 32768
_JINA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])\.(?P<task>[^.]+)\.weight$")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    import transformers

    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    bar = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        transformers.logging.set_verbosity(level)
        if bar:
            transformers.utils.logging.enable_progress_bar()


def _tensor(path: Path, name: str) -> torch.Tensor:
    """One tensor of the checkpoint's weights (single file or sharded with an index), with safetensors."""
    from safetensors import safe_open

    index = path / "model.safetensors.index.json"
    file = path / (json.loads(index.read_text())["weight_map"][name] if index.is_file() else "model.safetensors")
    with safe_open(str(file), framework="pt") as f:
        return f.get_tensor(name)


class JinaV4Reference:
    """jina-embeddings-v4 in float32 on CPU: encode(texts, task=, role=, ...), encode_images(images, task=)."""

    def __init__(self, path: str | Path, *, threads: int | None = None):
        from peft import LoraConfig
        from peft.functional import inject_adapter_in_model, set_peft_model_state_dict
        from safetensors import safe_open
        from transformers import AutoTokenizer, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        self.path = path = Path(path)
        if threads:
            torch.set_num_threads(threads)
        self.config = json.loads((path / "config.json").read_text())
        self.tasks = list(self.config["task_names"])
        with _quiet():
            cfg = Qwen2_5_VLConfig.from_pretrained(str(path))
            model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(path), config=cfg, dtype=torch.float32)
            self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        hidden = cfg.text_config.hidden_size
        dim = int(self.config.get("multi_vector_projector_dim", 128))
        projector = torch.nn.Linear(hidden, dim)
        with torch.no_grad():
            projector.weight.copy_(_tensor(path, "multi_vector_projector.weight").float())
            projector.bias.copy_(_tensor(path, "multi_vector_projector.bias").float())
        model.multi_vector_projector = projector
        adapters = path / "adapters"
        self.lora_config = LoraConfig.from_pretrained(str(adapters))
        with safe_open(str(adapters / "adapter_model.safetensors"), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
        per_task: dict[str, dict[str, torch.Tensor]] = {t: {} for t in self.tasks}
        for key, value in state.items():
            m = _JINA_KEY.match(key)
            if m is None or m["task"] not in per_task:
                raise EmbccError(f"{adapters}: adapter tensor {key} is not Jina's per-task layout",
                                 "expect base_model.model.<module>.lora_A.<task>.weight")
            per_task[m["task"]][f"{m['module']}.lora_{m['ab']}.weight"] = value.float()
        with _quiet():
            for task in self.tasks:
                inject_adapter_in_model(self.lora_config, model, adapter_name=task)
            for task in self.tasks:
                result = set_peft_model_state_dict(model, per_task[task], adapter_name=task)
                left = [k for k in result.unexpected_keys if "lora" in k]
                if left:
                    raise EmbccError(f"PEFT did not place adapter tensor {left[0]} ({task})",
                                     "the adapters do not fit this model")
        self.model = model.float().eval()
        self.hidden_size = hidden
        self.matryoshka_dims = list(self.config.get("matryoshka_dims") or [])
        self.ids = {k: int(getattr(cfg, k)) for k in ("image_token_id", "vision_start_token_id", "vision_end_token_id")}
        self._task: str | None = None
        self.image_processor = None
        pre = path / "preprocessor_config.json"
        if pre.is_file():
            from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

            kw = {k: v for k, v in json.loads(pre.read_text()).items()
                  if k not in ("image_processor_type", "processor_class")}
            self.image_processor = Qwen2VLImageProcessorPil(**kw)

    # ---- adapters -----------------------------------------------------------------------------------------------

    def set_task(self, task: str) -> None:
        from peft.functional import set_adapter

        if task not in self.tasks:
            raise EmbccError(f"unknown task {task!r} for jina-embeddings-v4", f"choose one of: {', '.join(self.tasks)}")
        if task != self._task:
            set_adapter(self.model, task)
            self._task = task

    def prefix(self, task: str, role: str | None) -> str:
        role = role or "query"  # Jina's encode_text default prompt_name
        if role not in PREFIX:
            raise EmbccError(f"jina-embeddings-v4 has no {role!r} role", "choose query or passage")
        return PREFIX["query"] if task == "text-matching" else PREFIX[role]

    # ---- the forward pass Jina's model runs -------------------------------------------------------------------

    def _hidden(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Last hidden state (after the final norm), positions from the model's own get_rope_index."""
        inner = self.model.model
        mm = batch.get("mm_token_type_ids")
        if mm is None:
            mm = torch.zeros_like(batch["input_ids"], dtype=torch.int32)
        position_ids, _ = inner.get_rope_index(batch["input_ids"], mm, image_grid_thw=batch.get("image_grid_thw"),
                                               attention_mask=batch["attention_mask"])
        with torch.no_grad():
            out = inner(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=position_ids,
                        pixel_values=batch.get("pixel_values"), image_grid_thw=batch.get("image_grid_thw"),
                        use_cache=False)
        return out.last_hidden_state

    def _outputs(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor], pool_mask: torch.Tensor, vectors: str,
                 dim: int | None) -> list[np.ndarray] | np.ndarray:
        mask = batch["attention_mask"]
        if vectors == "multi":
            with torch.no_grad():
                multi = torch.nn.functional.normalize(self.model.multi_vector_projector(hidden), dim=-1)
            multi = multi * mask.unsqueeze(-1)
            return [m[r.bool()].numpy() for m, r in zip(multi, mask)]
        if vectors != "single":
            raise EmbccError(f"vectors={vectors!r}", "choose single or multi")
        p = pool_mask.to(hidden.dtype).unsqueeze(-1)
        single = torch.nn.functional.normalize((hidden * p).sum(1) / p.sum(1), dim=-1)
        if dim is not None:
            if self.matryoshka_dims and dim not in self.matryoshka_dims:
                raise EmbccError(f"truncate dim {dim} is not one of {self.matryoshka_dims}", "choose one of those")
            single = torch.nn.functional.normalize(single[:, :dim], dim=-1)
        return single.numpy()

    def encode(self, texts: Sequence[str], *, task: str, role: str | None = None, max_length: int | None = None,
               vectors: str = "single", dim: int | None = None, batch_size: int = 8) -> Any:
        """Jina's encode_text: single -> float32 [N, dim]; multi -> a list of [tokens_i, 128] arrays."""
        if isinstance(texts, str):
            raise EmbccError("encode() takes a list of texts, not one string", "wrap the text in a list")
        self.set_task(task)
        prefix = self.prefix(task, role)
        length = TEXT_MAX_LENGTH if max_length is None else min(max_length, TEXT_MAX_LENGTH)
        texts = list(texts)
        ids = self.tokenizer([prefix + t for t in texts], truncation=True, max_length=length)["input_ids"]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        singles: list[np.ndarray | None] = [None] * len(texts)
        multis: list[np.ndarray | None] = [None] * len(texts)
        # longest first, batch x longest^2 bounded (common.length_batches): a 32K probe runs alone, unpadded
        for rows, input_ids, mask in length_batches(ids, batch_size, pad):
            batch = {"input_ids": input_ids, "attention_mask": mask}
            hidden = self._hidden(batch)
            res = self._outputs(hidden, batch, mask, vectors, dim)
            for k, i in enumerate(rows):
                (multis if vectors == "multi" else singles)[i] = res[k]
        if vectors == "multi":
            return multis
        return np.stack(singles) if singles else np.zeros((0, dim or self.hidden_size), np.float32)

    def image_batch(self, images: Sequence[Any]) -> dict[str, torch.Tensor]:
        """The processor's inputs for a batch of images (paths, PIL images, uint8 arrays: loaded by the one
        loading step every runtime shares, EXIF orientation applied), Jina's image prompt, padding "longest"."""
        from embcc.core.images import load_images

        if self.image_processor is None:
            raise EmbccError(f"{self.path} has no preprocessor_config.json", "copy the files published with the model")
        pix = self.image_processor(images=load_images(images), return_tensors="pt")
        merge = self.image_processor.merge_size ** 2
        prompts = [IMAGE_PROMPT.replace("<|image_pad|>", "<|image_pad|>" * int(g.prod() // merge))
                   for g in pix["image_grid_thw"]]
        batch = dict(self.tokenizer(prompts, return_tensors="pt", padding="longest"))
        batch.pop("token_type_ids", None)
        batch["mm_token_type_ids"] = (batch["input_ids"] == self.ids["image_token_id"]).to(torch.int32)
        batch["pixel_values"] = pix["pixel_values"]
        batch["image_grid_thw"] = pix["image_grid_thw"]
        return batch

    def vision_span(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Jina's image pooling mask: vision_start..vision_end inclusive, per row."""
        pos = torch.arange(input_ids.shape[1]).expand_as(input_ids)
        start = (input_ids == self.ids["vision_start_token_id"]).long().argmax(1, keepdim=True)
        end = (input_ids == self.ids["vision_end_token_id"]).long().argmax(1, keepdim=True)
        return (pos >= start) & (pos <= end)

    def encode_images(self, images: Sequence[Any], *, task: str, vectors: str = "single", dim: int | None = None,
                      batch_size: int = 4) -> Any:
        """Jina's encode_image on PIL images: single -> float32 [N, dim]; multi -> a list of arrays."""
        self.set_task(task)
        out: list = []
        for i in range(0, len(images), batch_size):
            batch = self.image_batch(images[i:i + batch_size])
            hidden = self._hidden(batch)
            res = self._outputs(hidden, batch, self.vision_span(batch["input_ids"]), vectors, dim)
            out.extend(res if vectors == "multi" else [res])
        if vectors == "multi":
            return out
        return np.concatenate(out) if out else np.zeros((0, dim or self.hidden_size), np.float32)

    def close(self) -> None:
        self.model = None

    def __enter__(self) -> JinaV4Reference:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        import peft
        import transformers

        lc = self.lora_config
        ip = self.image_processor
        return {
            "class": "Qwen2_5_VLForConditionalGeneration (+ multi-vector projector)",
            "library": f"transformers {transformers.__version__} + peft {peft.__version__}",
            "adapters": "PEFT LoRA per task (inject_adapter_in_model), unmerged, chosen per call",
            "reference": "transformers Qwen2_5_VLForConditionalGeneration + PEFT LoRA (unmerged)",
            "dtype": "float32",
            "attention": self.model.config.text_config._attn_implementation,
            "tasks": self.tasks,
            "prefixes": {"query": PREFIX["query"], "passage": PREFIX["passage"], "text-matching": PREFIX["query"]},
            "lora": {"r": lc.r, "alpha": lc.lora_alpha, "scaling": lc.lora_alpha / lc.r,
                     "target_modules": lc.target_modules, "exclude_modules": lc.exclude_modules},
            "rope": dict(self.model.config.text_config.rope_parameters),
            "pooling": "mean over attention_mask (images: vision_start..vision_end), L2",
            "multi_vector": "multi_vector_projector per token, L2, x attention_mask",
            "image_processor": None if ip is None else {
                "class": type(ip).__name__, "min_pixels": ip.size.shortest_edge, "max_pixels": ip.size.longest_edge,
                "patch_size": ip.patch_size, "merge_size": ip.merge_size, "temporal_patch_size": ip.temporal_patch_size},
            "image_prompt": IMAGE_PROMPT,
            "max_length": TEXT_MAX_LENGTH,
        }


__all__ = ["IMAGE_PROMPT", "JinaV4Reference"]
