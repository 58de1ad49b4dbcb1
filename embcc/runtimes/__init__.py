"""Runtimes behind one Embedder interface: torch (the reference), ONNX Runtime and llama.cpp."""

from __future__ import annotations

from pathlib import Path

from embcc.core.errors import EmbccError
from embcc.core.manifest import check_artifact
from embcc.core.spec import ModelSpec
from embcc.runtimes.base import Embedder

# model.onnx is what ONNX Runtime runs (it may hold com.microsoft contrib ops); model.portable.onnx, where present,
# is the standard-ops graph other consumers (TensorRT) read. Artifacts written before that rule (embcc 0.1) named
# ONNX Runtime's int8 form model.ort.onnx and kept the portable QDQ graph as model.onnx: still read, in that order.
ONNX_FORMS = ("model.onnx", "model.portable.onnx")
LEGACY_ONNX_FORMS = ("model.ort.onnx", "model.onnx")


def onnx_forms(path: Path) -> list[str]:
    """The ONNX graphs an artifact holds, the one ONNX Runtime should run first."""
    path = Path(path)
    names = LEGACY_ONNX_FORMS if (path / "model.ort.onnx").is_file() else ONNX_FORMS
    return [f for f in names if (path / f).is_file()]


def open_artifact(path: Path, *, threads: int | None = None, max_length: int | None = None,
                  model_file: str | None = None, verify: bool = True) -> Embedder:
    """An Embedder for an artifact directory, chosen by the files it holds (or `model_file` in it).

    First every file of the artifact is checked against its sha256 in manifest.json and the artifact format
    against the newest this embcc reads (core.manifest.check_artifact; one line naming the file on a mismatch).
    `verify=False` skips that (hashing a multi-GB graph takes seconds; hashes are remembered per process)."""
    path = Path(path)
    if verify:
        check_artifact(path, ModelSpec.read(path).artifact_format)
    forms = onnx_forms(path)
    if forms:
        from embcc.runtimes.onnxrt import OnnxEmbedder

        return OnnxEmbedder(path, threads=threads, max_length=max_length, model_file=model_file or forms[0])
    if (path / "model.gguf").is_file():
        from embcc.runtimes.llamacpp import LlamaCppEmbedder

        return LlamaCppEmbedder(path, threads=threads, max_length=max_length)
    raise EmbccError(f"{path} holds no artifact embcc can run", "point at a directory written by `embcc export`")


__all__ = ["Embedder", "open_artifact"]
