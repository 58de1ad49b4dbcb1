"""Artifact directories: staged in a temporary sibling and renamed into place only when complete,
with a manifest.json (source hash, options, version, sha256 of every file; no timestamps)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from embcc import __version__
from embcc.errors import EmbccError

MANIFEST = "manifest.json"
PARITY = "parity.json"


@contextlib.contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """Yield an empty temporary directory next to `out`; on success it becomes `out`, on any error it vanishes."""
    out = Path(out)
    if out.exists():
        raise EmbccError(f"output {out} already exists", "choose a new --out directory or remove the old one")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(root: Path, *, source_sha256: str, options: dict) -> dict:
    """manifest.json at `root`, covering every file below it (parity.json is written later, outside it)."""
    files = {
        str(p.relative_to(root)): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in (MANIFEST, PARITY)
    }
    manifest = {"embcc_version": __version__, "source_sha256": source_sha256, "options": options, "files": files}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
