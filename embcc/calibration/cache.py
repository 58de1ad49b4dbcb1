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
from embcc.core.files import disk_full, sha256_files
from embcc.core.files import write_atomic as _write_atomic

__all__ = ["default_dir", "entry", "graph_hash", "trusted", "write_atomic"]

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


def trusted(path: Path) -> bool:
    """True when the entry exists and is a whole JSON document. Entries are written atomically (a killed run
    leaves none), but a damaged one (a disk error, a hand edit) is removed and measured again, not trusted."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        json.loads(path.read_bytes().decode("utf-8"))
        return True
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        path.unlink(missing_ok=True)
        return False


def write_atomic(path: Path, data: str | bytes) -> None:
    """A cache entry, written atomically with the user's umask (core.files.write_atomic); a failure is one line."""
    try:
        _write_atomic(path, data)
    except OSError as e:
        what = "the disk is full" if disk_full(e) else e.strerror
        raise EmbccError(f"cannot write calibration cache entry {Path(path).name} in {Path(path).parent} ({what})",
                         "free space, or pass another --cache-dir") from e
