"""Saving ONNX graphs: the one rule for when weights go to an external data file.

Protobuf cannot hold a file over 2 GB; graphs whose initializers exceed EXTERNAL_DATA_LIMIT are saved with
their tensors in `<file>_data` beside the graph (ONNX external data), every other graph as one file.
"""

from __future__ import annotations

from pathlib import Path

import onnx

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
