"""int8 ONNX through onnxruntime.quantization.

static (default): QDQ pairs (QuantizeLinear/DequantizeLinear, standard ONNX ops), symmetric int8 activations
  and per-channel symmetric int8 weights on the weight MatMuls only. LayerNorm, Softmax, GELU, residual Adds,
  attention's activation-by-activation MatMuls and the kept LoRA adapters stay float. Ranges are measured
  on the calibration feeds (minmax, entropy or percentile) and cached by ONNX Runtime's own calibration cache.
  Embedding tables are stored int8 per row and dequantized before the lookup (weight-only). This is the form
  TensorRT 11 consumes: its precision comes from the graph alone.
dynamic: onnxruntime's quantize_dynamic with its defaults, the simple baseline (no calibration data).

Two graphs for a static export, one weight file (model.int8.data) shared by both:
- `model.onnx`, what ONNX Runtime runs (the name every client loads): the same per-channel int8 weights with
  activations quantized per call to uint8 (DynamicQuantizeMatMul / MatMulInteger, u8 x s8 for AVX-512 VNNI), int8
  embedding rows gathered first and scaled after. This form is dynamic quantization: it does not depend on the
  calibration data (measured: static uint8 QDQ ran slower on x86, and int8 x int8 QDQ is left unfused there).
- `model.portable.onnx`, standard ops only: explicit QuantizeLinear/DequantizeLinear pairs with the calibrated,
  symmetric int8 activation ranges, what TensorRT 11 and other ONNX consumers read.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from embcc.calibration.activations import errors, float_outputs, layer_of
from embcc.calibration.cache import trusted, write_atomic
from embcc.core import progress
from embcc.core.onnxfile import initializer_bytes, needs_external, save_onnx, share_weights

METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}
MODES = ("static", "dynamic")
HISTOGRAM_METHODS = ("entropy", "percentile")
QUANTIZED_OPS = ["MatMul", "Gemm"]
MIN_TABLE = 256  # tables with fewer rows stay float (token types); vocabularies are far larger
PORTABLE_FILE = "model.portable.onnx"
WEIGHTS = "model.int8.data"


class _Reader(CalibrationDataReader):
    def __init__(self, feeds: list[dict]):
        self.feeds = feeds
        self.i, self.end = 0, len(feeds)

    def get_next(self) -> dict | None:
        if self.i >= self.end:
            return None
        self.i += 1
        progress.step("int8 calibration batch", self.i, self.end)
        return self.feeds[self.i - 1]

    def __len__(self) -> int:
        return len(self.feeds)

    def set_range(self, start_index: int, end_index: int) -> None:  # ONNX Runtime's strided collection
        self.i, self.end = start_index, min(end_index, len(self.feeds))


def activation_matmuls(model: onnx.ModelProto) -> list[str]:
    """MatMuls with no weight: attention scores and context, and kept LoRA adapters gathered by task_id."""
    weights = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS and not weights & set(n.input[:2])]


def _tables(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, onnx.TensorProto]]:
    inits = {i.name: i for i in model.graph.initializer}
    users: dict[str, int] = {}
    for n in model.graph.node:
        for x in n.input:
            users[x] = users.get(x, 0) + 1
    out = []
    for n in model.graph.node:
        t = inits.get(n.input[0]) if n.op_type == "Gather" else None
        if (t is not None and t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 2
                and t.dims[0] >= MIN_TABLE and users[t.name] == 1 and _attr(n, "axis", 0) == 0):
            out.append((n, t))
    return out


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def quantize_tables(model: onnx.ModelProto) -> list[str]:
    """Embedding tables -> int8 per row (symmetric) + fp32 scale per row, dequantized before the lookup
    (DequantizeLinear axis 0 -> Gather: weight-only, standard ops). Returns the table names."""
    done = []
    inits = model.graph.initializer
    for node, table in _tables(model):
        w = numpy_helper.to_array(table)
        scale = (np.abs(w).max(axis=1) / 127.0).astype(np.float32)
        scale[scale == 0] = 1.0
        q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
        name = table.name
        inits.remove(table)
        inits.extend([numpy_helper.from_array(q, f"{name}_int8"), numpy_helper.from_array(scale, f"{name}_scale")])
        dq = helper.make_node("DequantizeLinear", [f"{name}_int8", f"{name}_scale"], [name], axis=0,
                              name=f"{node.name}_dq")
        model.graph.node.insert(list(model.graph.node).index(node), dq)
        done.append(name)
    return done


def gather_then_scale(model: onnx.ModelProto) -> int:
    """ONNX Runtime form of the int8 tables: it does not fold a DequantizeLinear of an initializer, so
    DequantizeLinear -> Gather would dequantize the whole table on every run (78 ms for a 250k x 768 table on
    2 cores). Gather the int8 rows and their scales instead, then scale: same tensors, same numbers."""
    inits = {i.name for i in model.graph.initializer}
    nodes = list(model.graph.node)
    done = 0
    for dq in nodes:
        if dq.op_type != "DequantizeLinear" or not dq.input[0].endswith("_int8") or dq.input[0] not in inits:
            continue
        users = [n for n in nodes if dq.output[0] in n.input]
        if len(users) != 1 or users[0].op_type != "Gather" or users[0].input[0] != dq.output[0]:
            continue
        gather, (q, scale), base = users[0], dq.input[:2], dq.output[0]
        ids, out = gather.input[1], gather.output[0]
        new = [
            helper.make_node("Gather", [q, ids], [f"{base}_rows_int8"], name=f"{gather.name}_rows"),
            helper.make_node("Gather", [scale, ids], [f"{base}_rows_scale"], name=f"{gather.name}_scales"),
            helper.make_node("Cast", [f"{base}_rows_int8"], [f"{base}_rows"], to=onnx.TensorProto.FLOAT,
                             name=f"{gather.name}_cast"),
            helper.make_node("Unsqueeze", [f"{base}_rows_scale", f"{base}_last_axis"], [f"{base}_rows_scale_u"],
                             name=f"{gather.name}_unsqueeze"),
            helper.make_node("Mul", [f"{base}_rows", f"{base}_rows_scale_u"], [out], name=f"{gather.name}_scale"),
        ]
        model.graph.initializer.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), f"{base}_last_axis"))
        at = list(model.graph.node).index(gather)
        model.graph.node.remove(dq)
        model.graph.node.remove(gather)
        for k, n in enumerate(new):
            model.graph.node.insert(at - 1 + k, n)
        done += 1
    return done


def _quantize(src: Path, dst: Path, feeds: list[dict] | None, *, method: str, cache_file: Path,
              activations: QuantType, exclude: list[str], large: bool) -> None:
    hit = trusted(cache_file)
    # ONNX Runtime writes its calibration cache itself: on a miss it writes a private file beside the quantized
    # graph (inside the export's staging directory), which is then copied into the cache whole (cache.write_atomic:
    # renamed into place, the user's umask, a full cache disk reported as such), so a run killed mid-write leaves
    # no half-written entry that a later run would trust.
    target = cache_file if hit else Path(dst).parent / f"{cache_file.name}.ort"
    with contextlib.redirect_stdout(io.StringIO()):  # the percentile calibrator print()s its settings
        _quantize_static(src, dst, None if hit else _Reader(feeds or []), method, target, activations, exclude, large)
    if not hit:
        write_atomic(cache_file, target.read_bytes())
        target.unlink()


def _quantize_static(src: Path, dst: Path, reader: _Reader | None, method: str, target: Path,
                     activations: QuantType, exclude: list[str], large: bool) -> None:
    quantize_static(
        str(src), str(dst), reader,
        quant_format=QuantFormat.QDQ, op_types_to_quantize=QUANTIZED_OPS, per_channel=True,
        activation_type=activations, weight_type=QuantType.QInt8, calibrate_method=METHODS[method],
        nodes_to_exclude=exclude, calibration_cache_path=str(target), use_external_data_format=large,
        extra_options={"ActivationSymmetric": activations == QuantType.QInt8, "WeightSymmetric": True,
                       # The histogram calibrators (entropy, percentile) stack every batch's activations with
                       # np.asarray, which numpy >= 1.24 refuses for batches of different lengths (ValueError:
                       # inhomogeneous shape): collect one batch at a time instead, the histograms merge
                       # across calls. MinMax takes every batch at once, as before.
                       **({"CalibStridedMinMax": 1} if method in HISTOGRAM_METHODS else {})},
    )


def lower_int8(src: Path, dst_dir: Path, feeds: Callable[[], list[dict]], *, method: str, mode: str,
               cache_file: Path | None, fused: Path | None = None) -> dict:
    """Write model.onnx (ONNX Runtime form: from `fused`, the fp32 graph with fused attention, where there is
    one) and, for static, model.portable.onnx (calibrated QDQ, from the standard-ops fp32 graph `src`) into
    dst_dir; returns the report."""
    ort_src = fused or src
    # scratch inside the export's staging directory: a killed run leaves it where the next run on the same --out
    # removes it, not in /tmp
    with tempfile.TemporaryDirectory(prefix=".int8-", dir=dst_dir) as tmp:
        staged = Path(tmp) / "q.onnx"
        if mode == "dynamic":
            quantize_dynamic(str(ort_src), str(staged), weight_type=QuantType.QInt8)
            quantized = onnx.load(str(staged))
            save_onnx(quantized, dst_dir / "model.onnx")
            return {"mode": "dynamic", "format": "QOperator (onnxruntime quantize_dynamic defaults)",
                    "forms": {"model.onnx": "ONNX Runtime dynamic int8 (com.microsoft and integer ops)"},
                    "cache": "not used"}
        assert cache_file is not None
        hit = trusted(cache_file)
        fp32 = onnx.load(str(src))
        large = needs_external(initializer_bytes(fp32))  # the one external-data rule (core.onnxfile)
        # Portable: symmetric int8 everywhere (zero point 0, as TensorRT requires), attention's
        # activation-by-activation MatMuls left float.
        excluded = activation_matmuls(fp32)
        _quantize(src, staged, None if hit else feeds(), method=method, cache_file=cache_file,
                  activations=QuantType.QInt8, exclude=excluded, large=large)
        model = onnx.load(str(staged))
        tables = quantize_tables(model)
        save_onnx(model, dst_dir / PORTABLE_FILE, external=True, location=WEIGHTS)
        # ONNX Runtime on x86: the same int8 weights, activations quantized per call to uint8
        # (DynamicQuantizeMatMul / MatMulInteger: u8 x s8, what AVX-512 VNNI runs). Measured on full-size
        # v2-small, 32 x 128: static int8 x int8 QDQ is left unfused by ONNX Runtime on x86 and ran slower than
        # fp32; static uint8 QDQ 0.327 s; this form 0.281 s (the plain quantize_dynamic path: 0.284 s).
        # Attention's activation MatMuls stay float (quantized with ranges from <=512-token calibration texts
        # they fell to min cosine 0.964 on longer v5 probes).
        ort_excluded = excluded if fused is None else activation_matmuls(onnx.load(str(fused), load_external_data=False))
        quantize_dynamic(str(ort_src), str(staged), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=QUANTIZED_OPS, nodes_to_exclude=ort_excluded,
                         use_external_data_format=large)
        ort_model = onnx.load(str(staged))
        quantize_tables(ort_model)
        gather_then_scale(ort_model)
        shared = share_weights(ort_model, dst_dir / PORTABLE_FILE, dst_dir / "model.onnx")
    return {
        "mode": "static", "method": method,
        "format": {"model.onnx": "ONNX Runtime integer ops: dynamic quantization (activations quantized per call; "
                                 "does not use the calibration data)",
                   PORTABLE_FILE: "QDQ (QuantizeLinear/DequantizeLinear), calibrated activation ranges"},
        "activations": {"model.onnx": "uint8, per tensor, computed per call (u8 x s8 for AVX-512 VNNI)",
                        PORTABLE_FILE: f"int8 symmetric, per tensor, calibrated ({method})"},
        "weights": "int8 symmetric, per output channel (the same tensors in both forms)",
        "weights_shared": shared,
        "quantized_ops": QUANTIZED_OPS, "embedding_tables_int8": tables,
        "kept_float": {"activation_matmuls": excluded,
                       "op_types": "LayerNormalization, Softmax, Erf/GELU, Add (residual, bias), everything not listed"},
        "forms": {"model.onnx": "what ONNX Runtime runs (com.microsoft/integer ops): dynamic uint8 activations, "
                                "embedding rows gathered as int8 then scaled; independent of the calibration data",
                  PORTABLE_FILE: "portable QDQ with the calibrated ranges, standard ONNX ops only (TensorRT 11 / any EP)",
                  WEIGHTS: "the weights of both forms (ONNX external data)"},
        "cache": "hit" if hit else "miss",
    }


def layer_errors(fp32: Path, quantized: Path, feeds: list[dict], top: int = 10) -> list[dict]:
    """The nodes (and their layers) that add the most error in the quantized graph, on a few feeds."""
    model = onnx.load(str(fp32))
    with tempfile.TemporaryDirectory(prefix=".int8-report-", dir=Path(quantized).parent) as tmp:
        err, _ = errors(fp32, quantized, list(float_outputs(model)), feeds, Path(tmp))
    rows = []
    for n in model.graph.node:
        outs = [err[o] for o in n.output if o in err]
        if not outs:
            continue
        added = max(outs) - max((err.get(i, 0.0) for i in n.input), default=0.0)
        rows.append({"node": n.name, "op": n.op_type, "layer": layer_of(n), "added_error": added,
                     "error_after": max(outs)})
    rows.sort(key=lambda r: (-r["added_error"], r["node"]))
    return rows[:top]
