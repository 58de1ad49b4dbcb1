"""Attention fusion for ONNX Runtime: each attention block of embcc's portable (standard-ops) graph becomes one
contrib op, in a second graph beside the portable one.

ONNX Runtime tiles attention on CPU (never builds the batch x heads x L x L matrix) in two cases only (SPEC §6):
`com.microsoft.MultiHeadAttention` with 3D Q/K/V and neither key_padding_mask nor attention_bias, and
`com.microsoft.GroupQueryAttention` with causal=1. A padded batch needs its mask, so each fused block is an `If`
on one flag computed once per call ("this batch needs no mask"): the then-branch is the tiled op, the else-branch
the same attention with the mask (ORT's non-tiled path; fine where L^2 is small, and the runtime's batching,
embcc.runtimes.batching, keeps it there; long padded batches get a tiled row loop, below). Only the attention
core sits inside the `If`: projections, LoRA adapters, norms and RoPE stay in the main graph, shared by both
branches, so the fused graph holds every weight once and the int8/fp16 passes see the same weight MatMuls as in
the portable graph.

Matching is onnxscript's `fuse_sdpa` rule (4D Q/K/V, MatMul -> [scale] -> [+mask] -> Softmax -> MatMul); the
rewrite from there is this module's. Q/K/V enter the op as [B, S, heads*head_dim] through Transpose+Reshape;
onnxscript's optimizer and ONNX Runtime's transpose optimizer cancel those against the export's own layout
transposes (what is left is one Transpose of the RoPE tables per graph). Kinds:
- "mha" (bidirectional: v3, v5-nano): flag "every mask entry is 1"; then MHA. Else, for a right-padded batch
  longer than ROWS_MIN_LENGTH, a Loop over its rows, each row's real tokens through the unmasked op (tiled, so
  a client that pads long texts together stays bounded too); otherwise MHA + key_padding_mask.
- "gqa" (causal with grouped KV heads: v5-small): flag "every row is right-padded": under a causal mask a real
  token then never reaches a pad key, so GQA causal=1 (tiled, un-repeated KV heads) is exact for every real
  token; else (left padding, holes) MHA unidirectional + key_padding_mask over the repeated KV heads. Qwen3's
  per-head q/k RMSNorm and RoPE stay as ops (GQA's CPU kernel rejects q/k norm weights).
- "bias" (an additive score bias that is part of the model: v2's ALiBi): MHA + attention_bias, never tiled
  (ORT has no tiled path with a bias). Where the graph's bias is the model's bias with padded keys filled in
  (JinaBERT's masked_fill), the op gets the model's [1, H, L, L] bias alone and, for padded batches, the padding
  as key_padding_mask, so the [B, H, L, L] filled copy is never built.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import onnx_ir as ir
from onnx.external_data_helper import load_external_data_for_tensor
from onnx_ir.passes.common import ShapeInferencePass
from onnxscript import optimizer
from onnxscript.rewriter.ort_fusions.sdpa import fuse_sdpa

from embcc.errors import EmbccError

KINDS = ("mha", "gqa", "bias")
MS = "com.microsoft"
MASK_INPUT = "attention_mask"
METADATA_KEY = "embcc.attention"  # the kind, read by embcc.runtimes.batching (same key there)
ROWS_MIN_LENGTH = 512  # padded mha batches longer than this run row by row, tiled (see _per_row)
INLINE_BYTES = 64 * 1024  # external tensors up to this size are read into the fused graph
# Measured with scripts/ort_versions.py (CPU, fp32): every fused graph loads and matches the portable graph from
# ONNX Runtime 1.20 (1.18-1.19 mis-add attention_bias to a key_padding_mask: v2 padded batches off by 2e-3; v5
# graphs need ArgMax-13 from 1.20, as the portable ones do); MultiHeadAttention runs tiled from 1.19,
# GroupQueryAttention from 1.28 (1.20-1.27 run it correctly but materialise L x L).
MIN_ORT = "1.28"


@dataclass
class _Nodes:
    """Nodes built for one place in a graph, named uniquely under `prefix`."""

    prefix: str
    nodes: list[ir.Node] = field(default_factory=list)

    def op(self, op_type: str, inputs: Sequence[ir.Value | None], *, domain: str = "", outputs: int = 1,
           **attrs: object) -> ir.Value:
        name = f"{self.prefix}/{op_type}_{len(self.nodes)}"
        node = ir.Node(domain, op_type, inputs, attributes=ir.convenience.convert_attributes(attrs),
                       num_outputs=outputs, name=name)
        for k, out in enumerate(node.outputs):
            out.name = f"{name}_out{k}"
        self.nodes.append(node)
        return node.outputs[0]

    def ints(self, values: Sequence[int] | int) -> ir.Value:
        return self.op("Constant", [], value=ir.tensor(values, dtype=ir.DataType.INT64))

    def graph(self, out: ir.Value, like: ir.Value) -> ir.Graph:
        """These nodes as an If branch (no inputs; reads outer-scope values) returning `out`, typed like `like`."""
        out.dtype, out.shape = like.dtype, like.shape
        return ir.Graph([], [out], nodes=self.nodes, name=self.prefix)


def _unrepeated_kv(x: ir.Value, kv_heads: int) -> ir.Value | None:
    """K or V [B, kv_heads, S, D] before transformers' repeat_kv (Unsqueeze -> Expand -> Reshape), if so made."""
    for op_type in ("Reshape", "Expand", "Unsqueeze"):
        node = x.producer()
        if node is None or node.op_type != op_type or node.inputs[0] is None:
            return None
        x = node.inputs[0]
    axes = node.inputs[1].const_value if len(node.inputs) > 1 and node.inputs[1] is not None else None
    if axes is None or axes.numpy().tolist() not in ([2], 2):  # [B, kv, 1, S, D]: kv head h // n_rep, as GQA
        return None
    if x.shape is None or x.shape.rank() != 4 or x.shape[1] != kv_heads:
        return None
    return x


def _reads(v: ir.Value, name: str) -> bool:
    """Whether `v` depends on the values of graph input `name` (not only on its shape)."""
    seen: set[int] = set()
    todo = [v]
    while todo:
        x = todo.pop()
        if x.name == name and x.producer() is None:
            return True
        node = x.producer()
        if node is not None and node.op_type not in ("Shape", "Size") and id(node) not in seen:
            seen.add(id(node))
            todo.extend(i for i in node.inputs if i is not None)
    return False


def _key_padded_bias(bias: ir.Value) -> ir.Value | None:
    """The model's own score bias when `bias` = Where(padded key [B, 1, 1, L] from attention_mask, very negative
    constant, model bias): what masked_fill makes of ALiBi. None for any other shape of bias."""
    node = bias.producer()
    if node is None or node.op_type != "Where" or len(node.inputs) != 3:
        return None
    cond, fill, model = node.inputs
    if cond is None or fill is None or model is None or not _reads(cond, MASK_INPUT):
        return None
    if cond.shape is None or cond.shape.rank() != 4 or cond.shape[1] != 1 or cond.shape[2] != 1:
        return None
    value = fill.const_value
    if value is None or value.numpy().size != 1 or not float(value.numpy().reshape(-1)[0]) <= -1e4:
        return None
    if _reads(model, MASK_INPUT):  # the model's bias must not depend on the padding itself
        return None
    return model


def _check_4d(i: int, name: str, v: ir.Value, heads: int, head_dim: int) -> None:
    if v.shape is None or v.shape.rank() != 4 or v.shape[1] != heads or v.shape[3] != head_dim:
        raise EmbccError(f"attention block {i}: {name} has shape {v.shape}, not [batch, {heads}, seq, {head_dim}]",
                         "pass the model's heads and head_dim")


@dataclass(frozen=True)
class _Guards:
    """Per-call values computed once at the top of the graph, shared by every block."""

    unmasked: ir.Value | None  # bool: the mask can be dropped (mha, bias: no padding; gqa: right-padded)
    mask32: ir.Value | None  # int32 [B, S] key padding mask
    rows: ir.Value | None = None  # bool (mha): right-padded, every row non-empty, longer than ROWS_MIN_LENGTH
    lengths: ir.Value | None = None  # int64 [B]: tokens per row
    seq: ir.Value | None = None  # int64 [1]: S


def _guards(g: ir.Graph, kind: str, mask: ir.Value) -> _Guards:
    b = _Nodes("embcc_attention_flag")
    if kind == "bias":
        unmasked = b.op("Equal", [b.op("ReduceMin", [mask], keepdims=0), b.ints(1)])
        mask32 = b.op("Cast", [mask], to=ir.DataType.INT32)
        g.insert_before(next(iter(g)), b.nodes)
        return _Guards(unmasked, mask32)
    head = b.op("Slice", [mask, b.ints([0]), b.ints([-1]), b.ints([1])])
    tail = b.op("Slice", [mask, b.ints([1]), b.ints([2**62]), b.ints([1])])
    # every row non-increasing along the sequence: right-padded (or not padded)
    right = b.op("GreaterOrEqual", [b.op("ReduceMin", [b.op("Sub", [head, tail])], keepdims=0), b.ints(0)])
    mask32 = b.op("Cast", [mask], to=ir.DataType.INT32)
    if kind == "gqa":
        g.insert_before(next(iter(g)), b.nodes)
        return _Guards(right, mask32)
    unmasked = b.op("Equal", [b.op("ReduceMin", [mask], keepdims=0), b.ints(1)])  # no padding anywhere
    lengths = b.op("ReduceSum", [mask, b.ints([1])], keepdims=0)
    seq = b.op("Shape", [mask], start=1, end=2)
    long = b.op("Greater", [b.op("Squeeze", [seq]), b.ints(ROWS_MIN_LENGTH)])
    nonempty = b.op("GreaterOrEqual", [b.op("ReduceMin", [lengths], keepdims=0), b.ints(1)])
    rows = b.op("And", [b.op("And", [right, long]), nonempty])
    g.insert_before(next(iter(g)), b.nodes)
    return _Guards(unmasked, mask32, rows, lengths, seq)


def _per_row(prefix: str, q3: ir.Value, k3: ir.Value, v3: ir.Value, guards: _Guards, heads: int,
             scale: float) -> _Nodes:
    """A right-padded batch as a Loop over its rows, each row's real tokens through the unmasked (tiled) op and
    padded back with zeros: bounded memory for long padded batches from clients that pad (pad positions are
    never keys; their own outputs are zeros instead of the masked path's values, which nothing reads)."""
    body = _Nodes(f"{prefix}_row")
    it = ir.Value(name=f"{prefix}_row/iter", type=ir.TensorType(ir.DataType.INT64), shape=ir.Shape([]))
    cond = ir.Value(name=f"{prefix}_row/cond", type=ir.TensorType(ir.DataType.BOOL), shape=ir.Shape([]))
    row = body.op("Unsqueeze", [it, body.ints([0])])
    n = body.op("Gather", [guards.lengths, row])
    starts = body.op("Concat", [row, body.ints([0])], axis=0)
    ends = body.op("Concat", [body.op("Add", [row, body.ints([1])]), n], axis=0)
    axes = body.ints([0, 1])
    qkv = [body.op("Slice", [x, starts, ends, axes]) for x in (q3, k3, v3)]
    out = body.op("MultiHeadAttention", qkv, domain=MS, num_heads=heads, scale=scale)
    pads = body.op("Concat", [body.ints([0, 0, 0, 0]), body.op("Sub", [guards.seq, n]), body.ints([0])], axis=0)
    out = body.op("Pad", [out, pads])
    out.dtype = ir.DataType.FLOAT
    keep = body.op("Identity", [cond])
    keep.dtype, keep.shape = ir.DataType.BOOL, ir.Shape([])
    graph = ir.Graph([it, cond], [keep, out], nodes=body.nodes, name=f"{prefix}_row")
    b = _Nodes(f"{prefix}_rows")
    trips = b.op("Squeeze", [b.op("Shape", [guards.lengths])])
    go = b.op("Constant", [], value=ir.tensor(True, dtype=ir.DataType.BOOL))
    stacked = b.op("Loop", [trips, go], body=graph)  # [B, 1, S, hidden]
    b.op("Squeeze", [stacked, b.ints([1])])
    return b


def _rewrite(g: ir.Graph, node: ir.Node, i: int, *, kind: str, heads: int, kv_heads: int, head_dim: int,
             guards: _Guards) -> dict:
    """Replace one matched SDPA node by the fused attention; returns its report entry."""
    q, k, v = node.inputs[:3]
    bias = node.inputs[3] if len(node.inputs) > 3 else None
    if node.attributes["key_format"].as_string() != "BHSd":
        raise EmbccError(f"attention block {i}: key layout {node.attributes['key_format'].as_string()} is not supported",
                         "keep the portable graph for this model")
    for name, val in (("query", q), ("key", k), ("value", v)):
        _check_4d(i, name, val, heads, head_dim)
    if kind != "bias" and (bias is None or not _reads(bias, MASK_INPUT)):
        # the then-branch drops the mask, the else-branch rebuilds it from attention_mask: only right when the
        # graph's own mask is made from attention_mask (padding, and the causal part for gqa)
        raise EmbccError(f"attention block {i} is not masked by {MASK_INPUT}",
                         "keep the portable graph for this model")
    scale_attr = node.attributes.get("scale")
    scale = scale_attr.as_float() if scale_attr is not None else 1.0 / math.sqrt(head_dim)
    b = _Nodes(f"embcc_attention_{i}")
    to3d = b.ints([0, 0, -1])

    def flat(x: ir.Value) -> ir.Value:
        return b.op("Reshape", [b.op("Transpose", [x], perm=[0, 2, 1, 3]), to3d])

    q3, k3, v3 = flat(q), flat(k), flat(v)
    out_like = ir.Value(name="like", type=ir.TensorType(ir.DataType.FLOAT), shape=None)
    info: dict = {"layer": i, "scale": scale, "heads": heads}
    model_bias = _key_padded_bias(bias) if kind == "bias" and bias is not None else None
    if kind == "bias" and model_bias is None:
        inputs = [q3, k3, v3] + ([None, None, bias] if bias is not None else [])
        out3 = b.op("MultiHeadAttention", inputs, domain=MS, num_heads=heads, scale=scale)
        info.update(op="MultiHeadAttention", inputs="attention_bias" if bias is not None else "none", tiled=bias is None)
    elif kind == "bias":
        # the graph's bias is the model's own (ALiBi [1, H, L, L]) with padded keys filled in: pass the model's
        # bias alone, and the padding as key_padding_mask when there is some; the [B, H, L, L] fill is never built
        then, other = _Nodes(f"embcc_attention_{i}_unmasked"), _Nodes(f"embcc_attention_{i}_masked")
        t = then.op("MultiHeadAttention", [q3, k3, v3, None, None, model_bias], domain=MS, num_heads=heads,
                    scale=scale)
        e = other.op("MultiHeadAttention", [q3, k3, v3, None, guards.mask32, model_bias], domain=MS,
                     num_heads=heads, scale=scale)
        out3 = b.op("If", [guards.unmasked], then_branch=then.graph(t, out_like),
                    else_branch=other.graph(e, out_like))
        info.update(op="MultiHeadAttention", inputs="attention_bias (the model's own, without the padding fill)",
                    masked="MultiHeadAttention key_padding_mask + attention_bias", tiled=False)
    else:
        then, other = _Nodes(f"embcc_attention_{i}_unmasked"), _Nodes(f"embcc_attention_{i}_masked")
        mask32 = guards.mask32
        if kind == "mha":
            t = then.op("MultiHeadAttention", [q3, k3, v3], domain=MS, num_heads=heads, scale=scale)
            rows = _per_row(f"embcc_attention_{i}", q3, k3, v3, guards, heads, scale)
            masked = _Nodes(f"embcc_attention_{i}_masked_short")
            m = masked.op("MultiHeadAttention", [q3, k3, v3, None, mask32], domain=MS, num_heads=heads, scale=scale)
            e = other.op("If", [guards.rows], then_branch=rows.graph(rows.nodes[-1].outputs[0], out_like),
                         else_branch=masked.graph(m, out_like))
            info.update(op="MultiHeadAttention", kv_heads=heads,
                        masked=f"right-padded and longer than {ROWS_MIN_LENGTH}: Loop over rows of unmasked "
                               "MultiHeadAttention; otherwise MultiHeadAttention key_padding_mask")
        else:
            k_kv, v_kv = _unrepeated_kv(k, kv_heads), _unrepeated_kv(v, kv_heads)
            if k_kv is not None and v_kv is not None:
                n_kv, kq, vq = kv_heads, flat(k_kv), flat(v_kv)
            else:  # K/V not made by repeat_kv: feed the repeated heads
                n_kv, kq, vq = heads, k3, v3
            shape = b.op("Shape", [q3])
            seq = b.op("Slice", [shape, b.ints([1]), b.ints([2])])
            last = b.op("Sub", [seq, b.ints([1])])  # seqlens_k: total length - 1, every row the full length
            seqlens = b.op("Cast", [b.op("Expand", [last, b.op("Slice", [shape, b.ints([0]), b.ints([1])])])],
                           to=ir.DataType.INT32)
            total = b.op("Cast", [b.op("Squeeze", [seq])], to=ir.DataType.INT32)
            # present_key/present_value are requested although unused: ORT's CPU kernel takes its tiled (flash)
            # path only when they are (without them, 4 heads at 8,192 tokens cost +1.1 GB instead of +66 MB)
            t = then.op("GroupQueryAttention", [q3, kq, vq, None, None, seqlens, total], domain=MS, num_heads=heads,
                        kv_num_heads=n_kv, scale=scale, outputs=3)
            e = other.op("MultiHeadAttention", [q3, k3, v3, None, mask32], domain=MS, num_heads=heads, scale=scale,
                         unidirectional=1)
            info.update(op="GroupQueryAttention causal", masked="MultiHeadAttention unidirectional key_padding_mask",
                        kv_heads=n_kv)
        out3 = b.op("If", [guards.unmasked], then_branch=then.graph(t, out_like),
                    else_branch=other.graph(e, out_like))
        info["tiled"] = "when unpadded" if kind == "mha" else "when right-padded"
    out4 = b.op("Transpose", [b.op("Reshape", [out3, b.ints([0, 0, heads, head_dim])])], perm=[0, 2, 1, 3])
    g.insert_before(node, b.nodes)
    out4.shape, out4.dtype = node.outputs[0].shape, node.outputs[0].dtype
    ir.convenience.replace_all_uses_with(node.outputs[0], out4)
    g.remove(node, safe=True)
    return info


def fuse_attention(
    model: onnx.ModelProto, *, kind: str, heads: int, kv_heads: int | None = None, head_dim: int,
    causal: bool = False,
) -> tuple[onnx.ModelProto, dict]:
    """The ONNX Runtime form of `model` (embcc's portable graph): every attention block fused as `kind` says.

    Returns the new model (with metadata `embcc.attention` = kind) and a report
    {"kind", "blocks": n, "fused": [one dict per block: layer, op, masked path, tiled, kv_heads, scale],
    "unfused_softmax": Softmax nodes left in the main graph (attention the pattern did not match)}.
    Raises EmbccError when nothing matches or the matched shapes disagree with heads / head_dim."""
    if kind not in KINDS:
        raise EmbccError(f"unknown attention kind {kind!r}", f"choose one of: {', '.join(KINDS)}")
    if causal != (kind == "gqa"):
        raise EmbccError(f"attention kind {kind!r} with causal={causal} is not supported",
                         "use kind 'gqa' for causal models, 'mha' or 'bias' for bidirectional ones")
    kv_heads = kv_heads or heads
    if heads % kv_heads:
        raise EmbccError(f"{heads} heads cannot share {kv_heads} KV heads", "pass the model's num_key_value_heads")
    folding = logging.getLogger("onnxscript.optimizer._constant_folding")
    level = folding.level
    folding.setLevel(logging.ERROR)  # it warns about every weight left in external data (never folded anyway)
    try:
        return _fuse(ir.from_proto(model), kind=kind, heads=heads, kv_heads=kv_heads, head_dim=head_dim)
    finally:
        folding.setLevel(level)


def _fuse(m: ir.Model, *, kind: str, heads: int, kv_heads: int, head_dim: int) -> tuple[onnx.ModelProto, dict]:
    g = m.graph
    mask = next((v for v in g.inputs if v.name == MASK_INPUT), None)
    if mask is None:
        raise EmbccError(f"the graph has no {MASK_INPUT} input", "export it with embcc's ONNX writer")
    ShapeInferencePass()(m)
    optimizer.optimize(m)
    fuse_sdpa(m, apply_shape_inference=True)
    matched = [n for n in g if n.op_type == "SDPA" and n.domain == "ai.onnxruntime._fusion"]
    if not matched:
        raise EmbccError("no attention block in the graph matched the fusion pattern",
                         "keep the portable graph (model.portable.onnx) for this model")
    m.opset_imports.setdefault(MS, 1)
    g.opset_imports.setdefault(MS, 1)
    guards = _guards(g, kind, mask)
    report = [_rewrite(g, node, i, kind=kind, heads=heads, kv_heads=kv_heads, head_dim=head_dim, guards=guards)
              for i, node in enumerate(matched)]
    optimizer.optimize(m)  # drops the dead mask construction and cancels the layout transposes
    m.metadata_props[METADATA_KEY] = kind
    left = sum(1 for n in g if n.op_type == "Softmax")
    return ir.to_proto(m), {"kind": kind, "blocks": len(report), "fused": report, "unfused_softmax": left}


def fuse_attention_file(src: Path, dst: Path, **options: object) -> dict:
    """fuse_attention from file to file. Weights held as external data stay where they are: `dst` must sit in
    the directory of `src`, and the fused graph points at the same data file (one copy of the weights)."""
    src, dst = Path(src), Path(dst)
    if src.resolve().parent != dst.resolve().parent:
        raise EmbccError(f"{dst} is not beside {src}", "write the fused graph into the artifact's directory")
    model = onnx.load(str(src), load_external_data=False)
    for t in model.graph.initializer:  # small constants (shapes, axes) inline: the pass reads them
        info = {e.key: e.value for e in t.external_data}
        if t.data_location == onnx.TensorProto.EXTERNAL and int(info.get("length", 1 << 30)) <= INLINE_BYTES:
            load_external_data_for_tensor(t, str(src.parent))
            t.data_location = onnx.TensorProto.DEFAULT
            del t.external_data[:]
    fused, report = fuse_attention(model, **options)  # type: ignore[arg-type]
    onnx.save(fused, str(dst))
    return report
