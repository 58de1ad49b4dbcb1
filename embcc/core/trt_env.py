"""TensorRT facts shared by the tensorrt format (which builds engines) and its runtime (which opens them).

An engine only runs with the TensorRT version that built it and on GPUs of the compute capability it was built
for, so both sides describe the machine the same way (`environment`) and the runtime refuses a mismatch with one
line (`check_engine_compatible`). TensorRT, torch's CUDA and cuda-python are imported only when asked for.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

from embcc.core.errors import EmbccError

ENGINE_FILE = "model.plan"  # the serialized engine
ENGINE_META = "engine.json"  # what it was built with and for
SOURCE_ONNX = "model.trt.onnx"  # the ONNX graph the engine was built from (embcc's portable graph, ranks fixed)

INSTALL_TENSORRT = ("install TensorRT 10.x or 11.x with its libraries from NVIDIA's index (e.g. pip install "
                    "--extra-index-url https://pypi.nvidia.com tensorrt-cu12) on a machine with an NVIDIA GPU; the "
                    "tensorrt packages on the public registry alone are stubs that fetch from that index")


def tensorrt_module() -> ModuleType:
    """`import tensorrt`, or a one-line EmbccError saying what to install."""
    try:
        import tensorrt
    except Exception as e:  # ImportError, or OSError from a stub without libnvinfer
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EmbccError(f"TensorRT is not installed here ({reason})", INSTALL_TENSORRT) from e
    version = str(getattr(tensorrt, "__version__", "0"))
    if tensorrt_major(version) < 10:
        raise EmbccError(f"TensorRT {version} is too old: embcc builds with TensorRT 10 or 11", INSTALL_TENSORRT)
    return tensorrt


def tensorrt_major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


def gpu_info() -> dict[str, str]:
    """Name and compute capability of CUDA device 0, through torch's CUDA or cuda-python, whichever is here."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return {"gpu": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}"}
    except ImportError:
        pass
    cudart = cuda_runtime()
    if cudart is not None:
        err, count = cudart.cudaGetDeviceCount()
        if int(err) == 0 and count > 0:
            err, props = cudart.cudaGetDeviceProperties(0)
            if int(err) == 0:
                name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
                return {"gpu": name.rstrip("\x00"), "compute_capability": f"{props.major}.{props.minor}"}
    raise EmbccError("no CUDA GPU is visible here (neither torch's CUDA nor cuda-python found one)",
                     "run on a machine with an NVIDIA GPU and its driver (check nvidia-smi and CUDA_VISIBLE_DEVICES)")


def cuda_runtime() -> Any | None:
    """cuda-python's runtime module (cuda.bindings.runtime, or the older cuda.cudart), or None."""
    try:
        from cuda.bindings import runtime

        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart

        return cudart
    except ImportError:
        return None


def environment(trt: ModuleType) -> dict[str, str]:
    """The machine an engine is built on or opened on: TensorRT version, GPU name, compute capability."""
    return {"tensorrt": str(trt.__version__), **gpu_info()}


def read_engine_meta(artifact: Path) -> dict:
    path = Path(artifact) / ENGINE_META
    if not path.is_file() or not (Path(artifact) / ENGINE_FILE).is_file():
        raise EmbccError(f"{artifact} has no TensorRT engine ({ENGINE_FILE} with {ENGINE_META})",
                         "export it with --format tensorrt")
    return json.loads(path.read_text())


def check_engine_compatible(meta: dict, env: dict[str, str], artifact: Path | str) -> None:
    """Refuse an engine built with another TensorRT version or for another compute capability, in one line."""
    if meta.get("tensorrt") != env.get("tensorrt"):
        raise EmbccError(f"{artifact} was built with TensorRT {meta.get('tensorrt')}, this machine has TensorRT "
                         f"{env.get('tensorrt')} (engines only run with the version that built them)",
                         "export it again here with --format tensorrt, or install the TensorRT it was built with")
    if meta.get("compute_capability") != env.get("compute_capability"):
        raise EmbccError(f"{artifact} was built for {meta.get('gpu')} (compute capability "
                         f"{meta.get('compute_capability')}), this GPU is {env.get('gpu')} (compute capability "
                         f"{env.get('compute_capability')})",
                         "export it again on this GPU with --format tensorrt")
