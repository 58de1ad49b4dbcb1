"""jina-clip-v2 and jina-embeddings-v4 end to end through the CLI, as a user runs them: export every part / the text
graph, verify against the reference built from the checkpoint's files (transformers + PEFT for the text towers,
embcc.reference's own float modules for the image tower), open the export root with open_artifact.

The part-level tests (tests/test_clip_parts.py, tests/test_v4_parts.py) check the modules against float64
re-implementations; this file checks that what `embcc export` writes passes `embcc verify` and that a broken
export fails it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embcc.cli import main
from embcc.fixtures import write_fixture
from embcc.runtimes import open_artifact

TEXTS = ["a photo of a cat", "Ein Foto eines Hundes", "東京の夜景", "x"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_fixture("jina-clip-v2", tmp_path_factory.mktemp("clip") / "ckpt", seed=0)


@pytest.fixture(scope="module")
def v4(tmp_path_factory) -> Path:
    return write_fixture("jina-v4", tmp_path_factory.mktemp("v4") / "ckpt", seed=0)


def _parity(root: Path) -> list[dict]:
    rows = []
    for f in sorted(root.rglob("parity.json")):
        rows += json.loads(f.read_text())["results"]
    return rows


def test_clip_v2_every_part_exports_and_verifies(clip, tmp_path, capsys):
    out = tmp_path / "clip"
    assert main(["export", str(clip), "--out", str(out), "--max-length", "256", "-q"]) == 0
    parts = sorted(p.name for p in out.iterdir() if (p / "embcc.json").is_file())
    assert parts == ["combined", "text", "vision"]
    assert main(["verify", str(out), "--reference", str(clip), "-q"]) == 0
    rows = _parity(out)
    assert rows and all(r["result"] in ("pass", "reported (not gated)") for r in rows)
    assert any("image" in json.dumps(r) for r in rows)  # the image tower was compared too
    emb = open_artifact(out)
    text = emb.encode(TEXTS)
    assert text.shape[0] == len(TEXTS) and np.allclose(np.linalg.norm(text, axis=1), 1, atol=1e-5)


def test_clip_v2_vision_gguf_is_refused_with_the_reason(clip, tmp_path, capsys):
    out = tmp_path / "g"
    assert main(["export", str(clip), "--out", str(out), "--format", "gguf", "--part", "vision"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "16574" in err[0] and not out.exists()


@pytest.mark.parametrize("lora", ["merge", "keep"])
def test_v4_exports_and_verifies(v4, tmp_path, lora):
    """Both parts (text/ and vision/, per task when merged), verified on texts and images, served by the root."""
    out = tmp_path / f"v4-{lora}"
    args = ["export", str(v4), "--out", str(out), "--lora", lora, "--max-length", "256", "-q"]
    if lora == "merge":
        args += ["--task", "retrieval"]
    assert main(args) == 0
    assert main(["verify", str(out), "--reference", str(v4), "-q"]) == 0
    rows = _parity(out)
    tasks = {"retrieval"} if lora == "merge" else {"retrieval", "text-matching", "code"}
    assert {r["task"] for r in rows} >= tasks | {f"{t} (images)" for t in tasks} | {f"{t} (images, multi)" for t in tasks}
    from embcc.core.spec import ModelSpec
    from embcc.pipeline import artifacts_in

    text, vision = artifacts_in(out)
    assert ModelSpec.read(text).attention == "gqa"  # the causal decoder fused into GroupQueryAttention
    assert ModelSpec.read(vision).part == "vision" and ModelSpec.read(vision).image["kind"] == "qwen2-vl"
    text_rows = [r for r in rows if "images" not in r["task"]]
    assert {r["graph"] for r in text_rows} == {"model.onnx", "model.portable.onnx"}  # both gated
    emb = open_artifact(out)
    kw = {"task": "retrieval"} if lora == "keep" else {}
    single = emb.encode(TEXTS, **kw)
    multi = emb.encode(TEXTS, vectors="multi", **kw)
    assert single.shape[0] == len(TEXTS) and len(multi) == len(TEXTS)
    from embcc.core.probe_images import probe_images

    pictures = emb.encode_images(probe_images()[:3], **kw)
    assert pictures.shape == (3, single.shape[1]) and np.isfinite(pictures).all()


def test_v4_scaled_adapter_fails_verify(v4, tmp_path):
    """A gate is a gate: the adapters halved on the export side (a misread alpha / rank) fail verify against the
    reference, which reads the adapters from the checkpoint's files itself."""
    from embcc.families import load
    from embcc.pipeline import export
    from embcc.verify import verify

    bundle = load(v4)
    for w in bundle.lora.modules.values():
        w.B.mul_(0.5)
    out = export(v4, tmp_path / "v4-scaled", task="retrieval", max_length=128, bundle=bundle)
    report = verify(out, v4, write=False)
    assert not report["passed"]


def test_v4_verify_reaches_the_full_context(v4, tmp_path):
    """A default export verified as a user runs it: the fused text graph to 32,768 tokens. The reference runs its
    longest probes alone (it once batched them and asked for 34 GB) and token rows need no tokens^2 matrix (63,000
    tokens once asked for 30 GB)."""
    from embcc.pipeline import export
    from embcc.verify import verify

    out = export(v4, tmp_path / "v4-full-context", task="code", part="text")
    report = verify(out, v4, write=False)
    assert report["passed"] and report["probe_max_tokens"] == 32768
    assert {r["task"] for r in report["results"]} == {"code", "code (multi)"}
