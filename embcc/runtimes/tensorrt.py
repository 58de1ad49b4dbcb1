"""TensorRT Embedder over an engine directory written by `embcc export --format tensorrt`.

One execution context per optimization profile; a batch goes to the first profile whose ranges hold it (padded
up to the profile's minimum length with pad tokens, masked out; split when it has more texts than the profile's
largest batch). Tensors are bound by name. Device buffers are torch CUDA tensors where torch has CUDA, else
cuda-python allocations. An engine built with another TensorRT version or for another compute capability is
refused in one line before TensorRT is asked to open it. TensorRT, torch's CUDA and cuda-python load lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embcc.core.errors import EmbccError
from embcc.core.spec import ModelSpec
from embcc.core.trt_env import (
    ENGINE_FILE,
    check_engine_compatible,
    cuda_runtime,
    environment,
    read_engine_meta,
    tensorrt_module,
)
from embcc.runtimes.base import Embedder, pool_numpy

TOKEN_INPUTS = ("input_ids", "attention_mask")


@dataclass(frozen=True)
class Chunk:
    start: int  # rows of the batch this chunk runs
    stop: int
    profile: int  # which profile (and execution context) runs it
    batch: int  # rows fed (>= stop - start: padded up to the profile's minimum batch)
    seq: int  # columns fed (>= the batch's length: padded up to the profile's minimum length)


def plan_chunks(profiles: list[tuple[tuple[int, int, int], tuple[int, int, int]]], batch: int, seq: int) -> list[Chunk]:
    """Which profile runs a [batch, seq] input, in how many pieces, padded to what. `profiles`: (batch, seq)
    MIN/OPT/MAX ranges in engine order. Prefers a profile whose sequence range holds `seq` as it is."""
    holding = [i for i, (_, s) in enumerate(profiles) if s[0] <= seq <= s[2]]
    if not holding:
        shorter = [i for i, (_, s) in enumerate(profiles) if seq < s[0]]
        if not shorter:
            longest = max(s[2] for _, s in profiles)
            raise EmbccError(f"a batch of {seq} tokens is longer than every profile of this engine (at most {longest})",
                             f"export again with a --profile whose seq max is {seq} or more, or encode with "
                             f"max_length={longest}")
        holding = [min(shorter, key=lambda i: profiles[i][1][0])]
    i = holding[0]
    (b_min, _, b_max), (s_min, _, _) = profiles[i]
    width = max(seq, s_min)
    chunks = []
    for start in range(0, batch, b_max):
        stop = min(batch, start + b_max)
        chunks.append(Chunk(start, stop, i, max(stop - start, b_min), width))
    return chunks


class TorchDevice:
    """Device buffers as torch CUDA tensors, all work on one stream of our own."""

    name = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.stream = torch.cuda.Stream()

    def handle(self) -> int:
        return self.stream.cuda_stream

    def upload(self, array: np.ndarray) -> tuple[Any, int]:
        with self.torch.cuda.stream(self.stream):
            t = self.torch.from_numpy(np.ascontiguousarray(array)).to("cuda", non_blocking=False)
        return t, t.data_ptr()

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[Any, int]:
        torch_dtype = self.torch.from_numpy(np.zeros(0, dtype=dtype)).dtype
        with self.torch.cuda.stream(self.stream):
            t = self.torch.empty(tuple(shape), dtype=torch_dtype, device="cuda")
        return t, t.data_ptr()

    def download(self, buffer: Any) -> np.ndarray:
        self.stream.synchronize()
        return buffer.cpu().numpy()

    def synchronize(self) -> None:
        self.stream.synchronize()

    def free(self, buffer: Any) -> None:
        del buffer


class CudaPythonDevice:
    """Device buffers through cuda-python (cudaMalloc / cudaMemcpyAsync on a stream of our own)."""

    name = "cuda-python"

    def __init__(self, cudart: Any) -> None:
        self.rt = cudart
        self.stream = self._ok(cudart.cudaStreamCreate())

    def _ok(self, result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA call failed: {err}")
        return rest[0] if len(rest) == 1 else rest

    def handle(self) -> int:
        return int(self.stream)

    def upload(self, array: np.ndarray) -> tuple[Any, int]:
        array = np.ascontiguousarray(array)
        ptr = self._ok(self.rt.cudaMalloc(max(array.nbytes, 1)))
        self._ok(self.rt.cudaMemcpyAsync(ptr, array.ctypes.data, array.nbytes,
                                         self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
        self._ok(self.rt.cudaStreamSynchronize(self.stream))  # `array` may be a temporary
        return (int(ptr), array.shape, array.dtype), int(ptr)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[Any, int]:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        ptr = self._ok(self.rt.cudaMalloc(max(nbytes, 1)))
        return (int(ptr), tuple(shape), np.dtype(dtype)), int(ptr)

    def download(self, buffer: Any) -> np.ndarray:
        ptr, shape, dtype = buffer
        host = np.empty(shape, dtype=dtype)
        self._ok(self.rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes,
                                         self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))
        self._ok(self.rt.cudaStreamSynchronize(self.stream))
        return host

    def synchronize(self) -> None:
        self._ok(self.rt.cudaStreamSynchronize(self.stream))

    def free(self, buffer: Any) -> None:
        self._ok(self.rt.cudaFree(buffer[0]))


def cuda_device() -> TorchDevice | CudaPythonDevice:
    """torch's CUDA where it has it, else cuda-python, else a one-line error."""
    try:
        import torch

        if torch.cuda.is_available():
            return TorchDevice()
    except ImportError:
        pass
    cudart = cuda_runtime()
    if cudart is not None:
        return CudaPythonDevice(cudart)
    raise EmbccError("no way to reach the GPU here: torch has no CUDA and cuda-python is not installed",
                     "install a CUDA build of torch, or pip install cuda-python")


class TensorRTEmbedder(Embedder):
    runtime = "tensorrt"

    def __init__(self, artifact: Path, *, max_length: int | None = None, device: Any | None = None):
        artifact = Path(artifact)
        spec = ModelSpec.read(artifact)
        super().__init__(spec, artifact / "tokenizer.json", max_length)
        self.meta = read_engine_meta(artifact)
        self.model_file = ENGINE_FILE
        trt = tensorrt_module()
        check_engine_compatible(self.meta, environment(trt), artifact)
        self.trt = trt
        self.device = device if device is not None else cuda_device()
        logger = trt.Logger(trt.Logger.ERROR)
        self._runtime = trt.Runtime(logger)
        self.engine = self._runtime.deserialize_cuda_engine((artifact / ENGINE_FILE).read_bytes())
        if self.engine is None:
            raise EmbccError(f"TensorRT {trt.__version__} could not open {artifact / ENGINE_FILE}",
                             "export it again here with --format tensorrt")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) != mode]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        missing = [n for n in TOKEN_INPUTS if n not in self.inputs]
        if missing:
            raise EmbccError(f"{artifact / ENGINE_FILE} has no input {missing[0]}", "export it with embcc")
        self.profiles = []
        for i in range(self.engine.num_optimization_profiles):
            lo, opt, hi = (tuple(s) for s in self.engine.get_tensor_profile_shape("input_ids", i))
            self.profiles.append(((lo[0], opt[0], hi[0]), (lo[1], opt[1], hi[1])))
        self.contexts = []
        for i in range(len(self.profiles)):
            ctx = self.engine.create_execution_context()
            ctx.set_optimization_profile_async(i, self.device.handle())
            self.contexts.append(ctx)
        self.device.synchronize()
        self.output = "sentence_embedding" if "sentence_embedding" in self.outputs else self.outputs[0]

    def _embed(self, input_ids: np.ndarray, attention_mask: np.ndarray, task_id: int | None) -> np.ndarray:
        if "task_id" in self.inputs and task_id is None:
            raise EmbccError("this engine selects its adapter by task_id", "pass a task")
        batch, seq = input_ids.shape
        out = []
        for c in plan_chunks(self.profiles, batch, seq):
            ids = np.full((c.batch, c.seq), self.pad_id, dtype=np.int64)
            mask = np.zeros((c.batch, c.seq), dtype=np.int64)
            n = c.stop - c.start
            ids[:n, :seq] = input_ids[c.start:c.stop]
            mask[:n, :seq] = attention_mask[c.start:c.stop]
            out.append(self._run(c.profile, ids, mask, task_id)[:n])
        return np.concatenate(out)

    def _run(self, profile: int, ids: np.ndarray, mask: np.ndarray, task_id: int | None) -> np.ndarray:
        ctx = self.contexts[profile]
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "task_id" in self.inputs:
            feeds["task_id"] = np.array([task_id], dtype=np.int64)
        buffers = []
        try:
            for name in self.inputs:
                if name not in feeds:
                    raise EmbccError(f"this engine has an input {name} embcc does not feed", "export it with embcc")
                ctx.set_input_shape(name, tuple(feeds[name].shape))
                buf, ptr = self.device.upload(feeds[name].astype(self.dtypes[name], copy=False))
                buffers.append(buf)
                ctx.set_tensor_address(name, ptr)
            result = {}
            for name in self.outputs:
                buf, ptr = self.device.empty(tuple(ctx.get_tensor_shape(name)), self.dtypes[name])
                buffers.append(buf)
                result[name] = buf
                ctx.set_tensor_address(name, ptr)
            if not ctx.execute_async_v3(self.device.handle()):
                raise EmbccError("TensorRT failed to run the engine", "check the log above; export it again here")
            got = self.device.download(result[self.output]).astype(np.float32)
        finally:
            for buf in buffers:
                self.device.free(buf)
        if self.output == "sentence_embedding":
            return got
        return pool_numpy(got.astype(np.float64), mask, self.spec.pooling)
