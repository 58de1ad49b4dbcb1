"""The calibration cache: measured ranges and fp16 decisions, keyed by everything they depend on.

Key = checkpoint hash + corpus hash (texts, tasks, length cap) + method + hash of the fp32 graph they were
measured on. The same inputs find the same entry, skip calibration and give byte-identical artifacts.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from embcc.core.errors import EmbccError
from embcc.core.files import sha256_files, write_atomic

__all__ = ["default_dir", "entry", "graph_hash", "write_atomic"]

FORMAT = 1  # bump when what is cached changes meaning


def default_dir() -> Path:
    if os.environ.get("EMBCC_CACHE_DIR"):
        return Path(os.environ["EMBCC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "embcc"


def graph_hash(model_path: Path) -> str:
    """sha256 of an ONNX graph and the external data files it reads (if any)."""
    import onnx

    path = Path(model_path)
    model = onnx.load(str(path), load_external_data=False)
    data = sorted({e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"})
    return sha256_files([path, *(path.parent / d for d in data)])


def entry(cache_dir: Path | None, *, checkpoint: str, corpus: str, method: str, graph: str, kind: str) -> Path:
    """The cache file for these inputs (it may not exist yet)."""
    root = Path(cache_dir) if cache_dir is not None else default_dir()
    try:
        (root / "calibration").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EmbccError(f"cannot create the calibration cache in {root} ({e.strerror})",
                         "pass a writable --cache-dir") from e
    key = json.dumps({"format": FORMAT, "checkpoint": checkpoint, "corpus": corpus, "method": method,
                      "graph": graph, "kind": kind}, sort_keys=True)
    return root / "calibration" / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
