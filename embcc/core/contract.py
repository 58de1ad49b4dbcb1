"""A graph's contract with its callers: input names with example tensors and dynamic axes, output names.

A family declares one per part of its model (text, vision, combined) as optimum's OnnxConfig classes do: the
formats trace against it and the runtimes feed by it. Dynamic axes are {axis: (name, min, max)}.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class GraphContract:
    inputs: dict[str, torch.Tensor]  # name -> example tensor used for tracing (order = forward's arguments)
    outputs: list[str]
    dynamic: dict[str, dict[int, tuple[str, int, int]] | None] = field(default_factory=dict)
    open_rank: tuple[str, ...] = ()  # inputs whose declared shape is left open (task_id: scalar or [1])


def text_contract(keeps_adapters: bool, *, trace_length: int = 16,
                  outputs: tuple[str, ...] = ("text_embeds", "sentence_embedding")) -> GraphContract:
    """Jina's v3 ONNX contract (input_ids, attention_mask [, task_id]) with embcc's pooled output beside it."""
    ids = torch.full((2, trace_length), 5, dtype=torch.long)
    ids[:, 0] = 0
    mask = torch.ones_like(ids)
    mask[1, trace_length // 2 :] = 0
    batch, seq = ("batch", 1, 1024), ("sequence", 2, 131072)
    inputs = {"input_ids": ids, "attention_mask": mask}
    dynamic: dict = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
    if keeps_adapters:
        inputs["task_id"] = torch.zeros(1, dtype=torch.long)
        dynamic["task_id"] = None
    return GraphContract(inputs, list(outputs), dynamic, ("task_id",) if keeps_adapters else ())
