"""Task LoRA adapters as data, and the one place their arithmetic lives.

Adapters are held stacked over tasks, with the scaling (alpha / rank) already folded into B:
  Linear:    A [T, r, in],    B [T, out, r]   delta_t = B[t] @ A[t]          (added to W [out, in])
  Embedding: A [T, vocab, r], B [T, r, dim]   delta_t = A[t] @ B[t]          (added to W [vocab, dim])
Deltas are computed in float64 and held in float32. Families read their published adapters into a LoraSet;
formats merge one task (`merged_weights`) or keep them all (export.lora's graph modules, GGUF adapter files).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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


def adapted_weight(weight: torch.Tensor, lora: LoraSet | None, module: str, task_index: int | None) -> torch.Tensor:
    """`weight` of `module` with task `task_index`'s delta added (float64 sum, float32 result); unchanged when the
    module has no adapter or no task is merged."""
    w = None if lora is None or task_index is None else lora.modules.get(module)
    if w is None:
        return weight
    return (weight.double() + w.delta(task_index).double()).float()


def merged_weights(base: dict[str, torch.Tensor], lora: LoraSet, task: str) -> dict[str, torch.Tensor]:
    """A copy of `base` with task `task`'s adapter folded into every adapted weight."""
    t = lora.index(task)
    out = dict(base)
    for name in lora.modules:
        key = f"{name}.weight"
        out[key] = adapted_weight(base[key], lora, name, t)
    return out
