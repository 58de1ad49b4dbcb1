"""Lay an artifact out for a serving stack: `embcc package ARTIFACT --layout triton --out REPO`.

triton: an NVIDIA Triton model repository for its onnxruntime backend (SPEC.md section 7), one model per artifact
directory (a merged export gives one per task):

    REPO/<name>/config.pbtxt          platform "onnxruntime_onnx", TYPE_INT64 inputs, outputs with their dims
    REPO/<name>/1/model.onnx          the graph ONNX Runtime runs (or --model-file)
    REPO/<name>/1/model.onnx/         instead, where the graph has external data: the graph and its data files
    REPO/<name>/{tokenizer.json, ...} what the client needs to tokenise and prefix (Triton ignores these files)

A graph without task_id gets `max_batch_size` > 0 (dims then exclude the batch axis) and `dynamic_batching {}`.
A graph with kept adapters reads one task_id per call, so requests of different tasks must never share a batch:
it gets `max_batch_size: 0` (full shapes, the client sends one task's batch) and no dynamic batching.
The artifact is integrity-checked (manifest.json) before anything is copied; REPO is staged and renamed into place.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import onnx

from embcc.core.errors import EmbccError
from embcc.core.files import staged_dir
from embcc.core.manifest import check_artifact
from embcc.core.spec import SPEC_FILE, ModelSpec
from embcc.runtimes import onnx_forms

LAYOUTS = ("triton",)
SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json", SPEC_FILE,
              "README.md")
TRITON_TYPES = {onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.INT32: "TYPE_INT32",
                onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16"}
DEFAULT_MAX_BATCH = 32


def package(artifact: str | Path, out: str | Path, *, layout: str = "triton", name: str | None = None,
            model_file: str | None = None, max_batch_size: int = DEFAULT_MAX_BATCH) -> Path:
    """Write a serving layout of `artifact` (an export directory, merged or not) at `out`; returns `out`."""
    from embcc.pipeline import artifacts_in

    if layout not in LAYOUTS:
        raise EmbccError(f"unknown layout {layout!r}", f"choose one of: {', '.join(LAYOUTS)}")
    if max_batch_size < 1:
        raise EmbccError(f"--max-batch-size must be at least 1, got {max_batch_size}", "pass e.g. --max-batch-size 32")
    root = Path(artifact)
    arts = artifacts_in(root)
    if arts == [root] and (root.parent / "manifest.json").is_file() and not (root / "manifest.json").is_file():
        root = root.parent  # one task directory of a merged export: still named <export>_<task>
    for art in arts:
        check_artifact(art, ModelSpec.read(art).artifact_format)
        if not onnx_forms(art):
            raise EmbccError(f"{art} holds no ONNX graph, and Triton's onnxruntime backend runs ONNX",
                             "export the checkpoint with --format onnx and package that")
    base = _model_name(name or root.resolve().name)
    with staged_dir(Path(out)) as tmp:
        for art in arts:
            model = base if art == root else _model_name(f"{base}_{art.name}")  # merged: one model per task
            _triton_model(art, tmp / model, model, model_file or onnx_forms(art)[0], max_batch_size)
    return Path(out)


def _model_name(name: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")
    if not clean:
        raise EmbccError(f"{name!r} gives no usable Triton model name", "pass --name with letters, digits, _ or -")
    return clean


def _external_files(path: Path, model: onnx.ModelProto) -> list[str]:
    found = set()
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            found.update(e.value for e in t.external_data if e.key == "location")
    missing = sorted(f for f in found if not (path.parent / f).is_file())
    if missing:
        raise EmbccError(f"{path} names external data {missing[0]}, which is missing", "export the artifact again")
    return sorted(found)


def _triton_model(art: Path, where: Path, name: str, graph: str, max_batch_size: int) -> None:
    path = art / graph
    if not path.is_file():
        raise EmbccError(f"{art} has no {graph}", f"choose one of: {', '.join(onnx_forms(art))}")
    model = onnx.load(str(path), load_external_data=False)
    external = _external_files(path, model)
    version = where / "1"
    version.mkdir(parents=True)
    if external:  # the onnxruntime backend's directory form: 1/model.onnx/model.onnx beside its data
        (version / "model.onnx").mkdir()
        shutil.copyfile(path, version / "model.onnx" / "model.onnx")
        for f in external:
            shutil.copyfile(art / f, version / "model.onnx" / f)
    else:
        shutil.copyfile(path, version / "model.onnx")
    for f in SIDE_FILES:
        if (art / f).is_file():
            shutil.copyfile(art / f, where / f)
    (where / "config.pbtxt").write_text(triton_config(model, name, max_batch_size))


def triton_config(model: onnx.ModelProto, name: str, max_batch_size: int) -> str:
    """config.pbtxt for one graph (protobuf text format of Triton's ModelConfig)."""
    init = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in init]
    batched = not any(v.name == "task_id" for v in inputs)

    def dims(v: onnx.ValueInfoProto) -> list[int]:
        t = v.type.tensor_type
        if not t.HasField("shape"):  # task_id: a scalar or a one-element array; Triton gets [1]
            return [1]
        d = [x.dim_value if x.HasField("dim_value") else -1 for x in t.shape.dim]
        return d[1:] if batched else d

    def entry(v: onnx.ValueInfoProto) -> str:
        elem = v.type.tensor_type.elem_type
        if elem not in TRITON_TYPES:
            raise EmbccError(f"graph {v.name} has ONNX type {elem}, which embcc cannot name for Triton",
                             "package an fp32 or int8 artifact")
        return (f'  {{\n    name: "{v.name}"\n    data_type: {TRITON_TYPES[elem]}\n'
                f"    dims: [ {', '.join(map(str, dims(v)))} ]\n  }}")

    lines = [f'name: "{name}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {max_batch_size if batched else 0}",
             "input [", ",\n".join(entry(v) for v in inputs), "]",
             "output [", ",\n".join(entry(v) for v in model.graph.output), "]"]
    if batched:
        lines.append("dynamic_batching { }")
    return "\n".join(lines) + "\n"
