"""manifest.json: what an artifact holds (sha256 of every file) and which artifact format wrote it; the
integrity check every runtime's open goes through.

Artifact format 2: manifest.json and embcc.json carry `artifact_format: 2`; the directories
also hold what existing clients need beside the graph (config.json, sentence-transformers files, README.md;
export/client_files.py). Artifacts without the key are format 1 and still open.

manifest.json sits at the top of an export: in the artifact directory itself (adapters kept, or no adapters)
or one level above it (merged: one subdirectory per task). parity.json files (and the report beside them:
parity.md, parity.html, parity-*.png) are written later, by verify, and are not covered.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from embcc.core.errors import EmbccError
from embcc.core.files import sha256_file

MANIFEST = "manifest.json"
PARITY = "parity.json"
ARTIFACT_FORMAT = 2  # the newest format this embcc writes and reads
NOT_COVERED = (MANIFEST,)  # and parity*.json/.md/.html/.png, written by verify after the manifest
REPORT_SUFFIXES = (".json", ".md", ".html", ".png")

_hashes: dict[tuple[str, int, int, int], str] = {}  # (path, size, mtime_ns, inode) -> sha256, this process only


def covered(name: str) -> bool:
    """Whether a file at the top of an export belongs in its manifest."""
    return name not in NOT_COVERED and not (name.startswith("parity") and name.endswith(REPORT_SUFFIXES))


def find_manifest(artifact: Path) -> tuple[Path, dict] | None:
    """(the directory holding manifest.json, its content) for an artifact directory, or None: the artifact's own,
    or its export root's (one level up: a task or a part; two: a task's part, as merged multi-part exports nest)."""
    artifact = Path(artifact)
    for root in (artifact, artifact.parent, artifact.parent.parent):
        f = root / MANIFEST
        if f.is_file():
            try:
                return root, json.loads(f.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise EmbccError(f"{f} is not valid JSON ({e})",
                                 "the artifact is damaged: export it again") from e
    return None


def artifact_format(record: dict) -> int:
    value = record.get("artifact_format", 1)
    if not isinstance(value, int) or value < 1:
        raise EmbccError(f"artifact_format {value!r} is not a format number", "the artifact is damaged: export it again")
    return value


def check_format(version: int, where: Path) -> None:
    if version > ARTIFACT_FORMAT:
        raise EmbccError(f"{where} is in artifact format {version}, newer than this embcc reads ({ARTIFACT_FORMAT})",
                         "upgrade embcc (pip install -U embcc)")


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _hashes:
        _hashes[key] = sha256_file(path)
    return _hashes[key]


def check_artifact(artifact: Path, spec_format: int | None = None) -> int:
    """Refuse an artifact whose files do not match its manifest (a tampered, truncated or missing file) or whose
    format is newer than this embcc; returns its artifact format. Only the files of `artifact` are hashed (a
    merged export's other task directories are not). `spec_format`: embcc.json's artifact_format, which must
    agree with the manifest's."""
    artifact = Path(artifact)
    found = find_manifest(artifact)
    if found is None:
        raise EmbccError(f"{artifact} has no {MANIFEST} (neither in it nor above it), so its files cannot be checked",
                         "export it again, or open it with verify=False")
    root, manifest = found
    version = artifact_format(manifest)
    check_format(version, root / MANIFEST)
    if spec_format is not None and spec_format != version:
        raise EmbccError(f"{artifact}: embcc.json says artifact format {spec_format}, {MANIFEST} says {version}",
                         "the artifact was assembled from two exports: export it again")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise EmbccError(f"{root / MANIFEST} lists no files", "the artifact is damaged: export it again")
    prefix = "" if root == artifact else artifact.relative_to(root).as_posix() + "/"
    fix = "export the artifact again (or restore the file from its source); open_artifact(..., verify=False) skips this check"
    mine = {rel: want for rel, want in files.items() if rel.startswith(prefix)}
    if not mine:
        raise EmbccError(f"{root / MANIFEST} lists no file of {artifact}", "the artifact is damaged: export it again")
    for rel, want in sorted(mine.items()):
        path = root / rel
        if not path.is_file():
            raise EmbccError(f"{path} is listed in {MANIFEST} but missing", fix)
        if _sha256(path) != want:
            size = os.path.getsize(path)
            raise EmbccError(f"{path} ({size:,} bytes) does not match its sha256 in {MANIFEST}: the file was changed "
                             "or truncated after export", fix)
    return version
