"""Is an ONNX graph one TensorRT's ONNX parser takes as written? A CPU check, for CI and before every build.

TensorRT builds from the graph alone (TensorRT 11: strongly typed, precision from the graph's types and its
QuantizeLinear/DequantizeLinear pairs), so what the graph says is what the engine computes. This module reads a
graph (no weights loaded) and lists the problems TensorRT would refuse or run differently from ONNX Runtime:

- ops outside the standard ONNX domain (com.microsoft contrib ops: the ONNX Runtime int8 form) or outside the
  ops TensorRT's ONNX parser imports; opset below 17 (no LayerNormalization);
- inputs TensorRT cannot bind: an input without a rank (embcc's task_id, fixed by `prepare_for_tensorrt`),
  token ids or masks that are not int64, fp16 inputs or outputs on an fp16 graph;
- axes the parser needs as constants (Reduce*, Slice, Squeeze, Unsqueeze, CumSum) computed at run time;
- tensor types TensorRT lacks (double, uint8 inside the graph, 16/32/64-bit unsigned ...);
- QDQ placement: zero points that are not int8 zeros, scales that are not constants, a QuantizeLinear not
  followed only by DequantizeLinear, per-tensor or wrongly-oriented weight scales on MatMul/Gemm, a MatMul with
  int8 weights and float activations (or the reverse), per-channel activation scales.

It also says what the graph has (`Readiness.notes`): opset, precision, how norms are expressed (LayerNormalization
or decomposed, e.g. RMSNorm before opset 23), how many GEMMs are int8, embedding tables stored int8.

The op list is the set of importers in onnx-tensorrt's onnxOpImporters.cpp (TensorRT 10.x); the constant-axes
and QDQ rules are that parser's own assertions. A newer TensorRT may take more.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MIN_OPSET = 17  # LayerNormalization arrives in opset 17
NEWEST_KNOWN_OPSET = 22
STANDARD_DOMAINS = ("", "ai.onnx")
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "task_id")

# The standard-domain ops TensorRT 10.x's ONNX parser imports (onnx-tensorrt, onnxOpImporters.cpp).
_IMPORTERS = """
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike Ceil Celu
Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace DequantizeLinear Div
Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor GRU Gather GatherElements GatherND Gelu Gemm
GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization HardSigmoid
HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LRN LSTM LayerNormalization LeakyRelu
Less LessOrEqual Log LogSoftmax Loop LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min
Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or PRelu Pad ParametricSoftplus Pow QuantizeLinear RNN
RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum
ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
ReverseSequence RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin
Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK
Transpose Trilu Unsqueeze Upsample Where Xor
"""
TENSORRT_ONNX_OPS = frozenset(_IMPORTERS.split())

# Inputs the parser reads at build time (it asserts they are initializers or Constant outputs), from opset 13/18 on.
CONSTANT_INPUTS = {
    **{op: (1, "axes") for op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
                                  "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Squeeze", "Unsqueeze")},
    "Slice": (3, "axes"),
    "CumSum": (1, "axis"),
    "Pad": (3, "axes"),
}
# Types TensorRT has no tensors for (uint8 only as a network input or output).
NO_TENSORRT_TYPE = {TensorProto.DOUBLE: "double", TensorProto.STRING: "string", TensorProto.UINT16: "uint16",
                    TensorProto.UINT32: "uint32", TensorProto.UINT64: "uint64", TensorProto.INT16: "int16",
                    TensorProto.COMPLEX64: "complex64", TensorProto.COMPLEX128: "complex128"}
FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16)
TYPE_NAMES = {v: k.lower() for k, v in TensorProto.DataType.items()}


@dataclass
class Readiness:
    path: str
    precision: str  # what the graph computes in: fp32 | fp16 | int8
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.problems


def check_onnx_for_tensorrt(path: str | Path) -> list[str]:
    """The problems TensorRT's ONNX parser would have with the graph at `path` (empty: ready)."""
    return inspect_onnx_for_tensorrt(path).problems


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node, subgraphs (If/Loop/Scan bodies) included."""
    for n in graph.node:
        yield n
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from _nodes(g)


def _attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _types(model: onnx.ModelProto) -> tuple[dict[str, int], str | None]:
    """Element type of every tensor, by ONNX type inference on the graph alone (stale value_info dropped: the fp16
    converter leaves some); returns the types and, where inference failed, why."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.value_info[:]
    error = None
    try:
        m = onnx.shape_inference.infer_shapes(m)
    except Exception as e:  # onnx raises its own InferenceError types
        error = str(e).splitlines()[0]
    types = {i.name: i.data_type for i in m.graph.initializer}
    for vi in (*m.graph.input, *m.graph.output, *m.graph.value_info):
        if vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for n in _nodes(m.graph):
        if n.op_type == "Constant" and n.output:
            t = _attr(n, "value")
            if isinstance(t, onnx.TensorProto):
                types[n.output[0]] = t.data_type
    return types, error


INT8_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul",
            "QLinearMatMul", "MatMulIntegerToFloat")


def _precision(model: onnx.ModelProto, types: dict[str, int]) -> str:
    if any(n.op_type in INT8_OPS for n in _nodes(model.graph)):
        return "int8"
    if any(t == TensorProto.FLOAT16 for t in types.values()):
        return "fp16"
    return "fp32"


def _name(node: onnx.NodeProto) -> str:
    return node.name or f"{node.op_type}->{node.output[0] if node.output else '?'}"


def _few(names: list[str], k: int = 3) -> str:
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


class _Graph:
    """Producers, consumers and constants of a graph, for the QDQ and constant-input rules."""

    def __init__(self, model: onnx.ModelProto):
        g = model.graph
        self.inits = {i.name: i for i in g.initializer}
        self.constants: dict[str, onnx.TensorProto] = dict(self.inits)
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in _nodes(g):
            for o in n.output:
                self.producer[o] = n
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
            if n.op_type == "Constant" and n.output and isinstance(_attr(n, "value"), onnx.TensorProto):
                self.constants[n.output[0]] = _attr(n, "value")

    def is_constant(self, name: str) -> bool:
        if name in self.constants:
            return True
        p = self.producer.get(name)  # Identity of a constant: the parser follows it
        return p is not None and p.op_type == "Identity" and self.is_constant(p.input[0])

    def array(self, name: str) -> np.ndarray | None:
        t = self.constants.get(name)
        if t is None:
            p = self.producer.get(name)
            return self.array(p.input[0]) if p is not None and p.op_type == "Identity" else None
        if t.data_location == TensorProto.EXTERNAL:  # weights are not loaded; scales and zero points are small
            return None
        return numpy_helper.to_array(t)

    def dims(self, name: str) -> list[int] | None:
        t = self.constants.get(name)
        return list(t.dims) if t is not None else None

    def made_by(self, name: str, op: str) -> onnx.NodeProto | None:
        p = self.producer.get(name)
        return p if p is not None and p.op_type == op else None


def inspect_onnx_for_tensorrt(path: str | Path) -> Readiness:
    """Problems and notes for the graph at `path` (weights stay on disk)."""
    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    types, inference_error = _types(model)
    r = Readiness(str(path), _precision(model, types))
    g = _Graph(model)
    nodes = list(_nodes(model.graph))
    for f in model.functions:
        nodes += list(f.node)
    functions = {(f.domain, f.name) for f in model.functions}

    # opset and domains
    opsets = {o.domain: o.version for o in model.opset_import}
    opset = opsets.get("", opsets.get("ai.onnx", 0))
    if opset < MIN_OPSET:
        r.problems.append(f"opset {opset} < {MIN_OPSET}: no LayerNormalization, and TensorRT's parser wants a recent "
                          f"opset; export at opset {MIN_OPSET}-{NEWEST_KNOWN_OPSET}")
    elif opset > NEWEST_KNOWN_OPSET:
        r.notes.append(f"opset {opset} is newer than the {NEWEST_KNOWN_OPSET} embcc knows TensorRT 10.x parses")
    foreign: dict[str, list[str]] = {}
    unknown: dict[str, list[str]] = {}
    for n in nodes:
        if (n.domain, n.op_type) in functions:
            continue
        if n.domain not in STANDARD_DOMAINS:
            foreign.setdefault(n.domain, []).append(n.op_type)
        elif n.op_type not in TENSORRT_ONNX_OPS:
            unknown.setdefault(n.op_type, []).append(_name(n))
    for domain, ops in sorted(foreign.items()):
        kinds = sorted(set(ops))
        r.problems.append(f"{len(ops)} node(s) in domain {domain} ({_few(kinds)}): TensorRT's ONNX parser takes "
                          "standard ONNX ops only (feed it the portable graph, not ONNX Runtime's form)")
    for op, names in sorted(unknown.items()):
        r.problems.append(f"op {op} ({_few(names)}) is not one TensorRT's ONNX parser imports")

    # inputs and outputs
    for vi in model.graph.input:
        if vi.name in g.inits:
            continue
        tt = vi.type.tensor_type
        kind = TYPE_NAMES.get(tt.elem_type, str(tt.elem_type))
        if not tt.HasField("shape"):
            r.problems.append(f"input {vi.name} has no rank: TensorRT binds inputs of a fixed rank "
                              "(prepare_for_tensorrt fixes task_id to shape [1])")
        if vi.name in TOKEN_INPUTS and tt.elem_type != TensorProto.INT64:
            r.problems.append(f"input {vi.name} is {kind}, not int64 (the contract every embcc runtime feeds)")
        if tt.elem_type in (TensorProto.FLOAT16, TensorProto.BFLOAT16):
            r.problems.append(f"input {vi.name} is {kind}: keep graph inputs fp32 (runtimes feed fp32)")
    for vi in model.graph.output:
        t = vi.type.tensor_type.elem_type
        if t in (TensorProto.FLOAT16, TensorProto.BFLOAT16):
            r.problems.append(f"output {vi.name} is {TYPE_NAMES[t]}: keep graph outputs fp32 on reduced-precision "
                              "graphs (convert with keep_io_types)")

    # types
    bad: dict[str, list[str]] = {}
    io = {vi.name for vi in (*model.graph.input, *model.graph.output)}
    for name, t in types.items():
        if t in NO_TENSORRT_TYPE or (t == TensorProto.UINT8 and name not in io):
            bad.setdefault(NO_TENSORRT_TYPE.get(t, "uint8"), []).append(name)
    for kind, names in sorted(bad.items()):
        r.problems.append(f"{len(names)} {kind} tensor(s) ({_few(sorted(names))}): TensorRT has no {kind} tensors "
                          "inside a network")
    if inference_error:
        r.notes.append(f"ONNX type inference stopped early ({inference_error}); type checks cover what it inferred")

    # inputs the parser reads at build time
    for n in nodes:
        rule = CONSTANT_INPUTS.get(n.op_type)
        if rule and len(n.input) > rule[0] and n.input[rule[0]] and not g.is_constant(n.input[rule[0]]):
            r.problems.append(f"{n.op_type} {_name(n)} computes its {rule[1]} at run time: TensorRT's parser needs "
                              "them as an initializer")

    _check_qdq(nodes, g, types, r)
    _describe_norms(nodes, g, types, opset, r)
    r.notes.insert(0, f"opset {opset}, {len(nodes)} nodes, {r.precision} graph")
    return r


def _check_qdq(nodes: list[onnx.NodeProto], g: _Graph, types: dict[str, int], r: Readiness) -> None:
    qs = [n for n in nodes if n.op_type == "QuantizeLinear"]
    dqs = [n for n in nodes if n.op_type == "DequantizeLinear"]
    if not qs and not dqs:
        return
    for n in (*qs, *dqs):
        scale = n.input[1] if len(n.input) > 1 else ""
        if not g.is_constant(scale):
            r.problems.append(f"{n.op_type} {_name(n)}: its scale is computed at run time (TensorRT needs a constant)")
        zp = n.input[2] if len(n.input) > 2 and n.input[2] else None
        if zp is None:
            if n.op_type == "QuantizeLinear":
                r.problems.append(f"QuantizeLinear {_name(n)} has no zero point, so ONNX quantizes to uint8; "
                                  "TensorRT takes int8 with zero point 0 (quantize symmetrically)")
            continue
        zp_type = g.constants[zp].data_type if zp in g.constants else types.get(zp)
        if zp_type != TensorProto.INT8:
            r.problems.append(f"{n.op_type} {_name(n)} quantizes to {TYPE_NAMES.get(zp_type, '?')}: TensorRT takes "
                              "int8 (symmetric, zero point 0)")
        values = g.array(zp)
        if values is not None and np.any(values != 0):
            r.problems.append(f"{n.op_type} {_name(n)} has a non-zero zero point: TensorRT takes symmetric int8 only")
    for q in qs:
        users = g.consumers.get(q.output[0], [])
        if not users or any(u.op_type != "DequantizeLinear" for u in users):
            r.problems.append(f"QuantizeLinear {_name(q)} feeds {_few(sorted({u.op_type for u in users}) or ['nothing'])}"
                              ": TensorRT wants every QuantizeLinear followed by DequantizeLinear")
        s = g.array(q.input[1]) if len(q.input) > 1 else None
        if s is not None and s.size != 1:
            r.problems.append(f"QuantizeLinear {_name(q)} quantizes an activation per channel: TensorRT takes "
                              "per-tensor activation scales")
    for dq in dqs:
        q = g.made_by(dq.input[0], "QuantizeLinear")
        if q is not None and (q.input[1:3] != dq.input[1:3]):
            a = [g.array(x) for x in q.input[1:3]]
            b = [g.array(x) for x in dq.input[1:3]]
            same = len(a) == len(b) and all(x is not None and y is not None and np.array_equal(x, y)
                                            for x, y in zip(a, b))
            if not same:
                r.problems.append(f"DequantizeLinear {_name(dq)} does not undo its QuantizeLinear {_name(q)} "
                                  "(different scale or zero point)")

    gemms = int8_gemms = 0
    weight_only: list[str] = []
    float_weights: list[str] = []
    tables: list[str] = []
    output_q = 0
    for n in nodes:
        if n.op_type == "Gather":
            dq = g.made_by(n.input[0], "DequantizeLinear")
            if dq is not None and dq.input[0] in g.inits:
                tables.append(dq.input[0])
        if n.op_type not in ("MatMul", "Gemm"):
            continue
        gemms += 1
        if any(u.op_type == "QuantizeLinear" for u in g.consumers.get(n.output[0], [])):
            output_q += 1
        a_dq, b_dq = (g.made_by(x, "DequantizeLinear") for x in n.input[:2])
        weight_dq = b_dq if b_dq is not None and b_dq.input[0] in g.inits else None
        act_quantized = a_dq is not None and g.made_by(a_dq.input[0], "QuantizeLinear") is not None
        if weight_dq is None and b_dq is None and a_dq is None:
            continue
        if weight_dq is not None and not act_quantized:
            weight_only.append(_name(n))
            continue
        if act_quantized and b_dq is None:
            if n.input[1] in g.inits:
                float_weights.append(_name(n))
            continue
        if weight_dq is not None:
            _check_weight_scale(n, weight_dq, g, r)
        int8_gemms += 1
    if weight_only:
        r.problems.append(f"{len(weight_only)} MatMul/Gemm with int8 weights but float activations ({_few(weight_only)}): "
                          "TensorRT runs them as weight-only dequantization, not int8 GEMMs (quantize the input too)")
    if float_weights:
        r.problems.append(f"{len(float_weights)} MatMul/Gemm with a quantized activation but float weights "
                          f"({_few(float_weights)}): TensorRT cannot fuse them into int8 GEMMs")
    r.notes.append(f"{int8_gemms} of {gemms} MatMul/Gemm are int8 x int8 (QDQ on both inputs, per-channel weights); "
                   "the rest (attention's activation products, kept adapters) stay float")
    if output_q:
        r.notes.append(f"{output_q} MatMul outputs are quantized again (MatMul -> Q/DQ -> Add): TensorRT can fuse "
                       "that QuantizeLinear into the GEMM's output")
    if tables:
        r.notes.append(f"{len(tables)} embedding table(s) stored int8 per row (DequantizeLinear -> Gather, "
                       "weight-only; whether TensorRT folds that dequantization at build time or runs it per call "
                       "is unmeasured: see engine size and speed on a GPU)")


def _check_weight_scale(gemm: onnx.NodeProto, dq: onnx.NodeProto, g: _Graph, r: Readiness) -> None:
    """Per-output-channel weight scales: MatMul B [K, N] on axis 1; Gemm B on axis 1, or 0 when transB."""
    dims = g.dims(dq.input[0]) or []
    scale_dims = g.dims(dq.input[1])
    n_scales = int(np.prod(scale_dims)) if scale_dims is not None else None
    out_axis = (0 if _attr(gemm, "transB", 0) else 1) if gemm.op_type == "Gemm" else len(dims) - 1
    axis = int(_attr(dq, "axis", 1))
    if axis < 0:
        axis += len(dims)
    if n_scales == 1 or (scale_dims is not None and not scale_dims):
        r.problems.append(f"{gemm.op_type} {_name(gemm)}: weights quantized per tensor; quantize them per output "
                          "channel (per_channel=True)")
    elif dims and (axis != out_axis or (n_scales is not None and n_scales != dims[out_axis])):
        r.problems.append(f"{gemm.op_type} {_name(gemm)}: weight scales run along axis {axis}, not the output "
                          f"channel axis {out_axis} TensorRT fuses")


def _describe_norms(nodes: list[onnx.NodeProto], g: _Graph, types: dict[str, int], opset: int, r: Readiness) -> None:
    """Say how the norms are expressed; fp16 LayerNormalization computing in fp16 is a problem."""
    ln = [n for n in nodes if n.op_type == "LayerNormalization"]
    decomposed: list[onnx.NodeProto] = []
    for n in nodes:  # variance reductions: ReduceMean(Pow(x, 2)) or ReduceMean(x * x)
        if n.op_type != "ReduceMean":
            continue
        p = g.producer.get(n.input[0])
        if p is None:
            continue
        if p.op_type == "Pow":
            e = g.array(p.input[1])
            if e is not None and e.size == 1 and float(e.reshape(-1)[0]) == 2.0:
                decomposed.append(p)
        elif p.op_type == "Mul" and p.input[0] == p.input[1]:
            decomposed.append(p)
    if ln:
        half = [n for n in ln if types.get(n.input[0]) in (TensorProto.FLOAT16, TensorProto.BFLOAT16)]
        low_stash = [_name(n) for n in half if int(_attr(n, "stash_type", 1)) != 1]
        if low_stash:
            r.problems.append(f"{len(low_stash)} fp16 LayerNormalization with stash_type != 1 ({_few(low_stash)}): "
                              "they would accumulate in fp16; keep stash_type 1 (fp32)")
        r.notes.append(f"{len(ln)} LayerNormalization (opset {opset}; {len(half)} on fp16 inputs, computed in fp32 by "
                       "stash_type 1): TensorRT's normalization layer")
    if decomposed:
        half = [n for n in decomposed if types.get(n.input[0]) in (TensorProto.FLOAT16, TensorProto.BFLOAT16)]
        r.notes.append(f"{len(decomposed)} norm(s) decomposed into Pow/ReduceMean/Sqrt (RMSNorm: ONNX has no "
                       "RMSNormalization before opset 23): TensorRT runs them as written"
                       + (f"; {len(half)} square and average in fp16 (the fp16 pass measured their range on the "
                          "calibration texts and left them there)" if half else ", in fp32"))
    if not ln and not decomposed:
        r.notes.append("no normalization found in the graph")


def prepare_for_tensorrt(src: str | Path, dst: str | Path) -> Path:
    """Write the graph TensorRT parses to `dst`: `src` with every rank-less input fixed to shape [1] (embcc's
    task_id is a scalar-or-one-element input that the graph reshapes to [1]); external data files are copied
    beside `dst` under the names the graph records. Returns `dst`."""
    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src), load_external_data=False)
    for vi in model.graph.input:
        if vi.name not in {i.name for i in model.graph.initializer} and not vi.type.tensor_type.HasField("shape"):
            vi.type.tensor_type.shape.dim.add().dim_value = 1
    locations = set()
    for t in model.graph.initializer:
        if t.data_location == TensorProto.EXTERNAL:
            locations |= {e.value for e in t.external_data if e.key == "location"}
    for loc in sorted(locations):
        if src.parent / loc != dst.parent / loc:
            shutil.copyfile(src.parent / loc, dst.parent / loc)
    onnx.save(model, str(dst))
    return dst


def main(argv: list[str] | None = None) -> int:
    """python -m embcc.export.trt_ready GRAPH.onnx ...: problems and notes per graph; exit 1 if any has problems."""
    import sys

    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m embcc.export.trt_ready GRAPH.onnx [...]", file=sys.stderr)
        return 2
    worst = 0
    for p in paths:
        r = inspect_onnx_for_tensorrt(p)
        print(f"{p}: {'ready for TensorRT' if r.ready else f'{len(r.problems)} problem(s)'} ({r.precision})")
        for line in r.problems:
            print(f"  problem: {line}")
        for line in r.notes:
            print(f"  note: {line}")
        worst = max(worst, 0 if r.ready else 1)
    return worst


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["Readiness", "check_onnx_for_tensorrt", "inspect_onnx_for_tensorrt", "prepare_for_tensorrt"]
