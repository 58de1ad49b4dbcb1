"""The PyTorch reference `embcc verify` compares artifacts with: independent of embcc's export path.

`reference_for(checkpoint)` recognises the family from the checkpoint's config.json (its own small detection)
and builds the model as its users run it in PyTorch, from the checkpoint's own files:

- jina-embeddings-v3 (-hf and original layouts): transformers' JinaEmbeddingsV3Model + PEFT adapters, unmerged
  (the original layout is converted to the -hf form in a scratch directory first: `jina_v3.convert_original`);
- jina-embeddings-v5-text small / nano (base with `adapters/`, or pre-merged): Qwen3Model / EuroBertModel +
  PEFT adapters, unmerged;
- jina-embeddings-v2 (JinaBERT, which no maintained library has): an independent float64 re-implementation;
- jina-clip-v2: the text tower as v3's original layout (transformers + PEFT, its adapter always on), the image
  tower through clip_vision (Jina's EVA02 forward written from the published code; `encode_images`).

This package imports nothing from embcc but `embcc.core.errors`: not the families, export, runtimes,
calibration, pipeline, verify or modelspec modules. It prefixes, tokenises, pools and normalises on its own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from embcc.core.errors import EmbccError
from embcc.reference.common import read_json

__all__ = ["Reference", "detect", "reference_for"]


@runtime_checkable
class Reference(Protocol):
    tasks: list[str]  # task names in id order ([] for v2)
    roles: dict[str, list[str]]  # task -> the roles it accepts (v5); {} for families without roles
    default_role: str | None  # v5: config_sentence_transformers.json default_prompt_name
    dim: int

    def encode(self, texts: Sequence[str], *, task: str | None = None, role: str | None = None,
               max_length: int = 8192, batch_size: int = 8) -> np.ndarray:
        """float32 [N, dim], L2-normalised."""
        ...

    def describe(self) -> dict:
        """library, class, versions, layout, adapter mode, RoPE theta, pooling, prompts, notes."""
        ...

    def close(self) -> None: ...


def _is_v2(config: dict) -> bool:
    if config.get("model_type") != "bert":
        return False
    auto = json.dumps(config.get("auto_map") or {}).lower()
    archs = " ".join(config.get("architectures") or []).lower()
    return ("jina-bert" in auto or "jinabert" in auto or "jinabert" in archs
            or config.get("position_embedding_type") == "alibi" or "feed_forward_type" in config)


def _is_v5_premerged_backbone(config: dict, ckpt: Path) -> bool:
    """A pre-merged v5 repo saved as its plain backbone (model_type qwen3 / eurobert)."""
    if config.get("model_type") not in ("qwen3", "eurobert"):
        return False
    if config.get("task_names") or "jina-embeddings-v5" in str(config.get("_name_or_path", "")):
        return True
    st = ckpt / "config_sentence_transformers.json"
    try:
        prompts = json.loads(st.read_text()).get("prompts") if st.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False
    return isinstance(prompts, dict) and prompts.get("query") == "Query: " and prompts.get("document") == "Document: "


def detect(checkpoint: str | Path) -> tuple[str, str]:
    """(family, layout): ("jina-v2", "jinabert"), ("jina-v3", "original" | "hf"), ("jina-v5", "base" | "premerged")."""
    ckpt = Path(checkpoint)
    if not ckpt.is_dir():
        raise EmbccError(f"{ckpt} is not a directory", "pass a checkpoint directory (config.json, weights, tokenizer)")
    config = read_json(ckpt / "config.json")
    if not isinstance(config, dict):
        raise EmbccError(f"{ckpt}/config.json is not a JSON object", "repair or re-download it")
    kind = config.get("model_type")
    if "JinaEmbeddingsV4Model" in (config.get("architectures") or []):
        return "jina-v4", "base"
    if "JinaCLIPModel" in (config.get("architectures") or []) or kind == "jina_clip":
        return "jina-clip-v2", "original"
    if kind == "jina_embeddings_v3":
        return "jina-v3", "hf"
    if kind == "xlm-roberta" and "lora_adaptations" in config:
        return "jina-v3", "original"
    if (kind == "jina_embeddings_v5" or "JinaEmbeddingsV5Model" in (config.get("architectures") or [])
            or _is_v5_premerged_backbone(config, ckpt)):
        return "jina-v5", "base" if (ckpt / "adapters").is_dir() else "premerged"
    if _is_v2(config):
        return "jina-v2", "jinabert"
    arch = ",".join(config.get("architectures") or []) or "no architectures"
    raise EmbccError(f"{ckpt} is not a checkpoint the reference knows (model_type {kind!r}, {arch})",
                     "pass a jina-embeddings-v2, v3 or v5-text checkpoint in its published layout")


def reference_for(checkpoint: str | Path, *, rope_theta: float | None = None) -> Reference:
    """The reference model for `checkpoint`; `rope_theta` overrides the checkpoint's own inference value.

    Call close() when done (it removes the scratch directory a converted layout needs), or use it as a
    context manager.
    """
    ckpt = Path(checkpoint)
    family, layout = detect(ckpt)
    config = read_json(ckpt / "config.json")
    if rope_theta is not None and (not isinstance(rope_theta, int | float) or not rope_theta > 0):
        raise EmbccError(f"rope_theta {rope_theta!r} is not a positive number", "pass a positive theta or None")
    if family == "jina-v3":
        from embcc.reference.jina_v3 import V3Reference

        return V3Reference(ckpt, config, layout, rope_theta)
    if family == "jina-v5":
        from embcc.reference.jina_v5 import V5Reference

        return V5Reference(ckpt, config, rope_theta)
    if family == "jina-v4":
        if rope_theta is not None:
            raise EmbccError("the jina-embeddings-v4 reference runs at the checkpoint's own RoPE base",
                             "export v4 without --rope-theta")
        from embcc.reference.jina_v4 import JinaV4Reference

        return JinaV4Reference(ckpt)
    if family == "jina-clip-v2":
        from embcc.reference.jina_clip_v2 import ClipReference

        return ClipReference(ckpt, config, rope_theta)
    if rope_theta is not None:
        raise EmbccError("jina-embeddings-v2 has ALiBi positions, no RoPE theta", "leave out rope_theta")
    from embcc.reference.jina_v2 import V2Reference

    return V2Reference(ckpt, config)
