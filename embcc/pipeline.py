"""checkpoint -> load -> adapt -> format.write -> artifact: the export path, callable from Python.

    from embcc.pipeline import export
    export("path/to/jina-embeddings-v3", "out/v3-onnx", fmt="onnx", lora="keep")

The pipeline checks the options once (export.options.resolve), loops over the artifact directories of the
plan (one per task when adapters are merged), and lets the format write each; it names no format.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from embcc.core import progress
from embcc.core.adapted import adapt
from embcc.core.bundle import Bundle
from embcc.core.errors import EmbccError
from embcc.core.spec import SPEC_FILE, ModelSpec
from embcc.export import get_format
from embcc.export.artifact import staged_dir, write_manifest
from embcc.export.client_files import write_client_files
from embcc.export.options import recorded, resolve
from embcc.families import load


def export(checkpoint: str | Path, out: str | Path, *, fmt: str = "onnx", bundle: Bundle | None = None,
           cli: bool = False, source: str | None = None, revision: str | None = None, **options: Any) -> Path:
    """Export one checkpoint into the artifact directory `out`; returns it. Nothing is left at `out` on failure.

    Options: task, lora (merge | keep), rope_theta, max_length, role, and the format's own (ONNX: precision,
    calibration, calibration_method, int8_mode, calibration_max_length, cache_dir; GGUF: gguf_type). Options
    left at None count as not given. `source` / `revision`: where the checkpoint came from (e.g.
    "jinaai/jina-embeddings-v3", a commit), recorded in manifest.json and README.md as given."""
    out = Path(out)
    if out.exists():
        raise EmbccError(f"output {out} already exists",
                         f"choose a new {'--out' if cli else 'out'} directory or remove the old one")
    format_ = get_format(fmt)
    bundle = bundle or load(checkpoint)
    plan = resolve(bundle, format_, {k: v for k, v in options.items() if v is not None}, cli=cli)
    with staged_dir(out) as tmp:
        for i, (subdir, task, part) in enumerate(plan.units, 1):
            progress.step(f"exporting {out.name}/{subdir or '.'} ({format_.name})", i, len(plan.units))
            where = tmp / subdir if subdir else tmp
            where.mkdir(parents=True, exist_ok=True)
            for f in [*bundle.tokenizer_files, *bundle.files]:
                shutil.copyfile(f, where / f.name)
            adapted = adapt(bundle, task=task, lora=plan.lora, rope_theta=plan.rope_theta,
                            max_length=plan.max_length, role=plan.role, part=part)
            spec = format_.write(adapted, where, plan)
            (where / SPEC_FILE).write_text(spec.to_json())
        named = {"name": source, "revision": revision}
        progress.step(f"writing client files and {out.name}/manifest.json")
        write_client_files(tmp, bundle, plan, source=named)
        write_manifest(tmp, source_sha256=bundle.source_sha256, options=recorded(bundle, format_, plan), source=named)
    return out


def artifacts_in(path: Path) -> list[Path]:
    """The artifact directories at `path`: itself, or its per-task subdirectories."""
    path = Path(path)
    if (path / SPEC_FILE).is_file():
        return [path]
    found = sorted({p.parent for pattern in (f"*/{SPEC_FILE}", f"*/*/{SPEC_FILE}") for p in path.glob(pattern)})
    found = found if path.is_dir() else []
    if not found:
        raise EmbccError(f"{path} holds no embcc artifact", "point at a directory written by `embcc export`")
    for p in found:
        ModelSpec.read(p)
    return found
