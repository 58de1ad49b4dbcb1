"""Task LoRA adapters as data, and the one place their arithmetic lives.

Adapters are held stacked over tasks, with the scaling (alpha / rank) already folded into B:
  Linear:    A [T, r, in],    B [T, out, r]   delta_t = B[t] @ A[t]          (added to W [out, in])
  Embedding: A [T, vocab, r], B [T, r, dim]   delta_t = A[t] @ B[t]          (added to W [vocab, dim])
Deltas are computed in float64 and held in float32. Families read their published adapters into a LoraSet;
formats merge one task (`merged_weights`) or keep them all: `keep_adapters` replaces each adapted module by one
that selects its task's A and B by a task_id tensor with index_select, so a traced graph has no data-dependent
Python control flow and one graph serves every task, as in Jina's own graph (GGUF writes adapter files instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LoraWeights:
    kind: str  # "linear" | "embedding"
    A: torch.Tensor
    B: torch.Tensor

    def delta(self, t: int) -> torch.Tensor:
        a, b = self.A[t].double(), self.B[t].double()
        return (b @ a if self.kind == "linear" else a @ b).float()

    def rank(self) -> int:
        return self.A.shape[1] if self.kind == "linear" else self.A.shape[2]


@dataclass
class LoraSet:
    """Adapters for every task, keyed by the backbone module's dotted name."""

    task_names: list[str]
    modules: dict[str, LoraWeights]

    def index(self, task: str) -> int:
        return self.task_names.index(task)

    def rank(self) -> int:
        return next(iter(self.modules.values())).rank()


CHUNK_ELEMENTS = 1 << 22  # rows merged at a time: a float64 delta of at most 32 MiB, whatever the table's size


def adapted_weight(weight: torch.Tensor, lora: LoraSet | None, module: str, task_index: int | None, *,
                   in_place: bool = False) -> torch.Tensor:
    """`weight` of `module` with task `task_index`'s delta added (float64 sum, float32 result); unchanged when the
    module has no adapter or no task is merged.

    The delta is computed a block of rows at a time (a v3 embedding table's full float64 delta alone would be
    2 GB), with the same arithmetic as `LoraWeights.delta` row for row. `in_place`: write the result into
    `weight` itself (a float32 tensor the caller owns, e.g. one just read by LazyWeights)."""
    w = None if lora is None or task_index is None else lora.modules.get(module)
    if w is None:
        return weight
    a, b = w.A[task_index].double(), w.B[task_index].double()
    out = weight if in_place and weight.dtype == torch.float32 else torch.empty(weight.shape, dtype=torch.float32)
    step = max(1, CHUNK_ELEMENTS // max(1, weight[0].numel()))
    for i in range(0, weight.shape[0], step):
        j = min(i + step, weight.shape[0])
        delta = (b[i:j] @ a if w.kind == "linear" else a[i:j] @ b).float()  # rounded as LoraWeights.delta rounds
        out[i:j] = (weight[i:j].double() + delta.double()).float()
    return out


def merged_weights(base: dict[str, torch.Tensor], lora: LoraSet, task: str) -> dict[str, torch.Tensor]:
    """A copy of `base` with task `task`'s adapter folded into every adapted weight."""
    t = lora.index(task)
    out = dict(base)
    for name in lora.modules:
        key = f"{name}.weight"
        out[key] = adapted_weight(base[key], lora, name, t)
    return out


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
