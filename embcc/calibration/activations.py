"""Look inside an ONNX graph while it runs: every float tensor a node produces, per calibration batch.

Both precision passes decide from these measurements: fp16 keeps in fp32 the nodes whose values leave fp16's
safe range or whose fp16 error is largest, and int8 reports the layers whose quantisation error is largest.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)


def layer_of(node: onnx.NodeProto) -> str:
    """The module path a dynamo-exported node came from (e.g. `backbone.layers.3.self_attn`), else its name."""
    for p in node.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            scopes = [s.strip(" '\"") for s in p.value.strip("[]").split(",")]
            scopes = [s for s in scopes[:-1] if s]
            if scopes:
                return scopes[-1]
    return node.name


def float_outputs(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """Every float tensor produced by a node (graph outputs included), mapped to its producer."""
    typed = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.value_info, *model.graph.output)}
    return {out: n for n in model.graph.node for out in n.output if typed.get(out) in FLOAT_TYPES}


def with_outputs(model: onnx.ModelProto, names: Iterable[str]) -> onnx.ModelProto:
    """A copy of `model` that also returns the tensors `names` (type information taken from value_info)."""
    extended = onnx.ModelProto()
    extended.CopyFrom(model)
    have = {o.name for o in extended.graph.output}
    infos = {v.name: v for v in extended.graph.value_info}
    for name in names:
        if name not in have and name in infos:
            extended.graph.output.append(infos[name])
    return extended


def _session(model: onnx.ModelProto, where: Path, threads: int | None) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    # No fusion: a fused node would hide the tensors we want to see.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    path = where / "inspect.onnx"
    onnx.save(model, str(path), save_as_external_data=model.ByteSize() > 1 << 30, location="inspect.onnx_data")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def trace(model_path: Path, names: list[str], feeds: Iterable[dict[str, np.ndarray]], scratch: Path,
          threads: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Run the graph at `model_path` on each feed; yield {tensor name: value} for `names` (and the outputs)."""
    model = onnx.load(str(model_path))
    session = _session(with_outputs(model, names), scratch, threads)
    wanted = [o.name for o in session.get_outputs()]
    for feed in feeds:
        yield dict(zip(wanted, session.run(wanted, feed)))


def relative_error(ref: np.ndarray, got: np.ndarray) -> float:
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    return float(np.linalg.norm(ref64 - got64) / max(np.linalg.norm(ref64), 1e-30))
