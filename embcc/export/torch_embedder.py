"""embcc's own adapted model, run in torch behind the Embedder interface (the graph the ONNX format traces).

This is NOT the reference `embcc verify` compares against (that is embcc.reference, which shares no code with
the export path): it is what the export path itself computes, for tests of the export step (keep against merge,
traced graph against its torch source) and for calibration experiments.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from embcc.core.adapted import adapt
from embcc.core.bundle import Bundle
from embcc.export.graph import EmbeddingGraph, build_graph
from embcc.runtimes.base import Embedder


class TorchEmbedder(Embedder):
    runtime = "torch (embcc's adapted graph)"

    def __init__(self, bundle: Bundle, *, rope_theta: float | None = None, max_length: int | None = None,
                 task: str | None = None):
        """`task` names a pre-merged checkpoint's task (as `--task` does at export)."""
        theta = rope_theta if rope_theta is not None else bundle.spec.rope_theta
        spec = dataclasses.replace(bundle.spec, rope_theta=theta)
        if task is not None and bundle.lora is None and spec.task is not None:
            spec = dataclasses.replace(spec, task=task)
        super().__init__(spec, bundle.path / "tokenizer.json", max_length)
        self.bundle = bundle
        self._graph: EmbeddingGraph | None = None
        self._graph_task: int | None = -1

    def graph(self, task_id: int | None) -> EmbeddingGraph:
        """One merged graph at a time (a full-size model per task would not fit next to the others)."""
        if self._graph is None or self._graph_task != task_id:
            self._graph = None
            task = None if task_id is None else self.spec.tasks[task_id].name
            lora = "merge" if self.bundle.lora is not None else None
            adapted = adapt(self.bundle, task=task, lora=lora, rope_theta=self.spec.rope_theta)
            self._graph = build_graph(adapted)
            self._graph_task = task_id
        return self._graph

    def _embed(self, input_ids: np.ndarray, attention_mask: np.ndarray, task_id: int | None) -> np.ndarray:
        graph = self.graph(task_id)
        with torch.inference_mode():
            _, sentence = graph(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
        return sentence.numpy()
