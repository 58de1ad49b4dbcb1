"""Bundle -> EmbeddingGraph: the adapt step shared by every format.

The graph takes input_ids and attention_mask (and task_id when adapters are kept), runs the family's float32
reference backbone, and returns the token states and the pooled, L2-normalised sentence embedding.
LoRA merge/keep and RoPE rescaling happen here, once, for all formats and for the torch reference alike.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from embcc.errors import EmbccError
from embcc.export.lora import TaskSelector, keep_adapters, merged_weights
from embcc.families.base import Bundle
from embcc.modelspec import ModelSpec


def pool(states: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Sentence vector from token states; correct for left and right padding alike."""
    if pooling == "mean":
        m = mask.to(states.dtype).unsqueeze(-1)
        return (states * m).sum(1) / m.sum(1).clamp(min=1e-9)
    if pooling == "cls":
        return states[:, 0]
    if pooling == "last":
        positions = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
        last = (positions * mask.to(positions.dtype)).argmax(dim=1)
        return states[torch.arange(states.shape[0], device=states.device), last]
    raise ValueError(f"unknown pooling {pooling!r}")


class EmbeddingGraph(nn.Module):
    def __init__(self, backbone: nn.Module, pooling: str, selector: TaskSelector | None = None):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.selector = selector

    @property
    def keeps_adapters(self) -> bool:
        return self.selector is not None

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, task_id: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.selector is not None:
            self.selector.task_id = task_id
        states = self.backbone(input_ids, attention_mask)
        pooled = pool(states, attention_mask, self.pooling)
        return states, nn.functional.normalize(pooled, p=2.0, dim=-1)


def resolve_tasks(bundle: Bundle, task: str | None) -> list[str]:
    """`--task NAME|all` -> the list of task names, checked against the family."""
    names = [t.name for t in bundle.spec.tasks]
    if not names:
        if task is not None:
            raise EmbccError(f"{bundle.spec.family} has no task adapters, so --task does not apply", "leave out --task")
        return []
    if bundle.lora is None and bundle.spec.task is not None:  # pre-merged: one task, the one --task names
        if task == "all":
            raise EmbccError("this checkpoint has one task merged in, so --task all does not apply",
                             f"pass --task NAME (one of: {', '.join(names)}; default {bundle.spec.task})")
        task = task or bundle.spec.task
    if task is None or task == "all":
        return names
    if task not in names:
        raise EmbccError(f"unknown task {task!r} for {bundle.spec.family}", f"choose one of: {', '.join(names)}, all")
    return [task]


def adapt_spec(
    bundle: Bundle, *, task: str | None = None, lora: str | None = "merge", rope_theta: float | None = None
) -> ModelSpec:
    """The checks of `adapt` and the artifact's ModelSpec, without building a graph (for writers that map
    tensors instead of tracing, like GGUF)."""
    spec = bundle.spec
    if rope_theta is not None and spec.position != "rope":
        raise EmbccError(f"{spec.family} uses {spec.position} positions, so --rope-theta does not apply", "leave out --rope-theta")
    if rope_theta is not None and not rope_theta > 0:
        raise EmbccError(f"--rope-theta must be positive, got {rope_theta}", "pass e.g. --rope-theta 20000")
    theta = rope_theta if rope_theta is not None else spec.rope_theta
    if bundle.lora is None:
        if lora == "keep":
            raise EmbccError(f"{spec.family} checkpoint has no task adapters, so --lora keep does not apply", "leave out --lora")
        mode = None
        if task is not None:
            resolve_tasks(bundle, task)
        task = task if task is not None else spec.task  # a pre-merged checkpoint keeps its task
    elif lora in (None, "merge"):
        if task is None:
            raise EmbccError("merging adapters needs one task", "pass --task NAME")
        resolve_tasks(bundle, task)
        mode = "merge"
    elif lora == "keep":
        mode, task = "keep", None
    else:
        raise EmbccError(f"unknown --lora mode {lora!r}", "choose merge or keep")
    return dataclasses.replace(spec, rope_theta=theta, lora=mode, task=task)


def adapt(
    bundle: Bundle, *, task: str | None = None, lora: str | None = "merge", rope_theta: float | None = None
) -> tuple[EmbeddingGraph, ModelSpec]:
    """Build the graph for one task (merge), for all tasks (keep), or for a family without adapters."""
    out_spec = adapt_spec(bundle, task=task, lora=lora, rope_theta=rope_theta)
    if out_spec.lora == "merge":
        weights = merged_weights(bundle.weights, bundle.lora, out_spec.task)
    else:
        weights = bundle.weights
    backbone = bundle.family.backbone(bundle, weights, rope_theta=out_spec.rope_theta)
    selector = keep_adapters(backbone, bundle.lora) if out_spec.lora == "keep" else None
    graph = EmbeddingGraph(backbone, bundle.spec.pooling, selector).eval()
    return graph, out_spec
