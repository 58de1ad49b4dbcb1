"""Artifact directories: staged in a temporary sibling and renamed into place only when complete,
with a manifest.json (artifact format, source hash and name, options, version, sha256 of every file; no
timestamps)."""

from __future__ import annotations

import json
from pathlib import Path

from embcc import __version__
from embcc.core.files import sha256_file, staged_dir
from embcc.core.manifest import ARTIFACT_FORMAT, MANIFEST, PARITY, covered

__all__ = ["MANIFEST", "PARITY", "staged_dir", "write_manifest"]


def write_manifest(root: Path, *, source_sha256: str, options: dict, source: dict | None = None) -> dict:
    """manifest.json at `root`, covering every file below it (parity.json is written later, outside it).
    `source`: what the user named the checkpoint (name, revision), recorded as given."""
    files = {
        str(p.relative_to(root)): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and (p.parent != root or covered(p.name))
    }
    manifest = {"artifact_format": ARTIFACT_FORMAT, "embcc_version": __version__, "source_sha256": source_sha256,
                "source": {"sha256": source_sha256, **{k: v for k, v in (source or {}).items() if v is not None}},
                "options": options, "files": files}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
