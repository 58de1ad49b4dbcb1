"""The PyTorch reference: the family's float32 backbone with the task's adapter merged, SDPA attention."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from embcc.export.graph import EmbeddingGraph, adapt
from embcc.families.base import Bundle
from embcc.runtimes.base import Embedder


class TorchEmbedder(Embedder):
    runtime = "torch"

    def __init__(self, bundle: Bundle, *, rope_theta: float | None = None, max_length: int | None = None,
                 task: str | None = None):
        """`task` names a pre-merged checkpoint's task (as `--task` does at export)."""
        theta = rope_theta if rope_theta is not None else bundle.spec.rope_theta
        spec = dataclasses.replace(bundle.spec, rope_theta=theta)
        if task is not None and bundle.lora is None and spec.task is not None:
            from embcc.export.graph import resolve_tasks

            spec = dataclasses.replace(spec, task=resolve_tasks(bundle, task)[0])
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
            self._graph, _ = adapt(self.bundle, task=task, lora=lora, rope_theta=self.spec.rope_theta)
            self._graph_task = task_id
        return self._graph

    def _embed(self, input_ids: np.ndarray, attention_mask: np.ndarray, task_id: int | None) -> np.ndarray:
        graph = self.graph(task_id)
        with torch.inference_mode():
            _, sentence = graph(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
        return sentence.numpy()
