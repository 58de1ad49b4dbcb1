"""ONNX: trace the adapted model with torch.onnx's dynamo exporter; fp16/int8 through embcc.calibration.

The contract follows Jina's own v3 ONNX: inputs `input_ids`, `attention_mask` (int64 [batch, sequence]) and,
when adapters are kept, `task_id` (int64; a scalar or a one-element array), first output `text_embeds` (token
states). embcc adds `sentence_embedding` (pooled as the family pools, L2-normalised). Batch and sequence axes
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
from embcc.core.contract import GraphContract
from embcc.core.onnxfile import needs_external
from embcc.core.spec import ModelSpec
from embcc.export.base import Format, Option, Plan
from embcc.export.graph import build

OPSET = 18
MODEL_FILE = "model.onnx"
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


def trace(module: torch.nn.Module, contract: GraphContract, out_dir: Path) -> Path:
    """Write `model.onnx` (plus `model.onnx_data` for large graphs) into `out_dir` by `contract`; returns the path."""
    dims: dict[tuple[str, int, int], torch.export.Dim] = {}

    def dim(spec: tuple[str, int, int]) -> torch.export.Dim:
        if spec not in dims:
            dims[spec] = torch.export.Dim(spec[0], min=spec[1], max=spec[2])
        return dims[spec]

    dynamic = {name: None if axes is None else {a: dim(d) for a, d in axes.items()}
               for name, axes in contract.dynamic.items()}
    path = Path(out_dir) / MODEL_FILE
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            module, tuple(contract.inputs.values()), dynamo=True, input_names=list(contract.inputs),
            output_names=contract.outputs, dynamic_shapes=dynamic, opset_version=OPSET, optimize=True,
            verbose=False, report=False,
        )
    _drop_stack_traces(program.model)
    program.save(str(path), external_data=needs_external(param_bytes(module)))
    if contract.open_rank:
        _free_rank(path, contract.open_rank)
    return path


def _drop_stack_traces(model) -> None:
    """The exporter records each node's Python stack trace, with this machine's absolute source paths and line
    numbers: the same inputs would give other bytes from another checkout or after any edit, and artifacts would
    carry local paths. The module scopes (pkg.torch.onnx.name_scopes) stay: calibration reports layers by them."""
    from onnx_ir.traversal import RecursiveGraphIterator

    for node in RecursiveGraphIterator(model.graph):
        node.metadata_props.pop("pkg.torch.onnx.stack_trace", None)


def _free_rank(path: Path, names: tuple[str, ...]) -> None:
    """Leave the declared shape of `names` open: task_id may be a scalar or a one-element array, as clients of
    Jina's graph send either (the graph reshapes it to [1] before use)."""
    model = onnx.load(str(path), load_external_data=False)
    for inp in model.graph.input:
        if inp.name in names:
            inp.type.tensor_type.ClearField("shape")
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
        module, contract = build(adapted)
        if calib is None:
            trace(module, contract, where)
            return spec
        from embcc.calibration import REPORT, lower

        with tempfile.TemporaryDirectory(prefix=".fp32-", dir=where) as fp32:
            trace(module, contract, Path(fp32))
            del module
            report = lower(Path(fp32) / MODEL_FILE, where, precision=precision, spec=spec,
                           calibration=calib, checkpoint_sha256=adapted.bundle.source_sha256)
        (where / REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        return spec

