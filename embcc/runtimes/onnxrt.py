"""ONNX Runtime Embedder over an embcc ONNX artifact (or any graph with Jina's v3 input contract).

device "cpu" runs CPUExecutionProvider (the onnxruntime package); "cuda" runs CUDAExecutionProvider, which only
the onnxruntime-gpu package has (`pip install embcc[gpu]`, in place of onnxruntime).
"""

from __future__ import annotations

import contextlib
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


def providers(device: str) -> list:
    """Execution providers for `device`; a one-line error where this onnxruntime cannot run it."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device != "cuda":
        raise EmbccError(f"unknown device {device!r}", "choose cpu or cuda")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise EmbccError(f"onnxruntime {ort.__version__} here has no CUDAExecutionProvider (it is the CPU package)",
                         "pip install embcc[gpu] (onnxruntime-gpu) on a machine with CUDA, and remove the CPU "
                         "onnxruntime package there (both ship the onnxruntime module)")
    if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* wheels (torch's) where the system has none
        with contextlib.suppress(Exception):  # best effort; the session check in OnnxEmbedder says what is missing
            ort.preload_dlls()
    return [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]


class OnnxEmbedder(Embedder):
    runtime = "onnxruntime"

    def __init__(self, artifact: Path, *, threads: int | None = None, max_length: int | None = None,
                 model_file: str = "model.onnx", device: str = "cpu"):
        artifact = Path(artifact)
        spec = ModelSpec.read(artifact)
        super().__init__(spec, artifact / "tokenizer.json", max_length)
        self.model_file = model_file
        path = artifact / model_file
        if not path.is_file():
            raise EmbccError(f"{artifact} has no {model_file}", "export it with --format onnx")
        self.device = device
        try:
            self.session = ort.InferenceSession(str(path), session_options(threads), providers=providers(device))
        except Exception as e:  # onnxruntime's own types (InvalidProtobuf, Fail, ...) for a damaged graph file
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EmbccError(f"ONNX Runtime cannot load {path} ({first[:300]})",
                             "the artifact is damaged or incomplete; export it again") from e
        if device == "cuda":
            if self.session.get_providers()[0] != "CUDAExecutionProvider":
                raise EmbccError("onnxruntime-gpu could not start CUDA (its CUDA or cuDNN libraries were not found)",
                                 "install the CUDA and cuDNN versions this onnxruntime-gpu was built for")
            self.runtime = "onnxruntime-cuda"
        self.inputs = {i.name for i in self.session.get_inputs()}
        # task_id: a scalar, or [1] where the graph declares that rank (the graph a TensorRT engine is built from)
        self.task_shape = next((() if not i.shape else (1,) for i in self.session.get_inputs() if i.name == "task_id"), ())
        self.outputs = [o.name for o in self.session.get_outputs()]

    def _embed(self, input_ids: np.ndarray, attention_mask: np.ndarray, task_id: int | None) -> np.ndarray:
        feeds = {"input_ids": input_ids}
        if "attention_mask" in self.inputs:
            feeds["attention_mask"] = attention_mask
        self._task_feed(feeds, task_id)
        if "pixel_values" in self.inputs:  # Jina's combined graph: a zero-size batch for the image tower
            s = self._image_size()
            feeds["pixel_values"] = np.zeros((0, 3, s, s), dtype=np.float32)
            (sentence,) = self.session.run(["l2norm_text_embeddings"], feeds)
            return sentence
        if "sentence_embedding" in self.outputs:
            (sentence,) = self.session.run(["sentence_embedding"], feeds)
            return sentence
        (states,) = self.session.run([self.outputs[0]], feeds)
        return pool_numpy(states.astype(np.float64), attention_mask, self.spec.pooling)

    def _task_feed(self, feeds: dict, task_id: int | None) -> dict:
        """`feeds` with task_id added where the graph selects its adapter by it (kept adapters)."""
        if "task_id" in self.inputs:
            if task_id is None:
                raise EmbccError("this graph selects its adapter by task_id", "pass a task")
            feeds["task_id"] = np.full(self.task_shape, task_id, dtype=np.int64)
        return feeds

    def _embed_vl(self, feeds: dict[str, np.ndarray], task_id: int | None, vectors: str) -> tuple:
        feeds = self._task_feed({k: v for k, v in feeds.items() if k in self.inputs}, task_id)
        name = "multi_vector_embeddings" if vectors == "multi" else "sentence_embedding"
        (out,) = self.session.run([name], feeds)
        return (None, out) if vectors == "multi" else (out, None)

    def _embed_multi(self, input_ids: np.ndarray, attention_mask: np.ndarray, task_id: int | None) -> np.ndarray:
        if "multi_vector_embeddings" not in self.outputs:
            raise EmbccError(f"{self.model_file} has no multi-vector output", "use vectors='single'")
        feeds = self._task_feed({"input_ids": input_ids, "attention_mask": attention_mask}, task_id)
        (multi,) = self.session.run(["multi_vector_embeddings"], feeds)
        return multi

    def attention_kind(self) -> str | None:
        from embcc.runtimes.batching import METADATA_KEY

        return self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)

    def _image_size(self) -> int:
        from embcc.core.images import image_settings

        return image_settings(self.spec.image or {}).crop[0]

    def _embed_images(self, pixel_values: np.ndarray) -> np.ndarray:
        feeds = {"pixel_values": pixel_values.astype(np.float32)}
        if "input_ids" in self.inputs:  # the combined graph: a zero-size batch for the text tower
            feeds["input_ids"] = np.zeros((0, 2), dtype=np.int64)
        (image,) = self.session.run(["l2norm_image_embeddings"], feeds)
        return image
