"""The gate is a gate: a deliberately wrong transform on the artifact side makes `verify` FAIL against the
independent reference, and the untouched export PASSES. Per family and layout.

Mutations are injected while exporting (or into the artifact's embcc.json, which the runtime's preprocessing
reads), never into the reference: a scaled adapter (a misread alpha / rank), an adapter of another task, a
dropped task prefix, a wrong RoPE theta, a wrong pooling, a lost token-type embedding (v2).
"""

from __future__ import annotations

import dataclasses
import json

import pytest

import embcc.core.adapted as adapted_mod
from embcc.core.errors import EmbccError
from embcc.core.files import sha256_file
from embcc.families import load
from embcc.pipeline import export
from embcc.probes import PROBES
from embcc.verify import verify

TEXTS = PROBES[:40]  # short and long texts, several batches
MAX_LEN = 256


@pytest.fixture(scope="module")
def mutation_ckpts(ckpts, v5_ckpts):
    return {**ckpts, **{f"v5-{k}": v for k, v in v5_ckpts.items()}}


CASES = {  # fixture key -> task to merge (None: no adapters / pre-merged default)
    "v3": "retrieval.query",
    "v3-hf": "retrieval.passage",
    "v5-nano": "retrieval",
    "v5-small": "retrieval",
    "v5-nano-premerged": None,
    "v2-small": None,
}


def _export(ckpt, out, task, bundle=None):
    return export(ckpt, out, task=task, max_length=MAX_LEN, bundle=bundle)


def _scaled_adapters(monkeypatch, ckpt):
    bundle = load(ckpt)
    for w in bundle.lora.modules.values():
        w.B.mul_(0.5)  # what a misread alpha / rank does
    return bundle


def _other_task(monkeypatch, ckpt):
    real = adapted_mod.adapt

    def adapt(bundle, *, task, lora, **kw):
        a = real(bundle, task=task, lora=lora, **kw)
        if a.task_index is not None:
            a.task_index = (a.task_index + 1) % len(bundle.lora.task_names)
        return a

    monkeypatch.setattr("embcc.pipeline.adapt", adapt)


def _wrong_theta(monkeypatch, ckpt):
    real = adapted_mod.adapt

    def adapt(bundle, *, task, lora, rope_theta=None, **kw):
        a = real(bundle, task=task, lora=lora, rope_theta=rope_theta, **kw)
        right = a.spec.rope_theta
        wrong = dataclasses.replace(a.spec, rope_theta=right / 2)
        orig_backbone = a.backbone

        def backbone():
            a.spec = wrong
            try:
                return orig_backbone()
            finally:
                a.spec = dataclasses.replace(wrong, rope_theta=right)  # the artifact records the right theta

        a.backbone = backbone
        return a

    monkeypatch.setattr("embcc.pipeline.adapt", adapt)


def _wrong_pooling(monkeypatch, ckpt):
    bundle = load(ckpt)
    bundle.spec = dataclasses.replace(bundle.spec, pooling={"mean": "cls", "last": "mean"}[bundle.spec.pooling])
    return bundle


def _no_token_type(monkeypatch, ckpt):
    from embcc.families import jinabert

    def forward(self, input_ids):
        return self.LayerNorm(self.word_embeddings(input_ids))

    monkeypatch.setattr(jinabert.JinaBertEmbeddings, "forward", forward)


def _dropped_prefix(art, *, reseal: bool = True):
    """Prefixes dropped from embcc.json. reseal: the manifest is rewritten to match, as an exporter that wrote the
    wrong prefix would have written it (otherwise the integrity check refuses the artifact before parity runs)."""
    manifest_file = art / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    for spec_file in art.rglob("embcc.json"):
        spec = json.loads(spec_file.read_text())
        for t in spec["tasks"]:
            t["prefix"] = ""
            t["roles"] = {r: "" for r in t["roles"]} if t.get("roles") else t.get("roles")
        spec_file.write_text(json.dumps(spec))
        manifest["files"][str(spec_file.relative_to(art))] = sha256_file(spec_file)
    if reseal:
        manifest_file.write_text(json.dumps(manifest))


EXPORT_MUTATIONS = {
    "scaled adapter": (_scaled_adapters, lambda key: CASES[key] is not None),
    "adapter of another task": (_other_task, lambda key: CASES[key] is not None),
    "wrong RoPE theta": (_wrong_theta, lambda key: not key.startswith("v2")),
    "wrong pooling": (_wrong_pooling, lambda key: True),
    "lost token-type embedding": (_no_token_type, lambda key: key.startswith("v2")),
}


def _verify(art, ckpt) -> dict:
    return verify(art, ckpt, texts=TEXTS, write=False)


@pytest.mark.parametrize("key", list(CASES))
def test_untouched_export_passes(mutation_ckpts, tmp_path, key):
    art = _export(mutation_ckpts[key], tmp_path / "a", CASES[key])
    report = _verify(art, mutation_ckpts[key])
    assert report["passed"], [(r["task"], r["min_cosine"], r["max_abs_diff"]) for r in report["results"]]
    assert report["reference_is_source"]


@pytest.mark.parametrize("mutation", list(EXPORT_MUTATIONS))
@pytest.mark.parametrize("key", list(CASES))
def test_mutated_export_fails(mutation_ckpts, tmp_path, monkeypatch, key, mutation):
    inject, applies = EXPORT_MUTATIONS[mutation]
    if not applies(key):
        pytest.skip(f"{mutation} does not apply to {key}")
    ckpt = mutation_ckpts[key]
    with monkeypatch.context() as m:
        bundle = inject(m, ckpt)
        art = _export(ckpt, tmp_path / "a", CASES[key], bundle=bundle)
    report = _verify(art, ckpt)
    assert not report["passed"], (mutation, key, [(r["min_cosine"], r["max_abs_diff"]) for r in report["results"]])


@pytest.mark.parametrize("key", [k for k in CASES if not k.startswith("v2")])
def test_dropped_prefix_fails(mutation_ckpts, tmp_path, key):
    ckpt = mutation_ckpts[key]
    art = _export(ckpt, tmp_path / "a", CASES[key])
    _dropped_prefix(art)
    assert not _verify(art, ckpt)["passed"]


def test_tampered_prefix_is_refused_before_parity(mutation_ckpts, tmp_path):
    """The same edit without a matching manifest: verify refuses the artifact (one line naming embcc.json)."""
    ckpt = mutation_ckpts["v3"]
    art = _export(ckpt, tmp_path / "a", CASES["v3"])
    _dropped_prefix(art, reseal=False)
    with pytest.raises(EmbccError, match=r"embcc\.json .*does not match its sha256 in manifest\.json"):
        _verify(art, ckpt)


def test_keep_with_scaled_adapters_fails(mutation_ckpts, tmp_path, monkeypatch):
    ckpt = mutation_ckpts["v3"]
    bundle = _scaled_adapters(monkeypatch, ckpt)
    art = export(ckpt, tmp_path / "k", lora="keep", max_length=MAX_LEN, bundle=bundle)
    report = _verify(art, ckpt)
    assert not report["passed"]
    assert {r["task"] for r in report["results"] if not r["passed"]} >= {"retrieval.query", "text-matching"}
