"""Kept task adapters as a graph transform (the merge is plain arithmetic: embcc.core.lora).

`keep_adapters` replaces each adapted module by one that selects its task's A and B (embcc.core.lora's stacked
convention, scaling folded into B) by a task_id tensor with index_select, so the traced graph has no
data-dependent Python control flow and one graph serves every task, as in Jina's own graph.
"""

from __future__ import annotations

import torch
from torch import nn

from embcc.core.lora import LoraSet, LoraWeights


class TaskSelector:
    """Carries the graph's task_id to every kept adapter during one forward call."""

    task_id: torch.Tensor | None = None

    def index(self) -> torch.Tensor:
        if self.task_id is None:
            raise RuntimeError("a graph with kept adapters was called without task_id")
        return self.task_id.reshape(1).to(torch.long)


class KeptLinear(nn.Module):
    def __init__(self, base: nn.Linear, w: LoraWeights, selector: TaskSelector):
        super().__init__()
        self.base = base
        self.lora_A = nn.Parameter(w.A.float().contiguous(), requires_grad=False)
        self.lora_B = nn.Parameter(w.B.float().contiguous(), requires_grad=False)
        self.selector = selector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.selector.index()
        a = self.lora_A.index_select(0, t)[0]  # [r, in]
        b = self.lora_B.index_select(0, t)[0]  # [out, r]
        return self.base(x) + nn.functional.linear(nn.functional.linear(x, a), b)


class KeptEmbedding(nn.Module):
    def __init__(self, base: nn.Embedding, w: LoraWeights, selector: TaskSelector):
        super().__init__()
        self.base = base
        self.lora_A = nn.Parameter(w.A.float().contiguous(), requires_grad=False)
        self.lora_B = nn.Parameter(w.B.float().contiguous(), requires_grad=False)
        self.selector = selector

    @property
    def weight(self) -> torch.Tensor:  # transformers reads .weight of input embeddings for dtype/device
        return self.base.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = self.selector.index()
        a = self.lora_A.index_select(0, t)[0]  # [vocab, r]
        b = self.lora_B.index_select(0, t)[0]  # [r, dim]
        return self.base(ids) + nn.functional.embedding(ids, a) @ b


def keep_adapters(model: nn.Module, lora: LoraSet) -> TaskSelector:
    """Replace every adapted module of `model` in place by one holding all tasks; returns the selector."""
    selector = TaskSelector()
    for name, w in lora.modules.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = getattr(parent, child)
        wrapper = KeptLinear if isinstance(base, nn.Linear) else KeptEmbedding
        setattr(parent, child, wrapper(base, w, selector))
    return selector
