"""jina-clip-v2 as its users run it, apart from the export path: the text tower through transformers'
JinaEmbeddingsV3Model + PEFT (its single adapter always active, as Jina's HFTextEncoder runs it), the image
tower through embcc.reference.clip_vision (Jina's EVA02 forward, written from the published code).

The text tower is v3's original layout under `text_model.transformer.roberta.`: jina_v3's converter writes its
-hf form into a scratch directory (the config from `text_config.hf_model_config_kwargs` over jina-embeddings-v3's
published config.json, widths from the tensor shapes; the weights' header without the prefix, the
parametrizations suffix, the adapter and the vision tower; one PEFT folder for the adapter). Prompts: the task's
instruction only when a task is asked for (Jina's encode_text). Pooling: mean over the tokens, L2.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from embcc.core.errors import EmbccError
from embcc.reference.base import ReferenceBase
from embcc.reference.clip_vision import ClipVisionReference
from embcc.reference.common import Pooling, Scratch, from_pretrained, load_peft, versions, weight_files
from embcc.reference.jina_v3 import LORA, _header, hf_config, rewrite_weights, write_peft_folders

TEXT = "text_model.transformer."
# jina-embeddings-v3's published config.json: what Jina's HFTextEncoder builds the text tower from before it
# applies text_config.hf_model_config_kwargs
V3_PUBLISHED = {
    "model_type": "xlm-roberta", "num_attention_heads": 16, "layer_norm_eps": 1e-5, "rotary_emb_base": 20000.0,
    "max_position_embeddings": 8194, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "hidden_act": "gelu",
    "position_embedding_type": "rotary", "lora_rank": 4, "lora_alpha": 1, "type_vocab_size": 1,
    "task_instructions": {"retrieval.query": "Represent the query for retrieving evidence documents: ",
                          "retrieval.passage": "Represent the document for retrieval: "},
}


def _text_key(key: str) -> str | None:
    return key[len(TEXT):].removeprefix("roberta.") if key.startswith(TEXT) else None


def text_config(ckpt: Path, config: dict) -> dict:
    """The text tower's v3 config: published v3 values, the checkpoint's kwargs over them, widths from shapes."""
    text = config.get("text_config") or {}
    out = {**V3_PUBLISHED, **(text.get("hf_model_config_kwargs") or {})}
    shapes: dict[str, list[int]] = {}
    for f in weight_files(ckpt):
        _, header = _header(f)
        shapes.update({k: v["shape"] for k, v in header.items() if k != "__metadata__"})
    p = TEXT + "roberta."
    word = shapes.get(p + "embeddings.word_embeddings.parametrizations.weight.original") or shapes.get(
        p + "embeddings.word_embeddings.weight")
    fc1 = shapes.get(p + "encoder.layers.0.mlp.fc1.parametrizations.weight.original") or shapes.get(
        p + "encoder.layers.0.mlp.fc1.weight")
    if word is None or fc1 is None:
        raise EmbccError(f"{ckpt} has no text tower under {TEXT}roberta.", "pass a jina-clip-v2 checkpoint")
    types = shapes.get(p + "embeddings.token_type_embeddings.parametrizations.weight.original") or shapes.get(
        p + "embeddings.token_type_embeddings.weight")
    layers = 1 + max(int(m.group(1)) for k in shapes if (m := re.match(re.escape(p) + r"encoder\.layers\.(\d+)\.", k)))
    out.update(vocab_size=word[0], hidden_size=word[1], intermediate_size=fc1[0], num_hidden_layers=layers,
               type_vocab_size=types[0] if types else out["type_vocab_size"])
    return out


class ClipReference(ReferenceBase):
    family = "jina-clip-v2"

    def __init__(self, ckpt: Path, config: dict, rope_theta: float | None):
        from transformers import JinaEmbeddingsV3Config, JinaEmbeddingsV3Model

        super().__init__(ckpt, config, Pooling("mean", True, "Jina's HFTextEncoder: mean over tokens"))
        self.scratch: Scratch | None = Scratch()
        try:
            tcfg = text_config(ckpt, config)
            theta = float(rope_theta if rope_theta is not None else tcfg["rotary_emb_base"])
            out = self.scratch.path
            (out / "config.json").write_text(__import__("json").dumps(hf_config(tcfg, theta), indent=2))
            adapter_keys: dict[Path, list[str]] = {}
            for f in weight_files(ckpt):
                adapter_keys[f] = [k for k in rewrite_weights(f, out / f.name, rename=_text_key) if k.startswith(TEXT)]
            from safetensors import safe_open

            stacked: dict[str, dict[str, torch.Tensor]] = {}
            for f, keys in adapter_keys.items():
                with safe_open(str(f), framework="pt") as h:
                    for key in keys:
                        m = LORA.match(key)
                        stacked.setdefault(_text_key(m["module"]), {})[m["ab"]] = h.get_tensor(key)
            cfg = JinaEmbeddingsV3Config.from_pretrained(str(out))
            model, self.unexpected = from_pretrained(JinaEmbeddingsV3Model, out, cfg, ckpt, ignore_missing=("pooler.",))
            text = config.get("text_config") or {}
            self.task_always = text.get("default_lora_task")
            tasks = list((text.get("hf_model_config_kwargs") or {}).get("lora_adaptations") or [])
            if stacked:
                folders = write_peft_folders(model, stacked, tasks, int(tcfg["lora_rank"]), float(tcfg["lora_alpha"]),
                                             out, ckpt)
                self.model = load_peft(model, folders, {t: t.replace(".", "_") for t in tasks})
                self.model.set_adapter(self.task_always.replace(".", "_"))
            else:
                self.model = model
            self.instructions = dict(tcfg.get("task_instructions") or {})
            self.tasks = [t for t in tasks if t in self.instructions] or tasks
            self.roles, self.default_role = {}, None
            self.dim = int(cfg.hidden_size)
            self.theta = theta
            self.vision = ClipVisionReference.from_checkpoint(ckpt)
        except BaseException:
            self._release()
            raise

    def _states(self, input_ids: torch.Tensor, mask: torch.Tensor, task: str | None) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state  # the adapter is always on

    def encode_images(self, images: Sequence, *, dim: int | None = None) -> np.ndarray:
        return self.vision.encode(list(images), dim=dim).astype(np.float32)

    def describe(self) -> dict:
        v = versions()
        return {
            "family": self.family, "library": f"transformers {v['transformers']} + peft {v['peft']}",
            "class": "JinaEmbeddingsV3Model (text) + embcc.reference.clip_vision (Jina's EVA02 forward, image)",
            "adapters": f"PEFT LoraModel, {self.task_always!r} always active (as Jina's HFTextEncoder)",
            "layout": "jina-clip-v2 (text tower: v3 original layout under text_model.transformer.)",
            "torch": v["torch"], "rope_theta": self.theta,
            "notes": ["text tower converted to the -hf form in a scratch directory; image tower: no maintained "
                      "library imports here (timm needs torchvision, whose registry wheels need the CUDA torch)"],
        }

    def _release(self) -> None:
        self.model = None  # type: ignore[assignment]
        if self.scratch is not None:
            self.scratch.close()
            self.scratch = None
