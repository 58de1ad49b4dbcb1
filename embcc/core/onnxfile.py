"""Saving ONNX graphs: the one rule for when weights go to an external data file.

Protobuf cannot hold a file over 2 GB; graphs whose initializers exceed EXTERNAL_DATA_LIMIT are saved with
their tensors in `<file>_data` beside the graph (ONNX external data), every other graph as one file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

EXTERNAL_DATA_LIMIT = 1 << 30  # initializer bytes; well under protobuf's 2 GB ceiling


def needs_external(initializer_bytes: int) -> bool:
    return initializer_bytes > EXTERNAL_DATA_LIMIT


def initializer_bytes(model: onnx.ModelProto) -> int:
    return sum(i.ByteSize() for i in model.graph.initializer)


def save_onnx(model: onnx.ModelProto, path: Path, *, external: bool | None = None, location: str | None = None) -> None:
    """Save `model` at `path`; external data (one file, `location` or `<name>_data`) when large or asked for."""
    path = Path(path)
    if external is None:
        external = needs_external(initializer_bytes(model))
    if external:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=location or path.name + "_data", size_threshold=1024)
    else:
        onnx.save(model, str(path))


def _digest(t: onnx.TensorProto) -> str:
    return hashlib.sha256(numpy_helper.to_array(t).tobytes()).hexdigest() + str(t.data_type) + str(list(t.dims))


def share_weights(model: onnx.ModelProto, portable_path: Path, dst: Path) -> int:
    """Point `model`'s initializers at the external weight file of the graph at `portable_path` wherever the
    bytes are the same, then save it at `dst`: two forms of one model (a standard-ops graph and ONNX Runtime's)
    store their weights once. Returns how many tensors are shared (the rest stay inside the graph file)."""
    portable = onnx.load(str(portable_path))
    by_content = {_digest(t): t.name for t in portable.graph.initializer if np.prod(t.dims) >= 1024}
    refs = {t.name: t for t in onnx.load(str(portable_path), load_external_data=False).graph.initializer}
    shared = 0
    for t in model.graph.initializer:
        name = by_content.get(_digest(t)) if np.prod(t.dims) >= 1024 else None
        if name is not None and refs[name].data_location == onnx.TensorProto.EXTERNAL:
            own = t.name
            t.CopyFrom(refs[name])
            t.name = own
            shared += 1
    onnx.save(model, str(dst))
    return shared
