"""checkpoint -> load -> adapt -> lower -> artifact: the export path, callable from Python.

    from embcc.pipeline import export
    export("path/to/jina-embeddings-v3", "out/v3-onnx", fmt="onnx", lora="keep")
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from embcc.errors import EmbccError
from embcc.export.artifact import staged_dir, write_manifest
from embcc.export.graph import adapt, resolve_tasks
from embcc.families import Bundle, load
from embcc.modelspec import SPEC_FILE, ModelSpec

FORMATS = ("onnx",)
PLANNED_FORMATS = ("gguf", "tensorrt")
PRECISIONS = ("fp32",)
LORA_MODES = ("merge", "keep")


def check_options(
    bundle: Bundle, *, fmt: str, task: str | None, lora: str | None,
    max_length: int | None, precision: str, role: str | None = None,
) -> tuple[str | None, list[str]]:
    """Refuse what does not apply before any work is done; returns the LoRA mode and the tasks to export.
    (--rope-theta is checked once, in export.graph.adapt, which the torch reference uses too.)"""
    if fmt in PLANNED_FORMATS:
        raise EmbccError(f"format {fmt!r} is not implemented yet", f"use --format {' or '.join(FORMATS)}")
    if fmt not in FORMATS:
        raise EmbccError(f"unknown format {fmt!r}", f"choose one of: {', '.join(FORMATS)}")
    if precision not in PRECISIONS:
        raise EmbccError(f"precision {precision!r} is not available for {fmt} yet", f"use --precision {PRECISIONS[0]}")
    spec = bundle.spec
    if lora is not None and lora not in LORA_MODES:
        raise EmbccError(f"unknown --lora mode {lora!r}", "choose merge or keep")
    if bundle.lora is None:
        if lora is not None:
            raise EmbccError(f"{spec.family} has no task adapters, so --lora does not apply", "leave out --lora")
        if not spec.tasks and task is not None:
            raise EmbccError(f"{spec.family} has no tasks, so --task does not apply", "leave out --task")
    if max_length is not None and not 1 < max_length <= spec.max_length:
        raise EmbccError(f"--max-length {max_length} is outside 2..{spec.max_length} for {spec.family}", f"pass at most {spec.max_length}")
    mode = None if bundle.lora is None else (lora or "merge")
    if mode == "keep" and task not in (None, "all"):
        raise EmbccError("--lora keep puts every task in one graph, so --task does not apply", "leave out --task, or use --lora merge")
    tasks = resolve_tasks(bundle, task) if mode != "keep" else [t.name for t in spec.tasks]
    spec.check_role(role, tasks if mode != "keep" else [])
    return mode, tasks


def export(
    checkpoint: str | Path, out: str | Path, *, fmt: str = "onnx", task: str | None = None, lora: str | None = None,
    rope_theta: float | None = None, max_length: int | None = None, precision: str = "fp32",
    bundle: Bundle | None = None, role: str | None = None,
) -> Path:
    """Export one checkpoint; returns the artifact directory. Nothing is left at `out` on failure."""
    out = Path(out)
    if out.exists():
        raise EmbccError(f"output {out} already exists", "choose a new --out directory or remove the old one")
    bundle = bundle or load(checkpoint)
    mode, tasks = check_options(bundle, fmt=fmt, task=task, lora=lora,
                                max_length=max_length, precision=precision, role=role)
    options = {"format": fmt, "lora": mode, "tasks": tasks, "rope_theta": rope_theta, "max_length": max_length,
               "precision": precision}
    if role is not None:
        options["role"] = role
    with staged_dir(out) as tmp:
        if mode == "merge":
            for name in tasks:
                (tmp / name).mkdir()
                _write_one(bundle, tmp / name, task=name, lora="merge", rope_theta=rope_theta, max_length=max_length,
                           role=role)
        else:  # kept adapters, no adapters, or a pre-merged checkpoint (one task, named by --task)
            one = tasks[0] if mode is None and bundle.spec.task is not None else None
            _write_one(bundle, tmp, task=one, lora=mode, rope_theta=rope_theta, max_length=max_length, role=role)
        write_manifest(tmp, source_sha256=bundle.source_sha256,
                       options={**options, "family": bundle.spec.family, "layout": bundle.layout})
    return out


def _write_one(bundle: Bundle, where: Path, *, task: str | None, lora: str | None, rope_theta: float | None,
               max_length: int | None, role: str | None = None) -> None:
    from embcc.export.onnx import export_onnx

    graph, spec = adapt(bundle, task=task, lora=lora, rope_theta=rope_theta)
    if max_length is not None:
        spec = dataclasses.replace(spec, max_length=max_length)
    if role is not None:
        spec = dataclasses.replace(spec, role=role)
    export_onnx(graph, where)
    for f in bundle.tokenizer_files:
        shutil.copyfile(f, where / f.name)
    (where / SPEC_FILE).write_text(spec.to_json())


def artifacts_in(path: Path) -> list[Path]:
    """The artifact directories at `path`: itself, or its per-task subdirectories."""
    path = Path(path)
    if (path / SPEC_FILE).is_file():
        return [path]
    found = sorted(p.parent for p in path.glob(f"*/{SPEC_FILE}")) if path.is_dir() else []
    if not found:
        raise EmbccError(f"{path} holds no embcc artifact", "point at a directory written by `embcc export`")
    for p in found:
        ModelSpec.read(p)
    return found
