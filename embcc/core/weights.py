"""Checkpoint weights read lazily from safetensors files, so that an export never holds the checkpoint twice.

A loaded checkpoint keeps no tensor data: `Bundle.weights` is a `LazyWeights`, name -> float32 tensor, that reads
the tensor from its file (and converts it) each time it is asked for and caches nothing. The ONNX format builds
its module from one such read per weight (the tensors become the parameters: families.base.build_backbone);
the GGUF format reads, adapts and writes one tensor at a time. Measured on a base-size v3 (12 layers, 1.06 GiB
of fp32 weights): holding the checkpoint as float32 beside the module made the ONNX export peak at 5.4x the fp32
weight bytes (scripts/measure_export_memory.py; README: memory).

`TensorRef` is one stored tensor (file, key, dtype, shape) or a range of its rows (a fused q/k/v split).
Family loaders handle refs as they handled tensors: `.shape`, `.ndim`, `.dtype`, `.chunk(n)` along dim 0 give
refs without reading; `.float()` reads; so does anything else a tensor has (`__getattr__`) and any torch
function given a ref (`__torch_function__`), so loader code written for tensors keeps working.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from embcc.core.errors import EmbccError

# safetensors' dtype names -> torch dtypes (safetensors.torch._TYPES is private)
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool, "C64": torch.complex64, "U64": torch.uint64, "U32": torch.uint32, "U16": torch.uint16,
          "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}
WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)  # what a weight may be stored as


@dataclass(frozen=True)
class TensorRef:
    file: Path
    key: str
    stored_dtype: str  # safetensors' name: "BF16", "F32", ...
    stored_shape: tuple[int, ...]
    rows: tuple[int, int] | None = None  # [start, stop) of dim 0; None: the whole tensor

    @property
    def shape(self) -> torch.Size:
        if self.rows is None:
            return torch.Size(self.stored_shape)
        return torch.Size((self.rows[1] - self.rows[0], *self.stored_shape[1:]))

    @property
    def ndim(self) -> int:
        return len(self.stored_shape)

    @property
    def dtype(self) -> torch.dtype | str:
        return DTYPES.get(self.stored_dtype, self.stored_dtype)

    def numel(self) -> int:
        return math.prod(self.shape)

    def size(self, dim: int | None = None) -> torch.Size | int:
        return self.shape if dim is None else self.shape[dim]

    def chunk(self, n: int, dim: int = 0) -> tuple[TensorRef, ...]:
        """As torch.chunk along dim 0 (the only split loaders make: fused q/k/v rows); no data is read."""
        if dim != 0 or self.ndim == 0:
            return self.read().chunk(n, dim)
        start, stop = self.rows or (0, self.stored_shape[0])
        step = -(-(stop - start) // n)
        return tuple(TensorRef(self.file, self.key, self.stored_dtype, self.stored_shape, (i, min(i + step, stop)))
                     for i in range(start, stop, step))

    def read(self) -> torch.Tensor:
        """The stored tensor (or its rows) in the stored dtype."""
        from safetensors import safe_open

        try:
            with safe_open(str(self.file), framework="pt") as f:
                if self.rows is None:
                    return f.get_tensor(self.key)
                return f.get_slice(self.key)[self.rows[0] : self.rows[1]]
        except Exception as e:  # safetensors' own error types; an OSError when the file went away
            raise EmbccError(f"cannot read tensor {self.key} from {self.file} ({str(e).strip().splitlines()[0]})",
                             "the checkpoint changed or is damaged; re-download it") from e

    def float(self) -> torch.Tensor:
        """A float32 tensor of its own (never a view of the file's memory map)."""
        return self.read().to(torch.float32, copy=True).contiguous()

    def __getattr__(self, name: str) -> Any:  # anything else a tensor has: read it
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.read(), name)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):  # torch.cat([ref, ...]) and the like
        def real(x: Any) -> Any:
            if isinstance(x, TensorRef):
                return x.read()
            if isinstance(x, list | tuple):
                return type(x)(real(y) for y in x)
            return x

        return func(*real(args), **{k: real(v) for k, v in (kwargs or {}).items()})


def read_refs(files: list[Path]) -> dict[str, TensorRef]:
    """A ref for every tensor of these safetensors files; each file's header is read and checked, no data."""
    from safetensors import safe_open

    out: dict[str, TensorRef] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as sf:
                for k in sf.keys():
                    s = sf.get_slice(k)
                    if k in out:
                        raise EmbccError(f"tensor {k} is stored twice ({out[k].file.name} and {f.name})",
                                         "the shards overlap; re-download the checkpoint")
                    out[k] = TensorRef(Path(f), k, s.get_dtype(), tuple(s.get_shape()))
        except EmbccError:
            raise
        except Exception as e:  # safetensors raises its own error types for truncated files and corrupt headers
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EmbccError(f"{f} is not a readable safetensors file ({first})", "re-download or re-convert it") from e
    return out


class LazyWeights(MutableMapping[str, torch.Tensor]):
    """name -> float32 tensor, read from the checkpoint on every access (see the module docstring).

    Entries are TensorRefs (read on access: each access returns a new tensor the caller owns) or tensors (set by
    code that edits a loaded checkpoint: returned as they are)."""

    def __init__(self, entries: Mapping[str, TensorRef | torch.Tensor] | None = None):
        self._entries: dict[str, TensorRef | torch.Tensor] = {}
        for k, v in (entries or {}).items():
            self[k] = v

    def __getitem__(self, name: str) -> torch.Tensor:
        v = self._entries[name]
        return v.float() if isinstance(v, TensorRef) else v

    def __setitem__(self, name: str, value: TensorRef | torch.Tensor) -> None:
        self._entries[name] = value if isinstance(value, TensorRef) else value.float()

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:  # Mapping's own would read the tensor to find out
        return name in self._entries

    def __repr__(self) -> str:
        return f"LazyWeights({len(self)} tensors)"

    def shape(self, name: str) -> torch.Size:
        return self._entries[name].shape

    def is_fresh(self, name: str) -> bool:
        """True when reading `name` gives a new tensor the caller may change in place."""
        return isinstance(self._entries[name], TensorRef)


def shape_of(weights: Mapping[str, torch.Tensor], name: str) -> torch.Size:
    """The shape of one weight without reading it (LazyWeights), or of the tensor (a plain dict)."""
    return weights.shape(name) if isinstance(weights, LazyWeights) else weights[name].shape


def fresh(weights: Mapping[str, torch.Tensor], name: str) -> bool:
    return isinstance(weights, LazyWeights) and weights.is_fresh(name)


def stream(module: torch.nn.Module, lookup: Callable[[str], torch.Tensor]) -> torch.nn.Module:
    """Prepare `module` for a streamed ONNX export (embcc.export.onnx.trace): the tensors it holds in memory
    (adapters, RoPE tables, a vision tower: whatever is not on the meta device already) are kept aside under their
    state-dict names, the module moves to the meta device, and `module.stream_weights(name)` returns the kept
    tensor or `lookup(name)` (the big weights, read from the checkpoint's files when the exporter writes them)."""
    held = {n: t.detach() for n, t in [*module.named_parameters(), *module.named_buffers()] if t.device.type != "meta"}
    module.to("meta")
    module.stream_weights = lambda name: held[name] if name in held else lookup(name)
    return module
