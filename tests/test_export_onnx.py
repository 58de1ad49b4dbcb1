"""ONNX export: merge and keep, parity through verify, RoPE override, lengths, determinism, artifact contents."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from embcc.core.adapted import adapt
from embcc.core.spec import ModelSpec
from embcc.export.graph import build_graph
from embcc.families import load
from embcc.pipeline import export
from embcc.runtimes import open_artifact
from embcc.verify import verify

TEXTS = ["hello world", "Grüße aus München", "東京は日本の首都です。", "a", "double  space", " ".join(["word"] * 200)]
TASKS = ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"]


def test_keep_graph_follows_jinas_v3_contract(v3_keep):
    sess = ort.InferenceSession(str(v3_keep / "model.onnx"))
    inputs = {i.name: i for i in sess.get_inputs()}
    assert list(inputs) == ["input_ids", "attention_mask", "task_id"]
    assert inputs["input_ids"].type == inputs["task_id"].type == "tensor(int64)"
    assert [o.name for o in sess.get_outputs()] == ["text_embeds", "sentence_embedding", "last_hidden_state"]
    ids = np.array([[0, 10, 11, 12, 2, 1, 1]], dtype=np.int64)
    mask = (ids != 1).astype(np.int64)
    scalar = sess.run(None, {"input_ids": ids, "attention_mask": mask, "task_id": np.array(3, dtype=np.int64)})
    array = sess.run(None, {"input_ids": ids, "attention_mask": mask, "task_id": np.array([3], dtype=np.int64)})
    np.testing.assert_array_equal(scalar[1], array[1])
    assert scalar[0].shape == (1, 7, 64)


def test_merge_writes_one_graph_per_task(v3_merge):
    assert sorted(p.name for p in v3_merge.iterdir() if p.is_dir()) == sorted(TASKS)
    for task in TASKS:
        spec = ModelSpec.read(v3_merge / task)
        assert spec.task == task and spec.lora == "merge" and spec.rope_theta == 20000.0
        assert (v3_merge / task / "tokenizer.json").is_file()


def test_keep_equals_merge_per_task(v3_keep, v3_merge):
    keep = open_artifact(v3_keep)
    for task in TASKS:
        merged = open_artifact(v3_merge / task).encode(TEXTS, task=task)
        kept = keep.encode(TEXTS, task=task)
        cos = (merged * kept).sum(1)
        assert cos.min() >= 0.99999, task


def test_verify_passes_and_writes_parity(v3_keep, ckpts):
    report = verify(v3_keep, ckpts["v3"])
    assert report["passed"] and report["reference_is_source"]
    assert {r["task"] for r in report["results"]} == set(TASKS)
    assert report["probe_texts"] >= 100
    on_disk = json.loads((v3_keep / "parity.json").read_text())
    graphs = {r["graph"] for r in on_disk["results"]}
    assert graphs == {"model.onnx", "model.portable.onnx"}  # the fused graph and the standard-ops one, both gated
    assert on_disk["passed"] and len(on_disk["results"]) == 5 * len(graphs)
    for r in on_disk["results"]:
        assert r["min_cosine"] >= 0.9999 and r["max_abs_diff"] <= 1e-4


def test_verify_fails_against_another_checkpoint(v3_keep, tmp_path):
    from embcc.fixtures import write_fixture

    other = write_fixture("jina-v3", tmp_path / "other", seed=1)
    report = verify(v3_keep, other, texts=TEXTS * 2)
    assert not report["passed"] and not report["reference_is_source"]


def test_v2_export_and_verify(ckpts, tmp_path):
    for name in ("v2-small", "v2-base"):
        out = export(ckpts[name], tmp_path / name, max_length=512)
        spec = ModelSpec.read(out)
        assert spec.position == "alibi" and spec.tasks == [] and spec.lora is None
        assert verify(out, ckpts[name])["passed"]


def test_rope_theta_is_recorded_and_used(ckpts, tmp_path):
    long = [" ".join(["Grüße aus München und ein langer Satz"] * 60)]
    vecs = {}
    for theta in (None, 10000.0):
        out = export(ckpts["v3"], tmp_path / f"t{theta}", task="separation", rope_theta=theta, max_length=1024)
        spec = ModelSpec.read(out / "separation")
        assert spec.rope_theta == (theta or 20000.0)
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["options"]["rope_theta"] == theta
        vecs[theta] = open_artifact(out / "separation").encode(long, task="separation")
        assert verify(out, ckpts["v3"], texts=long + TEXTS)["passed"]
    assert np.abs(vecs[None] - vecs[10000.0]).max() > 1e-4


@pytest.mark.parametrize("length", [8, 2048])
def test_positions_are_not_frozen_at_the_traced_length(v3_keep, ckpts, length):
    """The graph was traced at 16 tokens; it must be right at 8 and at 2,048 (RoPE tables are dynamic)."""
    graph = build_graph(adapt(load(ckpts["v3"]), task=None, lora="keep"))
    rng = np.random.default_rng(length)
    ids = rng.integers(4, 900, size=(2, length)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, length // 2 :] = 0
    sess = ort.InferenceSession(str(v3_keep / "model.onnx"))
    got = sess.run(None, {"input_ids": ids, "attention_mask": mask, "task_id": np.array(1, dtype=np.int64)})[1]
    with torch.inference_mode():
        want = graph(torch.from_numpy(ids), torch.from_numpy(mask), torch.tensor([1]))[1].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_v2_alibi_is_not_frozen_at_the_traced_length(ckpts, tmp_path):
    out = export(ckpts["v2-base"], tmp_path / "v2")
    graph = build_graph(adapt(load(ckpts["v2-base"]), task=None, lora=None))
    ids = np.random.default_rng(0).integers(104, 600, size=(1, 2048)).astype(np.int64)
    mask = np.ones_like(ids)
    got = ort.InferenceSession(str(out / "model.onnx")).run(None, {"input_ids": ids, "attention_mask": mask})[1]
    with torch.inference_mode():
        want = graph(torch.from_numpy(ids), torch.from_numpy(mask))[1].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_reexport_is_byte_identical(ckpts, tmp_path):
    a = export(ckpts["v3"], tmp_path / "a", task="classification")
    b = export(ckpts["v3"], tmp_path / "b", task="classification")
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (a, b))
    assert ma == mb
    for rel in ma["files"]:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert "classification/model.onnx" in ma["files"] and ma["source_sha256"] == load(ckpts["v3"]).source_sha256


def test_hf_layout_exports_like_original(ckpts, tmp_path):
    a = export(ckpts["v3"], tmp_path / "orig", task="retrieval.passage", max_length=256)
    b = export(ckpts["v3-hf"], tmp_path / "hf", task="retrieval.passage", max_length=256)
    va = open_artifact(a / "retrieval.passage").encode(TEXTS, task="retrieval.passage")
    vb = open_artifact(b / "retrieval.passage").encode(TEXTS, task="retrieval.passage")
    np.testing.assert_allclose(va, vb, atol=1e-5)
