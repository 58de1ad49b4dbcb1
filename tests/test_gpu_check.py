"""scripts/gpu_check.sh on a CPU machine: its syntax, the wheel batches it makes and joins (the carrying of a wheel
larger than one call may carry), and its CPU fallback run end to end (what a GPU machine runs, minus CUDA)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
needs_bash = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("split") is None, reason="needs bash")


def _sh(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


@needs_bash
def test_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    assert "wheelhouse DIR" in _sh("--help").stdout


@needs_bash
def test_batches_split_large_wheels_and_join_them_back(tmp_path):
    src = tmp_path / "all"
    src.mkdir()
    big = src / "onnxruntime_gpu-1.0-cp312-cp312-manylinux_2_28_x86_64.whl"
    big.write_bytes(os.urandom(int(2.5 * 2**20)))
    for i in range(3):
        (src / f"pkg{i}-1.0-py3-none-any.whl").write_bytes(os.urandom(300_000))
    out = tmp_path / "batches"
    r = _sh("_batches", str(src), str(out), env={"EMBCC_GPU_PART_MB": "1"})
    assert r.returncode == 0, r.stderr
    batches = sorted(out.iterdir())
    assert [b.name for b in batches] == [f"batch-{i:02d}" for i in range(1, len(batches) + 1)]  # no gaps
    assert all(sum(f.stat().st_size for f in b.iterdir()) <= 2**20 + 100 for b in batches)
    parts = sorted(out.glob("*/*.part-*"))
    assert [p.name.split(".part-")[1] for p in parts] == ["01-of-03", "02-of-03", "03-of-03"]
    gpu = tmp_path / "gpu"
    gpu.mkdir()
    for b in batches[:2]:  # carried so far: not all parts
        shutil.copytree(b, gpu / b.name)
    r = _sh("_join", str(gpu))
    assert "parts here; carry the missing batches" in r.stdout and not (gpu / big.name).exists()
    for b in batches[2:]:
        shutil.copytree(b, gpu / b.name)
    r = _sh("_join", str(gpu))
    assert "sha256 checked" in r.stdout, r.stdout
    assert hashlib.sha256((gpu / big.name).read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()


@needs_bash
def test_cpu_fallback_run(tmp_path):
    """The whole script on this CPU machine: set up, parity on v2 (ONNX Runtime CPU stands in), a short speed table;
    CUDA, onnxruntime-gpu and TensorRT are listed as not run, with their reasons."""
    r = _sh("--dry-run", env={"EMBCC_GPU_PYTHON": sys.executable, "EMBCC_GPU_OUT": str(tmp_path / "out"),
                              "EMBCC_GPU_WHEELS": str(tmp_path / "none"), "EMBCC_GPU_SITE": str(tmp_path / "site"),
                              "EMBCC_GPU_WORK": str(tmp_path / "work")})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert result["passed"] and result["parity"] and result["speed"]
    assert any(row["runtime"] == "onnxruntime-cpu fp16" and row["min_cosine"] >= 0.999 for row in result["parity"])
    if not result["capabilities"]["cuda"]:
        assert any("torch-cuda" in line for line in result["not_run"])
    assert "== could not run" in r.stdout or "== everything ran" in r.stdout
