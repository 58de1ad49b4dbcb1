"""Artifact directories: staged in a temporary sibling and renamed into place only when complete,
with a manifest.json (source hash, options, version, sha256 of every file; no timestamps)."""

from __future__ import annotations

import json
from pathlib import Path

from embcc import __version__
from embcc.core.files import sha256_file, staged_dir

__all__ = ["MANIFEST", "PARITY", "staged_dir", "write_manifest"]

MANIFEST = "manifest.json"
PARITY = "parity.json"


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
