"""jina-embeddings-v4: Qwen2.5-VL-3B with three task adapters (retrieval, text-matching, code) on the language
model and the multi-vector projector; single vectors (mean over the mask, L2, Matryoshka 128..2048) and
multi-vectors (projector per token, L2, masked) from one forward.

Published layout (OLD Qwen2.5-VL naming, one `adapters/` folder with every task's keys): read by
jina_v4_layout (transformers 5 maps the naming itself); the export-side modules are jina_v4_model's
(transformers' own Qwen2.5-VL classes). Prompts `Query: ` / `Passage: ` (text-matching always `Query: `).
Parts: `text` (one graph: token states, single vector, multi-vector from input_ids) and `vision` (one graph:
Qwen2.5-VL's vision encoder, the visual tokens spliced into Jina's image prompt, the decoder; its window
attention's data-dependent indices come in as inputs, built by embcc.core.vl_images: families/jina_v4_vision.py).
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
from embcc.core.weights import stream as stream_module
from embcc.families import jina_v4_model
from embcc.families.base import Family, hash_checkpoint
from embcc.families.jina_v4_layout import (
    DEFAULT_ROLE,
    QUERY_ONLY_TASKS,
    V4Checkpoint,
    detect,
    image_facts,
    read,
)
from embcc.families.jina_v4_model import GGUF_FACTS, build_text_graph, contract, language_model_bytes
from embcc.families.jina_v4_vision import build_image_graph, example_feeds
from embcc.families.jina_v4_vision import contract as image_contract


def _tasks(ckpt: V4Checkpoint) -> list[Task]:
    out = []
    for i, name in enumerate(ckpt.tasks):
        roles = ("query",) if name in QUERY_ONLY_TASKS else ("query", "passage")
        out.append(Task(name, i, ckpt.prefix(name, DEFAULT_ROLE), {r: ckpt.prefix(name, r) for r in roles}))
    return out


class JinaV4(Family):
    name = "jina-v4"
    layouts = ("base",)
    own_parts = ("text",)  # its text graph is its own module (three outputs), not export.graph's

    def parts(self, bundle: Bundle) -> tuple[str, ...]:
        return ("text", "vision") if bundle.extra["v4"].preprocessor else ("text",)

    def part_spec(self, bundle: Bundle, part: str) -> ModelSpec:
        """The vision part: images in, the same single / multi vectors out, adapters as the text part's (they sit
        on the decoder); its `image` facts tell the runtime how to build the graph's inputs."""
        if part == "vision":
            return dataclasses.replace(bundle.spec, part="vision", image=image_facts(bundle.extra["v4"]))
        return super().part_spec(bundle, part)

    @classmethod
    def detect(cls, config: dict, path: Path) -> bool:
        return detect(config)

    def load(self, path: Path) -> Bundle:
        ckpt = read(path)
        spec = ModelSpec(
            family=self.name, pooling="mean", dim=ckpt.hidden_size, max_length=ckpt.max_length, position="mrope",
            tasks=_tasks(ckpt), matryoshka_dims=list(ckpt.matryoshka_dims), rope_theta=float(ckpt.rope_theta),
            multi_vector_dim=ckpt.projector_dim,
        )
        files = [path / "preprocessor_config.json"] if (path / "preprocessor_config.json").is_file() else []
        return Bundle(self, path, "base", ckpt.config, spec, ckpt.weights, ckpt.lora, list(ckpt.tokenizer_files),
                      hash_checkpoint(path), extra={"v4": ckpt}, files=files)

    def attention(self, bundle: Bundle, part: str) -> dict | None:
        """The vision part keeps the standard ops (its segment-masked vision attention is not tiled; its image
        prompts are a few hundred tokens). The text decoder (Qwen2.5-VL's language model: causal, grouped KV heads, no q/k norm): GroupQueryAttention
        with causal=1, tiled; text positions are the same in every M-RoPE section, i.e. plain RoPE."""
        if part != "text":
            return None
        t = bundle.extra["v4"].qwen_config.text_config
        heads, kv = t.num_attention_heads, t.num_key_value_heads or t.num_attention_heads
        return {"kind": "gqa", "heads": heads, "kv_heads": kv, "head_dim": t.hidden_size // heads, "causal": True}

    def part_module(self, adapted, part: str) -> tuple[nn.Module, GraphContract]:
        if part not in ("text", "vision"):
            return super().part_module(adapted, part)
        ckpt: V4Checkpoint = adapted.bundle.extra["v4"]
        # a large language model is traced on the meta device, its weights written from the files (streamed)
        stream = language_model_bytes(ckpt.weights) > jina_v4_model.STREAM_BYTES
        # the adapted weights (the merged task folded in by the adapt step), then the family's own graph
        ckpt = dataclasses.replace(ckpt, weights=adapted.weights(), lora=adapted.bundle.lora)
        graph = build_text_graph(ckpt, keep=adapted.keeps_adapters, rope_theta=adapted.spec.rope_theta,
                                 stream=stream)
        if part == "text":
            return graph, contract(graph)
        image = build_image_graph(ckpt, graph)
        if stream:  # the vision tower is in memory (a tenth of the model); the decoder's weights come from the text graph
            text_weights = graph.stream_weights
            stream_module(image, lambda name: text_weights(name.removeprefix("text.")))
        return image, image_contract(image, example_feeds(ckpt, adapted.spec.image))

    def backbone(self, bundle: Bundle, weights: dict[str, torch.Tensor], rope_theta: float | None = None) -> nn.Module:
        raise NotImplementedError("jina-v4 builds its text graph in part_module")

    def gguf_facts(self, bundle: Bundle) -> GgufFacts:
        return dataclasses.replace(GGUF_FACTS, unsupported_parts={
            "vision": "upstream llama.cpp embeds no jina-embeddings-v4 images (Jina's own fork does)"})
