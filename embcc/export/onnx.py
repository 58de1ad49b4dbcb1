"""ONNX: trace the adapted model with torch.onnx's dynamo exporter; fp16/int8 through embcc.calibration.

The contract follows Jina's own v3 ONNX: inputs `input_ids`, `attention_mask` (int64 [batch, sequence]) and,
when adapters are kept, `task_id` (int64; a scalar or a one-element array), first output `text_embeds` (token
states). embcc adds `sentence_embedding` (pooled as the family pools, L2-normalised) and `last_hidden_state` (the
token states again, under the name sentence-transformers/optimum and text-embeddings-inference read). Batch and sequence axes
are dynamic; RoPE and ALiBi tables are computed from the runtime length, not frozen at the traced one.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch

from embcc.core.adapted import Adapted
from embcc.core.bundle import Bundle
from embcc.core.contract import GraphContract
from embcc.core.onnxfile import needs_external, save_onnx
from embcc.core.spec import ModelSpec
from embcc.export.attention import MIN_ORT, fuse_attention_file
from embcc.export.base import Format, Option, Plan
from embcc.export.graph import build

OPSET = 18
MODEL_FILE = "model.onnx"
PORTABLE_FILE = "model.portable.onnx"
WEIGHTS = "model.onnx_data"  # one weight file for both forms of a fused export
ATTENTION_REPORT = "attention.json"
ALIAS = "last_hidden_state"
TOKEN_STATES = "text_embeds"  # the text graphs' token states, output 0 (Jina's contract)
GRAPH_OUTPUTS = [TOKEN_STATES, "sentence_embedding", ALIAS]  # a text graph's outputs as clients see them
PRECISIONS = ("fp32", "fp16", "int8")

PRECISION = Option("precision", "--precision", f"weights and activations (default {PRECISIONS[0]})", PRECISIONS)
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
    streamed = getattr(module, "stream_weights", None)  # a module on the meta device and where its weights are
    args = tuple(contract.inputs.values())
    if streamed is not None:
        args = tuple(a.to("meta") for a in args)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            module, args, dynamo=True, input_names=list(contract.inputs),
            output_names=contract.outputs, dynamic_shapes=dynamic, opset_version=OPSET, optimize=streamed is None,
            verbose=False, report=False,
        )
    _drop_stack_traces(program.model)
    if streamed is None:
        program.save(str(path), external_data=needs_external(param_bytes(module)))
    else:
        _save_streamed(program.model, path, streamed)
    if contract.open_rank:
        _free_rank(path, contract.open_rank)
    if contract.outputs and contract.outputs[0] == TOKEN_STATES and "input_ids" in contract.inputs:
        _add_alias(path)  # a text graph clients feed token ids (not v4's decoder over spliced image embeddings)
    return path


def _save_streamed(model, path: Path, weights) -> None:
    """Save a graph traced on the meta device: optimised (onnxscript's optimizer, as torch.onnx.export's
    optimize=True) while its weights have no values, then each weight read from `weights` (name -> tensor: the
    checkpoint's files, the merged task folded in) and appended to the external data file one at a time, so
    no more than one tensor is in memory. The graph is the one optimize=True gives (tests compare the two)."""
    import numpy as np
    import onnx_ir as ir
    import onnxscript.optimizer

    for value in model.graph.initializers.values():
        value.const_value = None
    loggers = [logging.getLogger(n) for n in ("onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:  # one "skipped deduplication" warning per weight: they have no values yet, on purpose
        lg.setLevel(logging.ERROR)
    try:
        onnxscript.optimizer.optimize(model)
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    offset = 0
    with open(path.parent / WEIGHTS, "wb") as f:
        for name, value in model.graph.initializers.items():
            if value.const_value is not None:  # a constant the optimizer made: stays in the graph
                continue
            array = np.ascontiguousarray(weights(name).detach().numpy())
            f.write(array.tobytes())
            value.const_value = ir.ExternalTensor(WEIGHTS, offset, array.nbytes, ir.DataType.from_numpy(array.dtype),
                                                  shape=ir.Shape(array.shape), name=name, base_dir=str(path.parent))
            offset += array.nbytes
            del array
    ir.save(model, str(path))


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


def _add_alias(path: Path) -> None:
    """`last_hidden_state`, an Identity of `text_embeds` appended after the traced outputs: the name
    sentence-transformers' ONNX backend (optimum's ORTModelForFeatureExtraction) and text-embeddings-inference
    read token states by. text_embeds stays output 0 (Jina's contract; fastembed takes output 0)."""
    model = onnx.load(str(path), load_external_data=False)
    states = next(o for o in model.graph.output if o.name == TOKEN_STATES)
    alias = onnx.ValueInfoProto()
    alias.CopyFrom(states)
    alias.name = ALIAS
    model.graph.node.append(onnx.helper.make_node("Identity", [TOKEN_STATES], [ALIAS], name="last_hidden_state_alias"))
    model.graph.output.append(alias)
    onnx.save(model, str(path))


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
        """model.onnx is the graph ONNX Runtime runs; where attention fuses into its tiled kernels (the family
        says how), model.onnx holds the fused attention and model.portable.onnx the standard-ops graph, both
        reading one weight file. fp16 / int8 lower both forms (embcc.calibration)."""
        precision, calib = plan.values["precision"], plan.values["calibration"]
        spec = dataclasses.replace(adapted.spec, precision=precision)
        fusion = adapted.bundle.family.attention(adapted.bundle, adapted.spec.part)
        module, contract = build(adapted)
        with tempfile.TemporaryDirectory(prefix=".trace-", dir=where) as tmp:
            traced = trace(module, contract, Path(tmp))
            del module
            gc.collect()  # the traced module's weights (cycles through the exporter) before the ONNX passes load theirs
            fp32_dir = where if calib is None else Path(tmp) / "fp32"
            fp32_dir.mkdir(exist_ok=True)
            fused = _fp32_forms(traced, fp32_dir, fusion)
            if calib is not None:
                from embcc.calibration import REPORT, lower

                src = fp32_dir / (PORTABLE_FILE if fused else MODEL_FILE)
                report = lower(src, where, precision=precision, spec=spec, calibration=calib,
                               checkpoint_sha256=adapted.bundle.source_sha256,
                               fused=fp32_dir / MODEL_FILE if fused else None)
                (where / REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        if fused:
            _mark(where / MODEL_FILE, fused["kind"])  # the precision passes may drop model metadata
            (where / ATTENTION_REPORT).write_text(json.dumps(fused, indent=2, sort_keys=True) + "\n")
            spec = dataclasses.replace(spec, attention=fused["kind"], min_onnxruntime=MIN_ORT)
        return spec


def _mark(path: Path, kind: str) -> None:
    """Record the fused attention's kind in the graph's metadata (the runtimes batch by it)."""
    from embcc.export.attention import METADATA_KEY

    model = onnx.load(str(path), load_external_data=False)
    if {p.key: p.value for p in model.metadata_props}.get(METADATA_KEY) != kind:
        onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, METADATA_KEY: kind})
        onnx.save(model, str(path))


def _fp32_forms(traced: Path, dst: Path, fusion: dict | None) -> dict | None:
    """The fp32 graphs in `dst`: model.onnx alone (no fusion), or model.portable.onnx + model.onnx (fused
    attention) over one external weight file; returns the fusion report (None without fusion)."""
    if fusion is None:
        for f in list(traced.parent.iterdir()):
            if f != dst:  # dst may be a fresh directory beside the traced graph (the fp32 stage of fp16 / int8)
                os.replace(f, dst / f.name)
        return None
    graph = onnx.load(str(traced), load_external_data=False)
    files = {e.value for t in graph.graph.initializer for e in t.external_data if e.key == "location"}
    if len(files) == 1:  # a large graph: move its one weight file into place, never read the weights
        os.replace(traced.parent / files.pop(), dst / WEIGHTS)
        for t in graph.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = WEIGHTS
        onnx.save(graph, str(dst / PORTABLE_FILE))
    else:
        save_onnx(onnx.load(str(traced)), dst / PORTABLE_FILE, external=True, location=WEIGHTS)
    del graph
    return fuse_attention_file(dst / PORTABLE_FILE, dst / MODEL_FILE, **fusion)
