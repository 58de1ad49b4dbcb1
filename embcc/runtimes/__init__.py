"""Runtimes behind one Embedder interface: torch (the reference), ONNX Runtime and llama.cpp."""

from __future__ import annotations

from pathlib import Path

from embcc.core.errors import EmbccError
from embcc.runtimes.base import Embedder

ONNX_FORMS = ("model.ort.onnx", "model.onnx")  # ONNX Runtime's own form first, where an artifact has one


def onnx_forms(path: Path) -> list[str]:
    """The ONNX graphs an artifact holds, the one ONNX Runtime should run first."""
    return [f for f in ONNX_FORMS if (Path(path) / f).is_file()]


def open_artifact(path: Path, *, threads: int | None = None, max_length: int | None = None,
                  model_file: str | None = None) -> Embedder:
    """An Embedder for an artifact directory, chosen by the files it holds (or `model_file` in it)."""
    path = Path(path)
    forms = onnx_forms(path)
    if forms:
        from embcc.runtimes.onnxrt import OnnxEmbedder

        return OnnxEmbedder(path, threads=threads, max_length=max_length, model_file=model_file or forms[0])
    if (path / "model.gguf").is_file():
        from embcc.runtimes.llamacpp import LlamaCppEmbedder

        return LlamaCppEmbedder(path, threads=threads, max_length=max_length)
    raise EmbccError(f"{path} holds no artifact embcc can run", "point at a directory written by `embcc export`")


__all__ = ["Embedder", "open_artifact"]
