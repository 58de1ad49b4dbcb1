"""ONNX Runtime Embedder over an embcc ONNX artifact (or any graph with Jina's v3 input contract)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from embcc.core.errors import EmbccError
from embcc.core.spec import ModelSpec
from embcc.runtimes.base import Embedder, pool_numpy


def session_options(threads: int | None = None) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return opts


class OnnxEmbedder(Embedder):
    runtime = "onnxruntime"

    def __init__(self, artifact: Path, *, threads: int | None = None, max_length: int | None = None,
                 model_file: str = "model.onnx"):
        artifact = Path(artifact)
        spec = ModelSpec.read(artifact)
        super().__init__(spec, artifact / "tokenizer.json", max_length)
        self.model_file = model_file
        path = artifact / model_file
        if not path.is_file():
            raise EmbccError(f"{artifact} has no {model_file}", "export it with --format onnx")
        try:
            self.session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own types (InvalidProtobuf, Fail, ...) for a damaged graph file
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EmbccError(f"ONNX Runtime cannot load {path} ({first[:300]})",
                             "the artifact is damaged or incomplete; export it again") from e
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]

    def _embed(self, input_ids: np.ndarray, attention_mask: np.ndarray, task_id: int | None) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "task_id" in self.inputs:
            if task_id is None:
                raise EmbccError("this graph selects its adapter by task_id", "pass a task")
            feeds["task_id"] = np.array(task_id, dtype=np.int64)
        if "sentence_embedding" in self.outputs:
            (sentence,) = self.session.run(["sentence_embedding"], feeds)
            return sentence
        (states,) = self.session.run([self.outputs[0]], feeds)
        return pool_numpy(states.astype(np.float64), attention_mask, self.spec.pooling)
