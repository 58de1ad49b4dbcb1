"""fp16 ONNX from measurement: which nodes stay fp32 is decided by running the calibration texts.

1. Range: run the fp32 graph and record every float tensor's largest magnitude. A node whose input or output
   goes beyond fp16's safe range (65,504 with 8x headroom for inputs calibration never saw) stays fp32.
2. Error: convert the rest to fp16, run again, and measure each node's own contribution to the error (its
   output's relative error minus the worst of its inputs'). While the sentence embeddings of the calibration
   batches are further than TARGET_COSINE from fp32, the worst nodes go back to fp32, a few per round.

The conversion itself is onnxruntime.transformers.float16 (inputs and outputs stay fp32). The decisions and
their reasons go into the artifact's precision.json. On a CPU, ONNX Runtime computes most fp16 ops in fp32
behind casts, so this measures fp16 storage error, not in-kernel fp16 accumulation; see the README.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.transformers.float16 import convert_float_to_float16

from embcc.calibration.activations import errors, float_outputs, layer_of, peaks
from embcc.calibration.cache import write_atomic
from embcc.core.onnxfile import save_onnx, share_weights

PORTABLE_FILE = "model.portable.onnx"
WEIGHTS = "model.fp16.data"

FP16_MAX = 65504.0
SAFE_RANGE = FP16_MAX / 8
TARGET_COSINE = 0.9999  # ten times tighter than the fp16 bar, on the calibration batches
ERROR_BATCHES = 2  # batches (the shortest texts) for the error rounds; the range pass sees every batch
ROUNDS, PER_ROUND = 6, 4


def convert(model: onnx.ModelProto, keep: list[str]) -> onnx.ModelProto:
    return convert_float_to_float16(model, keep_io_types=True, node_block_list=keep, disable_shape_infer=True)


def decide(src: Path, feeds: list[dict]) -> dict:
    """Measure and return {"kept_fp32": [{node, op, layer, reason}], "calibration_min_cosine": ...}."""
    model = onnx.load(str(src))
    names = list(float_outputs(model))
    nodes = {n.name: n for n in model.graph.node}
    kept: dict[str, str] = {}
    # scratch beside the source graph (inside the export's staging directory): a killed run leaves it where the
    # next run on the same --out removes it, not in /tmp
    with tempfile.TemporaryDirectory(prefix=".fp16-", dir=Path(src).parent) as tmp:
        scratch = Path(tmp)
        peak = peaks(src, names, feeds, scratch)
        for init in model.graph.initializer:
            if init.data_type == onnx.TensorProto.FLOAT and np.prod(init.dims) > 0:
                peak[init.name] = float(np.abs(numpy_helper.to_array(init)).max())
        for n in model.graph.node:
            worst = max((peak.get(x, 0.0) for x in (*n.input, *n.output)), default=0.0)
            if worst > SAFE_RANGE:
                kept[n.name] = f"range: max |x| = {worst:.4g} on calibration > {SAFE_RANGE:.0f} (fp16 max {FP16_MAX:.0f}/8)"
        few = feeds[:ERROR_BATCHES]
        min_cos = 1.0
        for round_ in range(ROUNDS + 1):
            half = scratch / "fp16.onnx"
            save_onnx(convert(model, sorted(kept)), half)
            err, min_cos = errors(src, half, names, few, scratch)
            if min_cos >= TARGET_COSINE or round_ == ROUNDS:
                break
            local = {}
            for name, node in nodes.items():
                if name in kept or not any(o in err for o in node.output):
                    continue
                out = max(err.get(o, 0.0) for o in node.output)
                local[name] = out - max((err.get(i, 0.0) for i in node.input), default=0.0)
            worst = sorted(local, key=lambda k: (-local[k], k))[:PER_ROUND]
            if not worst:
                break
            for name in worst:
                kept[name] = (f"error: adds {local[name]:.3g} relative error in fp16 (round {round_ + 1}; "
                              f"calibration min cosine was {min_cos:.6f} < {TARGET_COSINE})")
    return {
        "kept_fp32": [{"node": k, "op": nodes[k].op_type, "layer": layer_of(nodes[k]), "reason": kept[k]}
                      for k in sorted(kept)],
        "calibration_min_cosine": min_cos,
        "target_cosine": TARGET_COSINE,
        "safe_range": SAFE_RANGE,
    }


def lower_fp16(src: Path, where: Path, feeds: list[dict] | None, cache_file: Path, fused: Path | None = None) -> dict:
    """Write the fp16 graph of `src` into `where`; decisions come from the cache or are measured on `feeds`.

    With `fused` (the fp32 graph with fused attention): model.onnx is its fp16 form, its attention ops kept fp32
    (ONNX Runtime's tiled CPU kernels need it: fp32_attention below), and model.portable.onnx the
    standard-ops fp16 graph; both read one weight file. Without: model.onnx alone."""
    if feeds is None and cache_file.is_file():  # the caller found a trusted entry (cache.trusted)
        decisions = json.loads(cache_file.read_text())
        decisions["cache"] = "hit"
    else:
        decisions = decide(src, feeds or [])
        write_atomic(cache_file, json.dumps(decisions, indent=2, sort_keys=True) + "\n")
        decisions["cache"] = "miss"
    kept = [k["node"] for k in decisions["kept_fp32"]]
    if fused is None:
        save_onnx(convert(onnx.load(str(src)), kept), where / "model.onnx")
        return decisions
    save_onnx(convert(onnx.load(str(src)), kept), where / PORTABLE_FILE, external=True, location=WEIGHTS)
    fast = fp32_attention(convert(onnx.load(str(fused)), kept))
    decisions["weights_shared"] = share_weights(fast, where / PORTABLE_FILE, where / "model.onnx")
    decisions["forms"] = {"model.onnx": "ONNX Runtime: fused attention (com.microsoft), attention in fp32",
                          PORTABLE_FILE: "standard ONNX ops (TensorRT / any EP)", WEIGHTS: "the fp16 weights of both"}
    return decisions


def fp32_attention(model: onnx.ModelProto) -> onnx.ModelProto:
    """After an fp16 conversion of a fused graph: run every fused attention op in fp32 again (Cast in, Cast out,
    inside its If/Loop subgraph). Measured with ORT 1.32 on CPU: GroupQueryAttention's tiled kernel is fp32-only (fp16
    at 8,192 tokens, 8 heads: +2.2 GB, 4.2 s; fp32 +66 MB, 1.2 s); fp16 MultiHeadAttention is tiled too, but
    gets the same fp32 island for one rule and fp32 softmax accuracy. Returns `model`, changed in place."""
    fp16 = onnx.TensorProto.FLOAT16

    def fix(graph: onnx.GraphProto, where: str) -> None:
        nodes = []
        for n in graph.node:
            if n.domain != "com.microsoft" or n.op_type not in ("MultiHeadAttention", "GroupQueryAttention"):
                nodes.append(n)
                continue
            for k in (0, 1, 2):  # query, key, value
                if n.input[k]:
                    name = f"{n.input[k]}_fp32_{where.replace('/', '_')}"
                    nodes.append(onnx.helper.make_node("Cast", [n.input[k]], [name], to=onnx.TensorProto.FLOAT,
                                                       name=f"{n.name}/cast_in{k}"))
                    n.input[k] = name
            if n.op_type == "MultiHeadAttention" and len(n.input) > 5 and n.input[5]:  # attention_bias
                name = f"{n.input[5]}_fp32_{where.replace('/', '_')}"
                nodes.append(onnx.helper.make_node("Cast", [n.input[5]], [name], to=onnx.TensorProto.FLOAT,
                                                   name=f"{n.name}/cast_bias"))
                n.input[5] = name
            out = n.output[0]
            n.output[0] = f"{out}_fp32"
            nodes.append(n)
            nodes.append(onnx.helper.make_node("Cast", [n.output[0]], [out], to=fp16, name=f"{n.name}/cast_out"))
        del graph.node[:]
        graph.node.extend(nodes)

    def is_fp16(graph: onnx.GraphProto) -> bool:
        floats = [o.type.tensor_type.elem_type for o in graph.output
                  if o.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, fp16)]
        return bool(floats) and all(t == fp16 for t in floats)

    def walk(node: onnx.NodeProto) -> None:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                if is_fp16(a.g):
                    fix(a.g, f"{node.name}/{a.name}")
                for inner in a.g.node:
                    walk(inner)

    for n in model.graph.node:
        if n.name.startswith("embcc_attention_"):
            walk(n)
    mains = [n for n in model.graph.node if n.domain == "com.microsoft" and n.op_type == "MultiHeadAttention"]
    if mains and any(vi.type.tensor_type.elem_type == fp16 for vi in model.graph.value_info
                     if vi.name == mains[0].input[0]):
        fix(model.graph, "main")
    return model
