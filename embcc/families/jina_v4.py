"""jina-embeddings-v4: Qwen2.5-VL-3B with three task adapters (retrieval, text-matching, code) on the language
model and the multi-vector projector; single vectors (mean over the mask, L2, Matryoshka 128..2048) and
multi-vectors (projector per token, L2, masked) from one forward.

Published layout (OLD Qwen2.5-VL naming, one `adapters/` folder with every task's keys): read by
jina_v4_layout (transformers 5 maps the naming itself); the export-side modules are jina_v4_model's
(transformers' own Qwen2.5-VL classes). Prompts `Query: ` / `Passage: ` (text-matching always `Query: `).
Parts: `text` (one graph: token states, single vector, multi-vector). The image path (Qwen2.5-VL's vision encoder
and the decoder over spliced visual tokens) runs in torch only: its window attention depends on the image grid's
values, which torch.export cannot trace (measured); see the README.
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
from embcc.families.base import Family, hash_checkpoint
from embcc.families.jina_v4_layout import DEFAULT_ROLE, QUERY_ONLY_TASKS, V4Checkpoint, detect, read
from embcc.families.jina_v4_model import GGUF_FACTS, build_text_graph, contract


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
        """The text decoder (Qwen2.5-VL's language model: causal, grouped KV heads, no q/k norm): GroupQueryAttention
        with causal=1, tiled; text positions are the same in every M-RoPE section, i.e. plain RoPE."""
        t = bundle.extra["v4"].qwen_config.text_config
        heads, kv = t.num_attention_heads, t.num_key_value_heads or t.num_attention_heads
        return {"kind": "gqa", "heads": heads, "kv_heads": kv, "head_dim": t.hidden_size // heads, "causal": True}

    def part_module(self, adapted, part: str) -> tuple[nn.Module, GraphContract]:
        if part != "text":
            return super().part_module(adapted, part)
        ckpt: V4Checkpoint = adapted.bundle.extra["v4"]
        # the adapted weights (the merged task folded in by the adapt step), then the family's own graph
        ckpt = dataclasses.replace(ckpt, weights=adapted.weights(), lora=adapted.bundle.lora)
        graph = build_text_graph(ckpt, keep=adapted.keeps_adapters, rope_theta=adapted.spec.rope_theta)
        return graph, contract(graph)

    def backbone(self, bundle: Bundle, weights: dict[str, torch.Tensor], rope_theta: float | None = None) -> nn.Module:
        raise NotImplementedError("jina-v4 builds its text graph in part_module")

    def gguf_facts(self, bundle: Bundle) -> GgufFacts:
        return dataclasses.replace(GGUF_FACTS, unsupported_parts={
            "vision": "upstream llama.cpp embeds no jina-embeddings-v4 images (Jina's own fork does)"})
