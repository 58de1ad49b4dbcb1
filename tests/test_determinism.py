"""Determinism: the same export in two separate processes (different hash seeds, each with its own calibration
cache, run side by side) writes byte-identical files: their manifests (sha256 of every file) are equal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EXPORTS = {  # name -> (checkpoint fixture, export keyword arguments)
    "onnx-fp32": ("v3", {"task": "retrieval.query", "max_length": 128}),
    "onnx-fp32-keep": ("v3-hf", {"lora": "keep", "max_length": 128}),
    "onnx-fp16": ("v3", {"task": "text-matching", "precision": "fp16", "max_length": 128, "calibration_max_length": 64}),
    "onnx-int8": ("v3", {"task": "retrieval.query", "precision": "int8", "max_length": 128, "calibration_max_length": 64}),
    "onnx-int8-entropy": ("v2-small", {"precision": "int8", "calibration_method": "entropy", "max_length": 64,
                                       "calibration_max_length": 32}),
    "gguf-q8_0": ("v3", {"fmt": "gguf", "gguf_type": "q8_0", "task": "retrieval.passage", "max_length": 128}),
    "gguf-f16-keep": ("v3", {"fmt": "gguf", "gguf_type": "f16", "lora": "keep", "max_length": 128}),
    "gguf-q4_k_m": ("v2-small", {"fmt": "gguf", "gguf_type": "q4_k_m", "max_length": 64}),
}

SCRIPT = """
import json, sys
from embcc.pipeline import export
plan = json.loads(sys.argv[1])
for name, (ckpt, kw) in plan["exports"].items():
    export(ckpt, plan["out"] + "/" + name, cache_dir=plan["out"] + "/cache" if "precision" in kw else None, **kw)
"""


def _manifests(root: Path) -> dict[str, dict]:
    return {name: json.loads((root / name / "manifest.json").read_text()) for name in EXPORTS}


def test_two_processes_write_identical_bytes(ckpts, tmp_path):
    procs = []
    for i in (1, 2):
        plan = {"out": str(tmp_path / f"run{i}"),
                "exports": {n: (str(ckpts[c]), kw) for n, (c, kw) in EXPORTS.items()}}
        env = {**os.environ, "PYTHONHASHSEED": str(i)}
        procs.append(subprocess.Popen([sys.executable, "-c", SCRIPT, json.dumps(plan)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=1800)
        assert p.returncode == 0, err[-3000:]
    a, b = _manifests(tmp_path / "run1"), _manifests(tmp_path / "run2")
    differ = {name: sorted(f for f in a[name]["files"] if a[name]["files"][f] != b[name]["files"].get(f))
              for name in EXPORTS if a[name] != b[name]}
    assert not differ, differ
    # each run calibrated on its own: two caches, the same entries
    caches = [sorted(p.name for p in (tmp_path / f"run{i}" / "cache" / "calibration").iterdir()) for i in (1, 2)]
    assert caches[0] == caches[1] and len(caches[0]) >= 4, caches
    files = sum(len(m["files"]) for m in a.values())
    print(f"\n{len(EXPORTS)} exports, {files} files, byte-identical across two processes")
