"""checkpoint -> load -> adapt -> lower -> artifact: the export path, callable from Python.

    from embcc.pipeline import export
    export("path/to/jina-embeddings-v3", "out/v3-onnx", fmt="onnx", lora="keep")
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import tempfile
from pathlib import Path

from embcc.calibration import Calibration
from embcc.calibration import check as calibration_check
from embcc.errors import EmbccError
from embcc.export.artifact import staged_dir, write_manifest
from embcc.export.graph import adapt, resolve_tasks
from embcc.families import Bundle, load
from embcc.modelspec import SPEC_FILE, ModelSpec

FORMATS = ("onnx", "gguf")
PLANNED_FORMATS = ("tensorrt",)
LORA_MODES = ("merge", "keep")


def check_options(
    bundle: Bundle, *, fmt: str, task: str | None, lora: str | None,
    max_length: int | None, precision: str, gguf_type: str | None = None, role: str | None = None,
) -> tuple[str | None, list[str]]:
    """Refuse what does not apply before any work is done; returns the LoRA mode and the tasks to export.
    (--rope-theta is checked once, in export.graph.adapt, which the torch reference uses too.)"""
    if fmt in PLANNED_FORMATS:
        raise EmbccError(f"format {fmt!r} is not implemented yet", f"use --format {' or '.join(FORMATS)}")
    if fmt not in FORMATS:
        raise EmbccError(f"unknown format {fmt!r}", f"choose one of: {', '.join(FORMATS)}")
    if fmt == "gguf":
        from embcc.export.gguf import check_type, table_of

        table_of(bundle)
        check_type(gguf_type or "f32")
        if precision != "fp32":
            raise EmbccError("GGUF takes llama.cpp's type names, not --precision", "pass --type f32|f16|q8_0|... instead")
    elif gguf_type is not None:
        raise EmbccError(f"--type is GGUF's option; {fmt} takes --precision", "leave out --type")
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
    if mode == "keep" and fmt != "gguf" and task not in (None, "all"):
        raise EmbccError("--lora keep puts every task in one graph, so --task does not apply", "leave out --task, or use --lora merge")
    tasks = resolve_tasks(bundle, task) if mode != "keep" else [t.name for t in spec.tasks]
    spec.check_role(role, tasks if mode != "keep" else [])
    return mode, tasks


def export(
    checkpoint: str | Path, out: str | Path, *, fmt: str = "onnx", task: str | None = None, lora: str | None = None,
    rope_theta: float | None = None, max_length: int | None = None, precision: str = "fp32",
    calibration: str | Path | None = None, calibration_method: str | None = None, int8_mode: str | None = None,
    calibration_max_length: int | None = None, cache_dir: str | Path | None = None, bundle: Bundle | None = None, gguf_type: str | None = None,
    role: str | None = None,
) -> Path:
    """Export one checkpoint; returns the artifact directory. Nothing is left at `out` on failure.

    precision fp16/int8 calibrates on the built-in corpus or on `calibration` (a text or JSON-lines file)."""
    out = Path(out)
    if out.exists():
        raise EmbccError(f"output {out} already exists", "choose a new --out directory or remove the old one")
    bundle = bundle or load(checkpoint)
    mode, tasks = check_options(bundle, fmt=fmt, task=task, lora=lora,
                                max_length=max_length, precision=precision, gguf_type=gguf_type,
                                role=role)
    if fmt == "gguf":
        given = {"--calibration": calibration, "--calibration-method": calibration_method, "--int8-mode": int8_mode,
                 "--calibration-max-length": calibration_max_length}
        used = [k for k, v in given.items() if v is not None]
        if used:
            raise EmbccError(f"{used[0]} applies to ONNX fp16/int8; GGUF quantizes by --type", f"leave out {used[0]}")
        calib = None
        gguf_type = (gguf_type or "f32").lower()
        if mode == "keep":
            tasks = resolve_tasks(bundle, task)  # keep writes one adapter file per task asked for
    else:
        calib = calibration_check(precision, bundle.spec, file=calibration, method=calibration_method,
                                  int8_mode=int8_mode, max_length=calibration_max_length, cache_dir=cache_dir,
                                  fmt=fmt)
    options = {"format": fmt, "lora": mode, "tasks": tasks, "rope_theta": rope_theta, "max_length": max_length,
               "precision": gguf_type or precision}
    if role is not None:
        options["role"] = role
    if calib is not None:
        options["calibration"] = {"source": calib.source, "method": calib.method, "max_length": calib.max_length,
                                  **({"int8_mode": calib.int8_mode} if precision == "int8" else {})}
    if fmt == "onnx":
        write = functools.partial(_write_one, precision=precision, calibration=calib, role=role)
    else:
        write = _gguf_writer(gguf_type, tasks, role)
    with staged_dir(out) as tmp:
        if mode == "merge":
            for name in tasks:
                (tmp / name).mkdir()
                write(bundle, tmp / name, task=name, lora="merge", rope_theta=rope_theta, max_length=max_length)
        else:  # kept adapters, no adapters, or a pre-merged checkpoint (one task, named by --task)
            one = tasks[0] if mode is None and bundle.spec.task is not None else None
            write(bundle, tmp, task=one, lora=mode, rope_theta=rope_theta, max_length=max_length)
        write_manifest(tmp, source_sha256=bundle.source_sha256,
                       options={**options, "family": bundle.spec.family, "layout": bundle.layout})
    return out


def _write_one(bundle: Bundle, where: Path, *, task: str | None, lora: str | None, rope_theta: float | None,
               max_length: int | None, precision: str = "fp32", calibration: Calibration | None = None,
               role: str | None = None) -> None:
    from embcc.export.onnx import export_onnx

    graph, spec = adapt(bundle, task=task, lora=lora, rope_theta=rope_theta)
    spec = dataclasses.replace(spec, precision=precision, **({"max_length": max_length} if max_length else {}),
                               **({"role": role} if role is not None else {}))
    for f in bundle.tokenizer_files:
        shutil.copyfile(f, where / f.name)
    if calibration is None:
        export_onnx(graph, where)
    else:
        from embcc.calibration import REPORT, lower

        with tempfile.TemporaryDirectory(prefix=".fp32-", dir=where) as fp32:
            export_onnx(graph, Path(fp32))
            del graph
            report = lower(Path(fp32) / "model.onnx", where, precision=precision, spec=spec,
                           calibration=calibration, checkpoint_sha256=bundle.source_sha256)
        (where / REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (where / SPEC_FILE).write_text(spec.to_json())


def _gguf_writer(gguf_type: str, tasks: list[str], role: str | None = None):
    """_write_one for GGUF: the same adapt step (spec, theta, checks), then the GGUF writer instead of tracing."""

    def write(bundle: Bundle, where: Path, *, task: str | None, lora: str | None, rope_theta: float | None,
              max_length: int | None) -> None:
        from embcc.export.gguf import export_gguf
        from embcc.export.graph import adapt_spec

        spec = adapt_spec(bundle, task=task, lora=lora, rope_theta=rope_theta)
        spec = dataclasses.replace(spec, precision=gguf_type, **({"max_length": max_length} if max_length else {}),
                                   **({"role": role} if role is not None else {}))
        if spec.lora == "keep":  # one adapter file per task asked for; the artifact offers exactly those
            spec = dataclasses.replace(spec, tasks=[t for t in spec.tasks if t.name in tasks])
        export_gguf(bundle, where, spec, gguf_type, tasks=tasks)
        for f in bundle.tokenizer_files:
            shutil.copyfile(f, where / f.name)
        (where / SPEC_FILE).write_text(spec.to_json())

    return write


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
