"""ONNX writer: trace an EmbeddingGraph with torch.onnx's dynamo exporter.

The contract follows Jina's own v3 ONNX: inputs `input_ids`, `attention_mask` (int64 [batch, sequence]) and,
when adapters are kept, `task_id` (int64; a scalar or a one-element array), first output `text_embeds` (token
states). embcc adds `sentence_embedding` (pooled as the family pools, L2-normalised). Batch and sequence axes
are dynamic; RoPE and ALiBi tables are computed from the runtime length, not frozen at the traced one.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import onnx
import torch

from embcc.export.graph import EmbeddingGraph

OPSET = 18
MODEL_FILE = "model.onnx"
EXTERNAL_DATA_LIMIT = 2 * 1024**3 - 64 * 1024**2  # protobuf's 2 GB ceiling, with room for the graph itself
INPUTS = ["input_ids", "attention_mask"]
OUTPUTS = ["text_embeds", "sentence_embedding"]


def param_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def export_onnx(graph: EmbeddingGraph, out_dir: Path, *, trace_length: int = 16) -> Path:
    """Write `model.onnx` (plus `model.onnx_data` for graphs over 2 GB) into `out_dir`; returns the path."""
    batch, seq = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("sequence", min=2, max=131072)
    ids = torch.full((2, trace_length), 5, dtype=torch.long)
    ids[:, 0] = 0
    mask = torch.ones_like(ids)
    mask[1, trace_length // 2 :] = 0
    args: tuple = (ids, mask)
    names = list(INPUTS)
    dynamic: dict = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
    if graph.keeps_adapters:
        args += (torch.zeros(1, dtype=torch.long),)
        names.append("task_id")
        dynamic["task_id"] = None
    path = Path(out_dir) / MODEL_FILE
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            graph, args, dynamo=True, input_names=names, output_names=OUTPUTS, dynamic_shapes=dynamic,
            opset_version=OPSET, optimize=True, verbose=False, report=False,
        )
    external = param_bytes(graph) > EXTERNAL_DATA_LIMIT
    program.save(str(path), external_data=external)
    if graph.keeps_adapters:
        _free_task_id_rank(path)
    return path


def _free_task_id_rank(path: Path) -> None:
    """Let task_id be a scalar or a one-element array, as clients of Jina's graph send either.

    The graph reshapes task_id to [1] before use, so its declared input shape can be left open.
    """
    model = onnx.load(str(path), load_external_data=False)
    for inp in model.graph.input:
        if inp.name == "task_id":
            inp.type.tensor_type.ClearField("shape")
    onnx.save(model, str(path))  # external tensors keep pointing at model.onnx_data
