"""Export a fixed matrix of tiny fixtures and record every artifact's file hashes (its manifest's `files`).

Run it before and after a change that must not change artifacts (a restructuring), then compare:

    python scripts/manifest_matrix.py /tmp/before.json
    ... change ...
    python scripts/manifest_matrix.py /tmp/after.json --compare /tmp/before.json   # exit 1 on any difference

Fixtures are written fresh with fixed seeds; each export runs in this process, in a scratch directory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

FIXTURES = {  # key: (fixture name, layout)
    "v2-small": ("jina-v2-small", None),
    "v3": ("jina-v3", "original"),
    "v3-hf": ("jina-v3", "hf"),
    "v5-small": ("jina-v5-small", "base"),
    "v5-nano": ("jina-v5-nano", "base"),
    "v5-nano-premerged": ("jina-v5-nano", "premerged"),
}
MATRIX = [  # (fixture key, export options)
    ("v2-small", {"fmt": "onnx"}),
    ("v2-small", {"fmt": "gguf", "gguf_type": "f32"}),
    ("v3", {"fmt": "onnx", "lora": "merge"}),
    ("v3", {"fmt": "onnx", "lora": "keep"}),
    ("v3-hf", {"fmt": "onnx", "lora": "merge", "task": "retrieval.query"}),
    ("v3", {"fmt": "gguf", "lora": "merge", "gguf_type": "q8_0", "task": "retrieval.passage"}),
    ("v3", {"fmt": "gguf", "lora": "keep", "gguf_type": "f16"}),
    ("v3", {"fmt": "onnx", "precision": "fp16", "task": "text-matching"}),
    ("v3", {"fmt": "onnx", "precision": "int8", "task": "retrieval.query"}),
    ("v3", {"fmt": "onnx", "precision": "int8", "int8_mode": "dynamic", "task": "retrieval.query"}),
    ("v5-small", {"fmt": "onnx", "lora": "merge", "task": "retrieval", "role": "query"}),
    ("v5-small", {"fmt": "onnx", "lora": "keep"}),
    ("v5-nano", {"fmt": "onnx", "lora": "merge", "task": "classification"}),
    ("v5-nano", {"fmt": "gguf", "lora": "merge", "task": "retrieval", "gguf_type": "f32"}),
    ("v5-small", {"fmt": "gguf", "lora": "keep", "gguf_type": "f32"}),
    ("v5-nano-premerged", {"fmt": "onnx", "task": "text-matching"}),
]


def run(out_json: Path) -> dict:
    from embcc.fixtures import write_fixture
    from embcc.pipeline import export

    results = {}
    with tempfile.TemporaryDirectory(prefix="embcc-matrix-") as tmp:
        root = Path(tmp)
        os.environ.setdefault("EMBCC_CACHE_DIR", str(root / "cache"))
        ckpts = {k: write_fixture(name, root / "ckpt" / k, layout=layout, seed=0)
                 for k, (name, layout) in FIXTURES.items()}
        for i, (key, opts) in enumerate(MATRIX):
            label = f"{key} " + " ".join(f"{k}={v}" for k, v in sorted(opts.items()))
            art = export(ckpts[key], root / "art" / str(i), max_length=512, **opts)
            manifest = json.loads((art / "manifest.json").read_text())
            content = {str(f.relative_to(art)): gguf_content(f) for f in sorted(art.rglob("*.gguf"))}
            content.update({str(f.relative_to(art)): onnx_content(f) for f in sorted(art.rglob("*.onnx"))})
            results[label] = {"files": manifest["files"], "options": manifest["options"], "gguf_content": content,
                              "source_sha256": manifest["source_sha256"]}
            print(f"{label}: {len(manifest['files'])} files", flush=True)
    out_json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results


def gguf_content(path: Path) -> str:
    """sha256 of a GGUF file's content independent of its tensor order: metadata and every tensor's bytes."""
    import hashlib

    import gguf

    r = gguf.GGUFReader(str(path))
    h = hashlib.sha256()
    for key in sorted(r.fields):
        field = r.fields[key]
        h.update(key.encode() + b"\0" + b"".join(bytes(field.parts[i]) for i in field.data))
    for t in sorted(r.tensors, key=lambda t: t.name):
        h.update(f"{t.name}:{int(t.tensor_type)}:{list(t.shape)}".encode() + bytes(t.data))
    return h.hexdigest()


def onnx_content(path: Path) -> str:
    """sha256 of an ONNX graph without the exporter's per-node Python stack traces (absolute source paths and
    line numbers of the checkout that traced it), plus its external data files."""
    import hashlib

    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for node in model.graph.node:
        keep = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)
    h = hashlib.sha256(model.SerializeToString(deterministic=True))
    for data in sorted(path.parent.glob("*data")):
        h.update(data.read_bytes())
    return h.hexdigest()


def compare(now: dict, before: dict) -> list[str]:
    diffs = []
    for label in sorted(set(now) | set(before)):
        a, b = before.get(label), now.get(label)
        if a is None or b is None:
            diffs.append(f"{label}: only in {'after' if a is None else 'before'}")
            continue
        same_content = {f for f, h in a.get("gguf_content", {}).items() if b.get("gguf_content", {}).get(f) == h}
        for f in sorted(set(a["files"]) | set(b["files"])):
            if a["files"].get(f) != b["files"].get(f):
                why = " (bytes only: same content; see gguf_content / onnx_content)" if f in same_content else ""
                diffs.append(f"{label}: {f} differs{why}")
        if a.get("source_sha256") != b.get("source_sha256"):
            diffs.append(f"{label}: the fixture checkpoint differs (source_sha256)")
        if a["options"] != b["options"]:
            diffs.append(f"{label}: options differ: {a['options']} -> {b['options']}")
    return diffs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--compare", type=Path, default=None, help="a JSON written by an earlier run")
    args = p.parse_args()
    now = run(args.out)
    if args.compare is None:
        return 0
    diffs = compare(now, json.loads(args.compare.read_text()))
    print("\n".join(diffs) if diffs else f"identical: {len(now)} artifacts, every file's sha256 equal")
    real = [d for d in diffs if "(bytes only" not in d and not d.endswith("manifest.json differs")]
    return 1 if real else 0


if __name__ == "__main__":
    sys.exit(main())
