"""Full-size verify at the whole context (heavy: ~10 min on 2 cores for v5-nano; scripts/verify_long.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.heavy
def test_full_size_v5_nano_verifies_at_32k(tmp_path):
    """A full-size v5-nano, exported as a user does (one task, merged, fp32), passes verify with its fused graph
    probed to 32,768 tokens and the portable graph as far as memory allows, each row timed."""
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "verify_long.py"), "--work", str(tmp_path),
                          "--models", "jina-v5-nano"], capture_output=True, text=True)
    result = json.loads((tmp_path / "verify_long.json").read_text())["results"][0]
    assert run.returncode == 0, run.stdout + run.stderr
    assert result["passed"] and result["probe_max_tokens"] == 32768
    fused = [r for r in result["rows"] if r["graph"] == "model.onnx"]
    assert fused and all(r["max_tokens"] == 32768 and r["artifact_s"] > 0 for r in fused)
