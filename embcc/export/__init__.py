"""Formats, one module each behind export.base.Format; the registry below is the only list of them."""

from __future__ import annotations

from embcc.core.errors import EmbccError
from embcc.export.base import Format, Option, Plan
from embcc.export.gguf import GgufFormat
from embcc.export.onnx import OnnxFormat
from embcc.export.tensorrt import TensorRtFormat

FORMATS: dict[str, Format] = {f.name: f for f in (OnnxFormat(), GgufFormat(), TensorRtFormat())}


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise EmbccError(f"unknown format {name!r}", f"choose one of: {', '.join(FORMATS)}")
    return FORMATS[name]


__all__ = ["FORMATS", "Format", "Option", "Plan", "get_format"]
