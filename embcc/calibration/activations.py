"""Look inside an ONNX graph while it runs: every float tensor a node produces, per calibration batch.

Both precision passes decide from these measurements: fp16 keeps in fp32 the nodes whose values leave fp16's
safe range or whose fp16 error is largest, and int8 reports the layers whose quantisation error is largest.

Why not onnxruntime.quantization.qdq_loss_debug (tried): its modify_model_output_intermediate_tensors runs ONNX
shape inference, which rejects the fp16 graphs onnxruntime's own float16 converter writes ("Inferred elem type
differs from existing elem type: (1) vs (10)"), and its collect_activations keeps every batch's tensors at once,
gigabytes for long texts on a full-size model. This module reads the types the graph already declares and runs
one text at a time through one session.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from embcc.core.onnxfile import save_onnx

FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
# the embeddings a graph returns (text graphs; jina-clip-v2's image and combined graphs), compared by cosine
POOLED_OUTPUTS = ("sentence_embedding", "l2norm_text_embeddings", "l2norm_image_embeddings")


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


def _session(model: onnx.ModelProto, path: Path, threads: int | None) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    # No fusion: a fused node would hide the tensors we want to see.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    save_onnx(model, path)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def rows(feeds: Iterable[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
    """One text (and one image) at a time, padding cut off: exposing every tensor of a whole batch of long texts
    at once costs gigabytes on a full-size model (attention scores alone are heads x length^2 per text)."""
    for feed in feeds:
        if "restore" in feed:  # a Qwen2.5-VL image graph's feed (embcc.core.vl_images): one image already
            yield feed
            continue
        ids, mask, pixels = feed.get("input_ids"), feed.get("attention_mask"), feed.get("pixel_values")
        count = max(x.shape[0] for x in (ids, pixels) if x is not None)
        for i in range(count):
            row = {k: v for k, v in feed.items() if k not in ("input_ids", "attention_mask", "pixel_values")}
            if ids is not None:
                j = min(i, ids.shape[0] - 1)
                n = max(2, int(mask[j].sum())) if mask is not None else ids.shape[1]
                row["input_ids"] = ids[j:j + 1, :n]
                if mask is not None:
                    row["attention_mask"] = mask[j:j + 1, :n]
            if pixels is not None:
                j = min(i, pixels.shape[0] - 1)
                row["pixel_values"] = pixels[j:j + 1]
            yield row


class Tracer:
    """A session over `model_path` that also returns the float tensors `names` (those it has)."""

    def __init__(self, model_path: Path, names: Iterable[str], scratch: Path, tag: str, threads: int | None = None):
        model = onnx.load(str(model_path))
        self.session = _session(with_outputs(model, names), Path(scratch) / f"{tag}.onnx", threads)
        self.names = [o.name for o in self.session.get_outputs()]

    def __call__(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.names, self.session.run(self.names, feed)))


def peaks(model_path: Path, names: list[str], feeds: Iterable[dict], scratch: Path) -> dict[str, float]:
    """Largest magnitude of each tensor over the feeds."""
    tracer = Tracer(model_path, names, scratch, "peaks")
    peak: dict[str, float] = {}
    for feed in rows(feeds):
        for name, v in tracer(feed).items():
            if v.dtype.kind == "f" and v.size:
                peak[name] = max(peak.get(name, 0.0), float(np.abs(v).max()))
    return peak


def errors(reference: Path, candidate: Path, names: list[str], feeds: Iterable[dict], scratch: Path,
           ) -> tuple[dict[str, float], float]:
    """Worst relative error of each tensor in `candidate` against `reference`, and the lowest cosine of the
    sentence embeddings, over the feeds (compared text by text; nothing is kept between texts)."""
    ref, got = Tracer(reference, names, scratch, "reference"), Tracer(candidate, names, scratch, "candidate")
    worst: dict[str, float] = {}
    min_cos = 1.0
    for feed in rows(feeds):
        a, b = ref(feed), got(feed)
        for name in a.keys() & b.keys():
            worst[name] = max(worst.get(name, 0.0), relative_error(a[name], b[name]))
        for out in POOLED_OUTPUTS:
            if out not in a or out not in b or not a[out].size:
                continue
            x, y = a[out].astype(np.float64), b[out].astype(np.float64)
            cos = (x * y).sum(-1) / np.maximum(np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1), 1e-30)
            min_cos = min(min_cos, float(cos.min()))
    return worst, min_cos


def relative_error(ref: np.ndarray, got: np.ndarray) -> float:
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    return float(np.linalg.norm(ref64 - got64) / max(np.linalg.norm(ref64), 1e-30))
