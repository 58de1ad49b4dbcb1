"""jina-embeddings-v4's image graph (the `vision` part: vision encoder + splice + decoder in ONNX) on the tiny
published-layout fixture, against transformers' own Qwen2.5-VL forward with PEFT's unmerged adapters (the
reference, embcc.reference.jina_v4), which shares nothing with the graph's inputs (embcc.core.vl_images) or its
segment-masked vision attention (families/jina_v4_vision.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from embcc.core import vl_images
from embcc.core.errors import EmbccError
from embcc.core.images import load_images
from embcc.core.probe_images import probe_images
from embcc.families.jina_v4_layout import image_facts, read
from embcc.families.jina_v4_model import build_text_graph
from embcc.families.jina_v4_vision import INPUTS, V4ImageGraph, build_image_graph
from embcc.fixtures import jina_v4 as fixture
from embcc.pipeline import export
from embcc.runtimes import open_artifact
from embcc.verify import verify

BAR = 1e-5  # fp32: max abs difference of unit vectors


@pytest.fixture(scope="module")
def v4_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("v4img") / "ckpt"
    d.mkdir()
    fixture.write("jina-v4", d, size="tiny", seed=1, lora_alpha=16)
    return d


@pytest.fixture(scope="module")
def ref(v4_dir: Path):
    from embcc.reference.jina_v4 import JinaV4Reference

    return JinaV4Reference(v4_dir)


@pytest.fixture(scope="module")
def ckpt(v4_dir: Path):
    return read(v4_dir)


@pytest.fixture(scope="module")
def images() -> list:
    return load_images(probe_images())


@pytest.fixture(scope="module")
def kept_onnx(v4_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(v4_dir, tmp_path_factory.mktemp("v4keep") / "out", lora="keep", part="vision")


def test_rope_index_matches_transformers(ref, ckpt, images):
    """The numpy M-RoPE positions equal Qwen2_5_VLModel.get_rope_index on a padded batch of mixed sizes."""
    facts = image_facts(ckpt)
    batch = ref.image_batch(images[:6])
    grid = batch["image_grid_thw"].numpy()
    assert len({tuple(g) for g in grid}) > 2  # sizes differ: the rows pad
    want, _ = ref.model.model.get_rope_index(batch["input_ids"], batch["mm_token_type_ids"],
                                             image_grid_thw=batch["image_grid_thw"],
                                             attention_mask=batch["attention_mask"])
    got = vl_images.rope_index(batch["input_ids"].numpy(), batch["attention_mask"].numpy(), grid, facts)
    assert np.array_equal(got, want.numpy())
    tok = Tokenizer.from_file(str(ckpt.path / "tokenizer.json"))
    ids, mask = vl_images.prompt_ids(grid, tok, int(batch["input_ids"][-1, -1]), facts)
    assert np.array_equal(ids[mask.astype(bool)], batch["input_ids"][batch["attention_mask"].bool()].numpy())


def test_segment_masked_encoder_matches_transformers(ref, ckpt, images):
    """Several images in one call (the image segments matter) and grids with several windows (the window
    segments and the restore permutation matter): the merged visual tokens equal transformers' pooler_output."""
    facts = image_facts(ckpt)
    graph = build_image_graph(ckpt, build_text_graph(ckpt, task="code"))
    pixels, grid = vl_images.patches(images[:5], facts)
    feeds = vl_images.vision_inputs(pixels, grid, facts)
    assert len(set(feeds["window_segments"])) > len(grid) and not np.array_equal(feeds["restore"],
                                                                               np.arange(len(feeds["restore"])))
    with torch.no_grad():
        got = graph.encode(*[torch.from_numpy(feeds[k]) for k in INPUTS[:5]])
        want = ref.model.model.visual(torch.from_numpy(pixels), grid_thw=torch.from_numpy(grid)).pooler_output
    assert (got - want).abs().max() <= 1e-5


def test_kept_image_graph_through_onnx(kept_onnx, ref, images):
    """Every task through one graph (task_id), single and multi-vectors and Matryoshka, against the reference."""
    emb = open_artifact(kept_onnx)
    for task in ["retrieval", "text-matching", "code"]:
        got = emb.encode_images(images, task=task)
        want = ref.encode_images(images, task=task)
        assert got.shape == want.shape and np.abs(got - want).max() <= BAR, task
    few = images[:4]
    got_m = emb.encode_images(few, task="code", vectors="multi")
    want_m = ref.encode_images(few, task="code", vectors="multi")
    assert [g.shape for g in got_m] == [w.shape for w in want_m]
    assert max(np.abs(g - w).max() for g, w in zip(got_m, want_m)) <= BAR
    small = emb.encode_images(few, task="retrieval", dim=32)
    assert small.shape == (4, 32) and np.allclose(np.linalg.norm(small, axis=1), 1, atol=1e-5)


def test_image_errors_are_one_line(kept_onnx, images):
    emb = open_artifact(kept_onnx)
    with pytest.raises(EmbccError, match="pass a task|task"):
        emb.encode_images(images[:1])
    with pytest.raises(EmbccError, match="not texts"):
        emb.encode(["a text"], task="retrieval")
    with pytest.raises(EmbccError, match="vectors"):
        emb.encode_images(images[:1], task="code", vectors="many")


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_merged_image_graph_verifies(v4_dir, tmp_path, precision):
    """verify's image rows (single per task, multi per token) pass at each precision's bar."""
    out = export(v4_dir, tmp_path / precision, task="retrieval", part="vision", precision=precision)
    report = verify(out, v4_dir, write=False)
    rows = {r["task"]: r for r in report["results"] if "images" in r["task"]}
    assert {"retrieval (images)", "retrieval (images, multi)"} <= set(rows), rows
    assert report["passed"], [(r["task"], r["graph"], r["min_cosine"], r["failed"]) for r in report["results"]]


def test_image_graph_without_restore_fails_verify(v4_dir, tmp_path, monkeypatch):
    """The gate is a gate: an image graph that leaves its merged tokens in window order (restore dropped) is a
    broken export, and verify fails it on the image rows."""
    original = V4ImageGraph.encode

    def window_order(self, pixel_values, positions, windows, image_segments, restore):
        return original(self, pixel_values, positions, windows, image_segments, torch.arange(restore.shape[0]))

    monkeypatch.setattr(V4ImageGraph, "encode", window_order)
    out = export(v4_dir, tmp_path / "broken", task="code", part="vision")
    monkeypatch.undo()
    report = verify(out, v4_dir, write=False)
    assert not report["passed"]
    failed = {r["task"] for r in report["results"] if not r["passed"]}
    assert "code (images)" in failed, failed


def test_bench_times_v4_images_against_the_reference(kept_onnx, v4_dir):
    """bench's image rows for v4: the artifact's image graph and the reference's Qwen2.5-VL forward, both timed on
    the same generated images for one task (no plain side: none is published)."""
    from embcc.bench import bench

    r = bench(kept_onnx, v4_dir, threads=1, seconds=0.01, memory=False)
    rows = r["rows"]
    assert rows and all(x["regime"] == "images" and x["task"] == "retrieval" for x in rows)
    assert all(x["artifact"]["images_per_s"] > 0 and x["torch"]["images_per_s"] > 0 for x in rows)
    assert all("n/a" in x["plain"]["error"] for x in rows)


def test_bench_times_v4_multi_vectors(v4_dir, tmp_path):
    """bench's multi rows: the text graph's multi-vector output against the reference's projector, short shapes."""
    from embcc.bench import bench

    out = export(v4_dir, tmp_path / "text", task="code", part="text", max_length=128)
    r = bench(out, v4_dir, threads=1, seconds=0.01, memory=False)
    multi = [x for x in r["rows"] if x["regime"] == "multi"]
    assert {x["shape"] for x in multi} == {"1x16", "32x128"}
    assert all(x["artifact"]["texts_per_s"] > 0 and x["torch"]["texts_per_s"] > 0 for x in multi)
    assert all("n/a" in x["plain"]["error"] for x in multi)


@pytest.mark.parametrize("lora", ["merge", "keep"])
def test_streamed_export_writes_the_same_graphs(v4_dir, tmp_path, monkeypatch, lora):
    """The streamed ONNX export (a full-size v4 is traced on the meta device and its weights written from the
    files one tensor at a time) gives the graphs the in-memory export gives: forced on the tiny fixture, both parts,
    every output equal."""
    import onnxruntime as ort

    from embcc.families import jina_v4_model
    from embcc.pipeline import artifacts_in

    kw = {"task": "code"} if lora == "merge" else {"lora": "keep"}
    plain = export(v4_dir, tmp_path / "plain", max_length=128, **kw)
    import embcc.export.onnx as onnx_format

    saved = []
    original = onnx_format._save_streamed
    monkeypatch.setattr(onnx_format, "_save_streamed", lambda *a: (saved.append(a[1]), original(*a)))
    monkeypatch.setattr(jina_v4_model, "STREAM_BYTES", 0)
    streamed = export(v4_dir, tmp_path / "streamed", max_length=128, **kw)
    assert len(saved) == 2  # both parts took the streamed path
    pairs = list(zip(artifacts_in(plain), artifacts_in(streamed)))
    assert len(pairs) == 2
    task = {} if lora == "merge" else {"task": "code"}
    texts = ["a short text", "another text that is a little longer than the first one"]
    pictures = probe_images()[:3]
    for a, b in pairs:
        for graph in sorted(f.name for f in a.glob("*.onnx")):
            sa = ort.InferenceSession(str(a / graph), providers=["CPUExecutionProvider"])
            sb = ort.InferenceSession(str(b / graph), providers=["CPUExecutionProvider"])
            assert [i.name for i in sa.get_inputs()] == [i.name for i in sb.get_inputs()], graph
        got = (open_artifact(b).encode_images(pictures, **task) if b.name == "vision"
               else open_artifact(b).encode(texts, **task))
        want = (open_artifact(a).encode_images(pictures, **task) if a.name == "vision"
                else open_artifact(a).encode(texts, **task))
        assert np.abs(got - want).max() <= 1e-6, (a.name, np.abs(got - want).max())
    assert {b.name for _, b in pairs} == {"text", "vision"}
