"""Runtimes behind one Embedder interface: torch (the reference), ONNX Runtime (CPU, CUDA), llama.cpp, TensorRT."""

from __future__ import annotations

from pathlib import Path

from embcc.core.errors import EmbccError
from embcc.core.manifest import check_artifact
from embcc.core.spec import SPEC_FILE, ModelSpec
from embcc.runtimes.base import Embedder, maxsim

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
                  model_file: str | None = None, device: str | None = None, verify: bool = True) -> Embedder:
    """An Embedder for an artifact directory, chosen by the files it holds (or `model_file` in it).

    `device`: None (the artifact's own: a TensorRT engine on the GPU, everything else on the CPU), "cpu" or "cuda"
    (ONNX through onnxruntime-gpu's CUDAExecutionProvider, the portable graph first; engines).

    First every file of the artifact is checked against its sha256 in manifest.json and the artifact format
    against the newest this embcc reads (core.manifest.check_artifact; one line naming the file on a mismatch).
    `verify=False` skips that (hashing a multi-GB graph takes seconds; hashes are remembered per process)."""
    path = Path(path)
    if device not in (None, "cpu", "cuda"):
        raise EmbccError(f"unknown device {device!r}", "choose cpu or cuda")
    if not (path / SPEC_FILE).is_file() and path.is_dir() and _children(path):
        from embcc.runtimes.composite import CompositeEmbedder

        return CompositeEmbedder(path, _children(path), open_artifact, threads=threads, max_length=max_length, device=device,
                                 verify=verify)
    if verify:
        check_artifact(path, ModelSpec.read(path).artifact_format)
    if model_file is None and (path / "model.plan").is_file():
        if device == "cpu":
            raise EmbccError(f"{path} is a TensorRT engine, which runs on a CUDA GPU only",
                             "open it with device='cuda', or its ONNX graph on CPU with model_file='model.trt.onnx'")
        from embcc.runtimes.tensorrt import TensorRTEmbedder

        return TensorRTEmbedder(path, max_length=max_length)
    forms = onnx_forms(path)
    if device == "cuda":  # the ONNX Runtime int8 forms are for x86 CPUs; the portable graph runs on CUDA
        portable = "model.portable.onnx" if "model.portable.onnx" in forms else "model.onnx"
        forms.sort(key=lambda f: f != portable)
    if forms or (model_file or "").endswith(".onnx"):
        from embcc.runtimes.onnxrt import OnnxEmbedder

        return OnnxEmbedder(path, threads=threads, max_length=max_length, model_file=model_file or forms[0],
                            device=device or "cpu")
    if (path / "model.gguf").is_file():
        if device == "cuda":
            raise EmbccError("embcc runs GGUF artifacts on llama.cpp's CPU build only", "open it with device='cpu'")
        from embcc.runtimes.llamacpp import LlamaCppEmbedder

        return LlamaCppEmbedder(path, threads=threads, max_length=max_length)
    raise EmbccError(f"{path} holds no artifact embcc can run", "point at a directory written by `embcc export`")


def _children(path: Path) -> list[Path]:
    """The artifact directories below a root holding several (merged tasks, model parts, or both)."""
    return sorted({p.parent for pattern in (f"*/{SPEC_FILE}", f"*/*/{SPEC_FILE}") for p in path.glob(pattern)})


__all__ = ["Embedder", "maxsim", "open_artifact"]
