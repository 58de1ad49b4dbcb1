"""Runtimes behind one Embedder interface: torch (the reference), ONNX Runtime and llama.cpp."""

from __future__ import annotations

from pathlib import Path

from embcc.errors import EmbccError
from embcc.runtimes.base import Embedder


def open_artifact(path: Path, *, threads: int | None = None, max_length: int | None = None) -> Embedder:
    """An Embedder for an artifact directory, chosen by the files it holds."""
    path = Path(path)
    if (path / "model.onnx").is_file():
        from embcc.runtimes.onnxrt import OnnxEmbedder

        return OnnxEmbedder(path, threads=threads, max_length=max_length)
    if (path / "model.gguf").is_file():
        from embcc.runtimes.llamacpp import LlamaCppEmbedder

        return LlamaCppEmbedder(path, threads=threads, max_length=max_length)
    raise EmbccError(f"{path} holds no artifact embcc can run", "point at a directory written by `embcc export`")


__all__ = ["Embedder", "open_artifact"]
