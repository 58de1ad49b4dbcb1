"""Loading published layouts: both v3 layouts agree, tasks and prefixes, v2 specifics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embcc.export.torch_embedder import TorchEmbedder
from embcc.families import load

TEXTS = ["hello world", "Grüße aus München", "東京は日本の首都です。", "a", "double  space"]


def test_v3_layouts_load_to_the_same_model(ckpts):
    a, b = load(ckpts["v3"]), load(ckpts["v3-hf"])
    assert (a.layout, b.layout) == ("original", "hf")
    assert a.weights.keys() == b.weights.keys()
    for task in ("retrieval.query", "text-matching"):
        ea = TorchEmbedder(a).encode(TEXTS, task=task)
        eb = TorchEmbedder(b).encode(TEXTS, task=task)
        np.testing.assert_allclose(ea, eb, atol=1e-6)


def test_v3_task_ids_and_prefixes_follow_the_config(ckpts):
    spec = load(ckpts["v3"]).spec
    assert [(t.id, t.name) for t in spec.tasks] == list(enumerate(
        ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"]))
    config = json.loads((ckpts["v3"] / "config.json").read_text())
    assert {t.name: t.prefix for t in spec.tasks} == config["task_instructions"]
    assert spec.rope_theta == 20000.0 and spec.pooling == "mean" and spec.dim == 64


def test_prefix_is_applied_to_token_ids(ckpts):
    e = TorchEmbedder(load(ckpts["v3"]))
    q = e.token_ids(["hello"], task="retrieval.query")[0]
    s = e.token_ids(["hello"], task="separation")[0]
    assert len(q) > len(s) + 3
    prefix = e.tokenizer.encode("Represent the query for retrieving evidence documents: hello").ids
    assert q == prefix


def test_tasks_give_different_vectors(ckpts):
    e = TorchEmbedder(load(ckpts["v3"]))
    a = e.encode(TEXTS, task="separation")
    b = e.encode(TEXTS, task="classification")
    assert np.abs(a - b).max() > 1e-2


def test_v2_has_no_tasks_and_uses_alibi(ckpts):
    b = load(ckpts["v2-small"])
    assert b.spec.tasks == [] and b.spec.position == "alibi" and b.lora is None
    v = TorchEmbedder(b).encode(TEXTS)
    assert v.shape == (5, 64)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_matryoshka_truncation_renormalises(ckpts):
    e = TorchEmbedder(load(ckpts["v3"]))
    full = e.encode(TEXTS, task="separation")
    small = e.encode(TEXTS, task="separation", dim=32)
    assert small.shape == (5, 32)
    ref = full[:, :32] / np.linalg.norm(full[:, :32], axis=1, keepdims=True)
    np.testing.assert_allclose(small, ref, atol=1e-6)


def test_padding_does_not_change_vectors(ckpts):
    e = TorchEmbedder(load(ckpts["v3"]))
    together = e.encode(TEXTS, task="separation")
    alone = np.concatenate([e.encode([t], task="separation") for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=2e-6)


@pytest.mark.parametrize("theta", [10000.0, 20000.0])
def test_rope_theta_override_reaches_the_model(ckpts, theta):
    b = load(ckpts["v3"])
    long = [" ".join(["Grüße aus München und ein langer Satz"] * 60)]
    default = TorchEmbedder(b).encode(long, task="separation")
    other = TorchEmbedder(b, rope_theta=theta).encode(long, task="separation")
    assert (np.abs(default - other).max() > 1e-4) == (theta != 20000.0)
