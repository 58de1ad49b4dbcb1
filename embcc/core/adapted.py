"""The adapt step shared by every format: a loaded checkpoint with one task's adapter merged in, all adapters
kept, or none, at the RoPE base it will run at, with the ModelSpec its artifact will carry.

`adapt()` takes options that `embcc.options.resolve` has already checked. Formats read the weights from here:
ONNX traces the backbone built from `weights()` (export/graph.py), GGUF streams `tensor(name)` one at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch

from embcc.core.bundle import Bundle
from embcc.core.lora import adapted_weight
from embcc.core.spec import ModelSpec
from embcc.core.weights import fresh


@dataclass
class Adapted:
    bundle: Bundle
    spec: ModelSpec  # the artifact's spec: lora mode, merged task, RoPE theta used, max length, role
    task_index: int | None  # the merged task's adapter index (None: kept, no adapters, or pre-merged)

    @property
    def keeps_adapters(self) -> bool:
        return self.spec.lora == "keep"

    def weights(self) -> Mapping[str, torch.Tensor]:
        """Every weight under the backbone's names, the merged task's adapter folded in: a mapping that reads and
        adapts a weight when it is asked for (so the module built from it holds the only full copy)."""
        b = self.bundle
        if self.task_index is None or b.lora is None:
            return b.weights
        return _AdaptedWeights(self)

    def tensor(self, name: str) -> torch.Tensor:
        """One weight with the merged task's adapter folded in (for writers that stream tensor by tensor)."""
        weights = self.bundle.weights
        return adapted_weight(weights[name], self.bundle.lora, name.removesuffix(".weight"), self.task_index,
                              in_place=fresh(weights, name))

    def backbone(self) -> torch.nn.Module:
        """The family's float32 backbone holding `weights()`: forward(input_ids, attention_mask) -> states."""
        return self.bundle.family.backbone(self.bundle, self.weights(), rope_theta=self.spec.rope_theta)


class _AdaptedWeights(Mapping[str, torch.Tensor]):
    def __init__(self, adapted: Adapted):
        self.adapted = adapted

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.adapted.tensor(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.adapted.bundle.weights)

    def __len__(self) -> int:
        return len(self.adapted.bundle.weights)


def adapt(bundle: Bundle, *, task: str | None, lora: str | None, rope_theta: float | None = None,
          max_length: int | None = None, role: str | None = None, part: str = "text") -> Adapted:
    """`lora`: "merge" (one `task` folded in), "keep" (every adapter, chosen per call) or None (no adapters, or a
    pre-merged checkpoint whose `task` names what it is). `rope_theta` None keeps the checkpoint's value. `part`:
    which part of a multi-part model (text, vision, combined: the family's `parts`)."""
    spec = bundle.spec if part == "text" else bundle.family.part_spec(bundle, part)
    theta = rope_theta if rope_theta is not None else spec.rope_theta
    if lora == "keep":
        task = None
    elif lora is None and task is None:
        task = spec.task  # a pre-merged checkpoint keeps its task
    spec = dataclasses.replace(spec, rope_theta=theta, lora=lora, task=task,
                               **({"max_length": max_length} if max_length else {}),
                               **({"role": role} if role is not None else {}))
    index = bundle.lora.index(task) if lora == "merge" and bundle.lora is not None else None
    return Adapted(bundle, spec, index)
