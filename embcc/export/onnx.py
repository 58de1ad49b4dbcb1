"""ONNX: trace the adapted model with torch.onnx's dynamo exporter; fp16/int8 through embcc.calibration.

The contract follows Jina's own v3 ONNX: inputs `input_ids`, `attention_mask` (int64 [batch, sequence]) and,
when adapters are kept, `task_id` (int64; a scalar or a one-element array), first output `text_embeds` (token
states). embcc adds `sentence_embedding` (pooled as the family pools, L2-normalised) and `last_hidden_state` (the
token states again, under the name sentence-transformers/optimum and text-embeddings-inference read). Batch and sequence axes
are dynamic; RoPE and ALiBi tables are computed from the runtime length, not frozen at the traced one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch

from embcc.core.adapted import Adapted
from embcc.core.bundle import Bundle
from embcc.core.onnxfile import needs_external
from embcc.core.spec import ModelSpec
from embcc.export.base import Format, Option, Plan
from embcc.export.graph import EmbeddingGraph, build_graph

OPSET = 18
MODEL_FILE = "model.onnx"
INPUTS = ["input_ids", "attention_mask"]
OUTPUTS = ["text_embeds", "sentence_embedding"]  # as traced; then ALIAS is appended (_client_contract)
ALIAS = "last_hidden_state"
GRAPH_OUTPUTS = [*OUTPUTS, ALIAS]
PRECISIONS = ("fp32", "fp16", "int8")

PRECISION = Option("precision", "--precision", "fp32 (default) | fp16 | int8", PRECISIONS)
CALIBRATION_OPTIONS = (
    Option("calibration", "--calibration", "texts to calibrate on: one per line, or JSON lines "
           '{"text", "task"} (default: the built-in corpus)'),
    Option("calibration_method", "--calibration-method", "int8 static: minmax (default) | entropy | percentile",
           ("minmax", "entropy", "percentile")),
    Option("int8_mode", "--int8-mode", "static (default: QDQ, calibrated weights) | dynamic (quantize_dynamic)",
           ("static", "dynamic")),
    Option("calibration_max_length", "--calibration-max-length", "token cap per calibration text (default 512)",
           type=int),
    Option("cache_dir", "--cache-dir", "calibration cache (default ~/.cache/embcc; EMBCC_CACHE_DIR)"),
)


def param_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def trace(graph: EmbeddingGraph, out_dir: Path, *, trace_length: int = 16) -> Path:
    """Write `model.onnx` (plus `model.onnx_data` for large graphs) into `out_dir`; returns the path."""
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
    _drop_stack_traces(program.model)
    program.save(str(path), external_data=needs_external(param_bytes(graph)))
    _client_contract(path)
    return path


def _drop_stack_traces(model) -> None:
    """The exporter records each node's Python stack trace, with this machine's absolute source paths and line
    numbers: the same inputs would give other bytes from another checkout or after any edit, and artifacts would
    carry local paths. The module scopes (pkg.torch.onnx.name_scopes) stay: calibration reports layers by them."""
    from onnx_ir.traversal import RecursiveGraphIterator

    for node in RecursiveGraphIterator(model.graph):
        node.metadata_props.pop("pkg.torch.onnx.stack_trace", None)


def _client_contract(path: Path) -> None:
    """What clients of the graph expect beyond the traced outputs, in one rewrite of the graph file:

    - task_id may be a scalar or a one-element array, as clients of Jina's graph send either (the graph
      reshapes it to [1] before use, so its declared shape can be left open);
    - `last_hidden_state`, an Identity of `text_embeds` appended after the traced outputs: the name
      sentence-transformers' ONNX backend (optimum's ORTModelForFeatureExtraction) and text-embeddings-inference
      read token states by. text_embeds stays output 0 (Jina's contract, fastembed takes output 0).
    """
    model = onnx.load(str(path), load_external_data=False)
    for inp in model.graph.input:
        if inp.name == "task_id":
            inp.type.tensor_type.ClearField("shape")
    states = next(o for o in model.graph.output if o.name == OUTPUTS[0])
    alias = onnx.ValueInfoProto()
    alias.CopyFrom(states)
    alias.name = ALIAS
    model.graph.node.append(onnx.helper.make_node("Identity", [OUTPUTS[0]], [ALIAS], name="last_hidden_state_alias"))
    model.graph.output.append(alias)
    onnx.save(model, str(path))  # external tensors keep pointing at model.onnx_data


class OnnxFormat(Format):
    name = "onnx"
    options = (PRECISION, *CALIBRATION_OPTIONS)

    def check(self, bundle: Bundle, values: dict[str, Any], *, cli: bool) -> dict[str, Any]:
        from embcc.calibration import check as calibration_check

        precision = values.get("precision") or "fp32"
        calib = calibration_check(precision, bundle.spec, file=values.get("calibration"),
                                  method=values.get("calibration_method"), int8_mode=values.get("int8_mode"),
                                  max_length=values.get("calibration_max_length"),
                                  cache_dir=values.get("cache_dir"), fmt=self.name, cli=cli)
        return {"precision": precision, "calibration": calib}

    def recorded(self, plan: Plan) -> dict[str, Any]:
        out: dict[str, Any] = {"precision": plan.values["precision"]}
        calib = plan.values["calibration"]
        if calib is not None:
            out["calibration"] = {"source": calib.source, "method": calib.method, "max_length": calib.max_length,
                                  **({"int8_mode": calib.int8_mode} if plan.values["precision"] == "int8" else {})}
        return out

    def write(self, adapted: Adapted, where: Path, plan: Plan) -> ModelSpec:
        precision, calib = plan.values["precision"], plan.values["calibration"]
        spec = dataclasses.replace(adapted.spec, precision=precision)
        graph = build_graph(adapted)
        if calib is None:
            trace(graph, where)
            return spec
        from embcc.calibration import REPORT, lower

        with tempfile.TemporaryDirectory(prefix=".fp32-", dir=where) as fp32:
            trace(graph, Path(fp32))
            del graph
            report = lower(Path(fp32) / MODEL_FILE, where, precision=precision, spec=spec,
                           calibration=calib, checkpoint_sha256=adapted.bundle.source_sha256)
        (where / REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        return spec

