"""jina-clip-v2: a jina-embeddings-v3 text tower (its retrieval.query adapter always applied) and an EVA02-L/14
image tower, both 1024-d, Matryoshka 32..1024, L2 after truncation.

Published layout (JinaCLIPModel): read by jina_clip_v2_layout (text tower in v3's original layout under
`text_model.transformer.roberta.`, vision tower under `vision_model.`, `logit_scale`). The text tower loads into
transformers' JinaEmbeddingsV3Model names (the bundle's `weights`, adapter merged); the vision tower is
embcc.families.eva02's module. Parts: `text` (v3's contract), `vision` (pixel_values -> image embeddings) and
`combined`, Jina's own one-graph contract: inputs input_ids [B, T] (no attention_mask: tokens equal to the pad id
are masked) and pixel_values [B, 3, S, S]; outputs text_embeddings, image_embeddings and their L2-normalised
twins. A caller runs one tower by feeding a zero-size batch for the other, as transformers.js does.
The text prefix is added only when a task is asked for, as Jina's encode_text does.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from embcc.core.bundle import Bundle
from embcc.core.contract import GraphContract
from embcc.core.gguf_facts import GgufFacts
from embcc.core.spec import ModelSpec, Task
from embcc.families import eva02
from embcc.families.base import Family, hash_checkpoint, tokenizer_files
from embcc.families.jina_clip_v2_layout import ClipCheckpoint, detect, read
from embcc.families.jina_v3 import GGUF as V3_GGUF
from embcc.families.jina_v3 import V3Backbone

PARTS = ("text", "vision", "combined")
NO_VISION_GGUF = ("upstream llama.cpp has no jina-clip-v2 vision projector (only the open pull request "
                  "ggml-org/llama.cpp#16574)")


class VisionGraph(nn.Module):
    """pixel_values -> (image_embeddings, l2norm_image_embeddings)."""

    def __init__(self, tower: eva02.Eva02VisionTower):
        super().__init__()
        self.tower = tower

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.tower(pixel_values)
        return emb, nn.functional.normalize(emb, p=2.0, dim=-1)


class CombinedGraph(nn.Module):
    """Jina's one-graph contract: (input_ids, pixel_values) -> text and image embeddings, raw and L2."""

    def __init__(self, text: nn.Module, tower: eva02.Eva02VisionTower, pad_id: int):
        super().__init__()
        self.text = text
        self.tower = tower
        self.pad_id = pad_id

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor):
        mask = (input_ids != self.pad_id).to(torch.long)
        states = self.text(input_ids, mask)
        m = mask.to(states.dtype).unsqueeze(-1)
        text = (states * m).sum(1) / m.sum(1).clamp(min=1e-9)
        image = self.tower(pixel_values)
        norm = nn.functional.normalize
        return text, image, norm(text, p=2.0, dim=-1), norm(image, p=2.0, dim=-1)


def _images(ckpt: ClipCheckpoint, batch: int = 2) -> torch.Tensor:
    s = ckpt.vision_config.image_size
    return torch.linspace(-1.0, 1.0, batch * 3 * s * s).reshape(batch, 3, s, s)


class JinaClipV2(Family):
    name = "jina-clip-v2"
    layouts = ("original",)

    @classmethod
    def detect(cls, config: dict, path: Path) -> bool:
        return detect(config)

    def load(self, path: Path) -> Bundle:
        ckpt = read(path)
        task = ckpt.text_task or "retrieval.query"
        spec = ModelSpec(
            family=self.name, pooling="mean", dim=ckpt.text_config.hidden_size, max_length=ckpt.max_length,
            position="rope", tasks=[Task(task, 0, ckpt.prompt(task))],
            matryoshka_dims=list(ckpt.matryoshka_dims), rope_theta=float(ckpt.text_config.rope_parameters["rope_theta"]),
            task_optional=True,
        )
        extra_files = [path / "preprocessor_config.json"]
        return Bundle(self, path, "original", ckpt.config, spec, ckpt.text_weights, None, tokenizer_files(path),
                      hash_checkpoint(path), extra={"clip": ckpt}, files=extra_files)

    def parts(self, bundle: Bundle) -> tuple[str, ...]:
        return PARTS

    def part_spec(self, bundle: Bundle, part: str) -> ModelSpec:
        ckpt: ClipCheckpoint = bundle.extra["clip"]
        if part == "vision":
            return dataclasses.replace(bundle.spec, part="vision", pooling="cls", dim=ckpt.dim, position="rope2d",
                                       tasks=[], task_optional=False, image=ckpt.preprocessor, rope_theta=None)
        if part == "combined":
            return dataclasses.replace(bundle.spec, part="combined", image=ckpt.preprocessor)
        return super().part_spec(bundle, part)

    def part_module(self, adapted, part: str) -> tuple[nn.Module, GraphContract]:
        ckpt: ClipCheckpoint = adapted.bundle.extra["clip"]
        batch = ("batch", 1, 1024)
        if part == "vision":
            contract = GraphContract({"pixel_values": _images(ckpt)}, ["image_embeddings", "l2norm_image_embeddings"],
                                     {"pixel_values": {0: batch}})
            return VisionGraph(ckpt.vision_tower()).eval(), contract
        if part == "combined":
            ids = torch.full((2, 16), 5, dtype=torch.long)
            ids[:, 0] = 0
            ids[1, 8:] = ckpt.pad_token_id
            contract = GraphContract(
                {"input_ids": ids, "pixel_values": _images(ckpt, 3)},
                ["text_embeddings", "image_embeddings", "l2norm_text_embeddings", "l2norm_image_embeddings"],
                {"input_ids": {0: ("text_batch", 1, 1024), 1: ("sequence", 2, 131072)},
                 "pixel_values": {0: ("image_batch", 1, 1024)}})
            module = CombinedGraph(adapted.backbone(), ckpt.vision_tower(), ckpt.pad_token_id)
            return module.eval(), contract
        return super().part_module(adapted, part)

    def attention(self, bundle: Bundle, part: str) -> dict | None:
        """The text tower's RoPE attention fuses as v3's; the image tower runs unmasked SDPA already."""
        if part != "text":
            return None
        c = bundle.extra["clip"].text_config
        return {"kind": "mha", "heads": c.num_attention_heads, "kv_heads": c.num_attention_heads,
                "head_dim": c.hidden_size // c.num_attention_heads, "causal": False}

    def backbone(self, bundle: Bundle, weights: dict[str, torch.Tensor], rope_theta: float | None = None) -> nn.Module:
        ckpt: ClipCheckpoint = bundle.extra["clip"]
        cfg = ckpt.text_config.__class__(**ckpt.text_config.to_dict())
        if rope_theta is not None:
            cfg.rope_parameters = {"rope_type": "default", "rope_theta": float(rope_theta)}
        cfg._attn_implementation = "sdpa"
        model = V3Backbone(cfg, add_pooling_layer=False)
        model.load_state_dict(weights, strict=True)
        return model.float().eval()

    def gguf_facts(self, bundle: Bundle) -> GgufFacts:
        """The text tower is a jina-bert-v3 with its adapter merged; hyperparameters from the tower's config."""
        c = bundle.extra["clip"].text_config
        hparams = {
            "block_count": c.num_hidden_layers, "embedding_length": c.hidden_size,
            "feed_forward_length": c.intermediate_size, "attention.head_count": c.num_attention_heads,
            "attention.head_count_kv": c.num_attention_heads, "attention.layer_norm_epsilon": float(c.layer_norm_eps),
            "rope.dimension_count": c.hidden_size // c.num_attention_heads,
        }
        return dataclasses.replace(V3_GGUF, hparams=hparams,
                                   unsupported_parts={"vision": NO_VISION_GGUF, "combined": NO_VISION_GGUF})

