"""The torch graph a tracing format exports: the adapted backbone, pooling and L2 in one module.

EmbeddingGraph takes input_ids and attention_mask (and task_id when adapters are kept), runs the family's
float32 backbone, and returns the token states and the pooled, L2-normalised sentence embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from embcc.core.adapted import Adapted
from embcc.core.contract import GraphContract, text_contract
from embcc.core.lora import TaskSelector, keep_adapters


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


def build_graph(adapted: Adapted) -> EmbeddingGraph:
    """The adapted text model as one torch module (merged task folded in, or every adapter kept behind task_id)."""
    backbone = adapted.backbone()
    lora = adapted.bundle.lora
    selector = keep_adapters(backbone, lora) if adapted.keeps_adapters and lora is not None else None
    return EmbeddingGraph(backbone, adapted.spec.pooling, selector).eval()


def build(adapted: Adapted) -> tuple[nn.Module, GraphContract]:
    """The module a tracing format exports for the adapted model's part, and its contract: the text part is the
    graph above; any other part (an image tower, a combined graph) is the family's own module and contract."""
    family = adapted.bundle.family
    if adapted.spec.part == "text" and "text" not in getattr(family, "own_parts", ()):
        graph = build_graph(adapted)
        return graph, text_contract(graph.keeps_adapters)
    return family.part_module(adapted, adapted.spec.part)
