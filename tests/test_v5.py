"""jina-embeddings-v5-text small (Qwen3) and nano (EuroBERT): loading, roles, pooling, adapters, theta, ONNX.

Independent checks: a float64 re-implementation written from the published key layout
(`reference_impls.v5_reference`), and transformers' own Qwen3Model / EuroBertModel loaded with
`from_pretrained` from the checkpoint directory with PEFT's own `PeftModel.from_pretrained` for the adapter.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch
from reference_impls import v5_reference
from safetensors.torch import load_file, save_file
from test_bad_input import assert_one_line_error, nothing_left, run
from tokenizers import Tokenizer

from embcc.core.adapted import adapt
from embcc.core.errors import EmbccError
from embcc.core.spec import ModelSpec
from embcc.export.graph import build_graph, pool
from embcc.export.torch_embedder import TorchEmbedder
from embcc.families import load
from embcc.families.jina_v5 import NANO, SMALL, variant_of
from embcc.pipeline import export
from embcc.probes import PROBES
from embcc.runtimes import open_artifact
from embcc.runtimes.base import pool_numpy
from embcc.verify import verify

SIZES = ("small", "nano")
TASKS = ["retrieval", "text-matching", "classification", "clustering"]
LONG = " ".join(PROBES[i] for i in np.argsort([-len(t) for t in PROBES])[:1])  # the >8,192-token probe
TEXTS = ["hello world", "Grüße aus München", "東京は日本の首都です。", "a", "double  space",
         " ".join(["word"] * 200), "What is the capital of France? " * 20]
PROBE_SUBSET = TEXTS + [LONG]  # the long one is truncated at 4,096 tokens: RoPE far past the traced length


@pytest.fixture()
def out(tmp_path):
    return tmp_path / "out"


def cos_min(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


# ---- the published layout -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_fixture_is_in_the_published_layout(v5_ckpts, size):
    d = v5_ckpts[size]
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["model_type"] == "jina_embeddings_v5" and cfg["architectures"] == ["JinaEmbeddingsV5Model"]
    assert cfg["task_names"] == TASKS and cfg["rope_theta"] == (3_500_000.0 if size == "small" else 1_000_000.0)
    st = json.loads((d / "config_sentence_transformers.json").read_text())
    assert st["prompts"] == {"query": "Query: ", "document": "Document: "} and st["default_prompt_name"] == "document"
    weights = load_file(str(d / "model.safetensors"))
    assert "layers.0.self_attn.q_proj.weight" in weights and "embed_tokens.weight" in weights
    assert all(v.dtype == torch.bfloat16 for v in weights.values())
    assert ("layers.0.self_attn.q_norm.weight" in weights) == (size == "small")
    for task in TASKS:
        a = d / "adapters" / task
        acfg = json.loads((a / "adapter_config.json").read_text())
        assert acfg["peft_type"] == "LORA" and acfg["r"] == 32 and acfg["lora_alpha"] == 32
        assert set(acfg["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
        ad = load_file(str(a / "adapter_model.safetensors"))
        assert ad["base_model.model.layers.1.self_attn.q_proj.lora_A.weight"].shape == (32, 256)
        assert ad["base_model.model.layers.1.mlp.down_proj.lora_B.weight"].shape == (256, 32)
        assert len(ad) == 2 * 7 * 2 and all(v.abs().sum() > 0 for v in ad.values())
    assert not (v5_ckpts[f"{size}-premerged"] / "adapters").exists()


def test_tokenizers_append_the_pooled_eos(v5_ckpts):
    small = Tokenizer.from_file(str(v5_ckpts["small"] / "tokenizer.json"))
    ids = small.encode("Query: hello world 12345").ids
    assert ids[-1] == small.token_to_id("<|endoftext|>") and small.token_to_id("<|begin_of_text|>") is None
    assert [w for w, _ in small.pre_tokenizer.pre_tokenize_str("12345")] == list("12345")  # Qwen2: digit by digit
    nano = Tokenizer.from_file(str(v5_ckpts["nano"] / "tokenizer.json"))
    ids = nano.encode("Document: hello 12345").ids
    assert ids[0] == nano.token_to_id("<|begin_of_text|>") and ids[-1] == nano.token_to_id("<|end_of_text|>")
    assert [w for w, _ in nano.pre_tokenizer.pre_tokenize_str("12345")] == ["123", "45"]  # Llama-3: runs of 3
    assert small.normalizer is not None and nano.normalizer is None  # NFC for Qwen2 only
    assert small.decode(small.encode("Grüße  aus München").ids, skip_special_tokens=True) == "Grüße  aus München"


def test_variant_from_config_keys_and_weights(v5_ckpts, tmp_path):
    for size, variant in (("small", SMALL), ("nano", NANO)):
        cfg = json.loads((v5_ckpts[size] / "config.json").read_text())
        assert variant_of(cfg, v5_ckpts[size]) is variant
        bare = {k: v for k, v in cfg.items() if k not in SMALL.markers + NANO.markers and k != "auto_map"}
        assert variant_of(bare, v5_ckpts[size]) is variant  # then by the tensors (q_norm only in Qwen3)


# ---- loading ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_load_base_and_premerged(v5_ckpts, size):
    b = load(v5_ckpts[size])
    s = b.spec
    assert s.family == f"jina-v5-{size}" and s.pooling == "last" and s.dim == 256 and s.position == "rope"
    assert [(t.name, t.id) for t in s.tasks] == list(zip(TASKS, range(4)))
    assert s.rope_theta == (3_500_000.0 if size == "small" else 1_000_000.0) and s.role == "document"
    assert s.matryoshka_dims == [32, 64, 128, 256] and s.max_length == 32768
    assert b.layout == "base" and b.lora.task_names == TASKS and b.lora.rank() == 32
    assert len(b.lora.modules) == 7 * 2
    pm = load(v5_ckpts[f"{size}-premerged"])
    assert pm.layout == "premerged" and pm.lora is None and pm.spec.task == "retrieval"
    # the pre-merged retrieval checkpoint is the base with the retrieval adapter folded in (bfloat16-rounded)
    base = TorchEmbedder(b).encode(TEXTS, task="retrieval", role="query")
    merged = TorchEmbedder(pm).encode(TEXTS, task="retrieval", role="query")
    other = TorchEmbedder(b).encode(TEXTS, task="clustering")
    assert cos_min(base, merged) > 0.995 and cos_min(base, other) < 0.99


def test_premerged_saved_as_plain_backbone_is_recognised(v5_ckpts, tmp_path):
    """A pre-merged repo whose config.json is the plain Qwen3 one (no task_names): v5 by its prompts."""
    d = shutil.copytree(v5_ckpts["small-premerged"], tmp_path / "ck")
    cfg = json.loads((d / "config.json").read_text())
    for k in ("auto_map", "task_names"):
        cfg.pop(k)
    cfg.update(model_type="qwen3", architectures=["Qwen3Model"])
    (d / "config.json").write_text(json.dumps(cfg))
    b = load(d)
    assert b.spec.family == "jina-v5-small" and b.layout == "premerged" and b.spec.task == "retrieval"
    assert [t.name for t in b.spec.tasks] == TASKS
    np.testing.assert_array_equal(TorchEmbedder(b).encode(TEXTS), TorchEmbedder(load(v5_ckpts["small-premerged"])).encode(TEXTS))
    (d / "config_sentence_transformers.json").unlink()
    with pytest.raises(EmbccError, match="not a model embcc knows"):
        load(d)


def test_model_prefix_and_lm_head_are_accepted(v5_ckpts, tmp_path):
    d = shutil.copytree(v5_ckpts["small"], tmp_path / "ck")
    w = load_file(str(d / "model.safetensors"))
    w = {f"model.{k}": v for k, v in w.items()}
    w["lm_head.weight"] = w["model.embed_tokens.weight"].clone()
    save_file(w, str(d / "model.safetensors"))
    a = TorchEmbedder(load(v5_ckpts["small"])).encode(TEXTS, task="clustering")
    b = TorchEmbedder(load(d)).encode(TEXTS, task="clustering")
    np.testing.assert_array_equal(a, b)


# ---- prefixes, roles -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_prefixes_by_role(v5_ckpts, size):
    e = TorchEmbedder(load(v5_ckpts[size]))
    tok = Tokenizer.from_file(str(v5_ckpts[size] / "tokenizer.json"))
    assert e.token_ids(["hi"], task="retrieval", role="query")[0] == tok.encode("Query: hi").ids
    assert e.token_ids(["hi"], task="retrieval")[0] == tok.encode("Document: hi").ids  # default: document
    for task in TASKS[1:]:
        assert e.token_ids(["hi"], task=task)[0] == tok.encode("Document: hi").ids
        with pytest.raises(EmbccError, match="has no 'query' role"):
            e.encode(["hi"], task=task, role="query")
    q = e.encode(TEXTS, task="retrieval", role="query")
    d = e.encode(TEXTS, task="retrieval", role="document")
    assert cos_min(q, d) < 0.99  # the prefix matters
    # Matryoshka: truncate the pooled vector, then re-normalise; 32 is the smallest
    small = e.encode(TEXTS, task="retrieval", role="query", dim=32)
    want = q[:, :32] / np.linalg.norm(q[:, :32], axis=1, keepdims=True)
    np.testing.assert_allclose(small, want, atol=1e-6)
    with pytest.raises(EmbccError, match="Matryoshka"):
        e.encode(TEXTS, task="retrieval", dim=16)


def test_v3_has_no_roles(ckpts):
    e = TorchEmbedder(load(ckpts["v3"]))
    with pytest.raises(EmbccError, match="no roles"):
        e.encode(["hi"], task="retrieval.query", role="query")
    assert load(ckpts["v3"]).spec.role is None


def test_role_recorded_in_artifact_and_used_by_default(v5_ckpts, tmp_path):
    out = export(v5_ckpts["nano"], tmp_path / "q", task="retrieval", role="query", max_length=512)
    spec = ModelSpec.read(out / "retrieval")
    assert spec.role == "query" and spec.task == "retrieval" and spec.lora == "merge"
    art = open_artifact(out / "retrieval")
    ref = TorchEmbedder(load(v5_ckpts["nano"]))
    np.testing.assert_allclose(art.encode(TEXTS[:4]), ref.encode(TEXTS[:4], task="retrieval", role="query"), atol=1e-5)
    assert verify(out, v5_ckpts["nano"], texts=TEXTS[:4])["passed"]


# ---- pooling ---------------------------------------------------------------------------------------------


def test_last_token_pooling_both_padding_sides():
    g = torch.Generator().manual_seed(0)
    states = torch.randn(3, 6, 4, generator=g)
    right = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]])
    left = torch.tensor([[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1]])
    want_right = torch.stack([states[0, 2], states[1, 5], states[2, 0]])
    want_left = torch.stack([states[0, 5], states[1, 5], states[2, 5]])
    assert torch.equal(pool(states, right, "last"), want_right) and torch.equal(pool(states, left, "last"), want_left)
    np.testing.assert_array_equal(pool_numpy(states.numpy(), right.numpy(), "last"), want_right.numpy())
    np.testing.assert_array_equal(pool_numpy(states.numpy(), left.numpy(), "last"), want_left.numpy())


def _padded(rows: list[list[int]], side: str) -> tuple[np.ndarray, np.ndarray]:
    width = max(map(len, rows))
    ids, mask = np.zeros((len(rows), width), np.int64), np.zeros((len(rows), width), np.int64)
    for i, r in enumerate(rows):
        sl = slice(0, len(r)) if side == "right" else slice(width - len(r), width)
        ids[i, sl], mask[i, sl] = r, 1
    return ids, mask


@pytest.mark.parametrize("size", SIZES)
def test_left_and_right_padding_agree_in_torch_and_onnx(v5_ckpts, v5_onnx, size):
    b = load(v5_ckpts[size])
    rows = TorchEmbedder(b).token_ids(TEXTS, task="retrieval")
    graph = build_graph(adapt(b, task="retrieval", lora="merge"))
    sess = ort.InferenceSession(str(v5_onnx[f"{size}-keep"] / "model.onnx"))
    out = {}
    for side in ("right", "left"):
        ids, mask = _padded(rows, side)
        with torch.inference_mode():
            out[("torch", side)] = graph(torch.from_numpy(ids), torch.from_numpy(mask))[1].numpy()
        out[("onnx", side)] = sess.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask,
                                                                 "task_id": np.array(0, np.int64)})[0]
    single = np.concatenate([graph(torch.tensor([r]), torch.ones(1, len(r), dtype=torch.long))[1].detach().numpy()
                             for r in rows])
    for v in out.values():
        assert np.isfinite(v).all() and np.abs(v - single).max() < 1e-5


# ---- independent references --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_matches_float64_reference_per_task_role_and_theta(v5_ckpts, size):
    ck = v5_ckpts[size]
    e = TorchEmbedder(load(ck))
    for task in TASKS:
        for role in (("query", "document") if task == "retrieval" else ("document",)):
            ref = v5_reference(ck, TEXTS, task=task, role=role)
            got = e.encode(TEXTS, task=task, role=role)
            assert cos_min(ref, got) >= 0.99999 and np.abs(ref - got).max() <= 1e-5, (task, role)
    # --rope-theta: the vectors move, and match the reference at the new theta
    at = TorchEmbedder(load(ck), rope_theta=10_000.0).encode(TEXTS, task="retrieval")
    assert cos_min(at, e.encode(TEXTS, task="retrieval")) < 0.99
    ref = v5_reference(ck, TEXTS, task="retrieval", theta=10_000.0)
    assert cos_min(ref, at) >= 0.99999 and np.abs(ref - at).max() <= 1e-5
    # the pre-merged checkpoint: the base weights, no adapter
    pm = v5_ckpts[f"{size}-premerged"]
    ref = v5_reference(pm, TEXTS, task=None, role="query")
    got = TorchEmbedder(load(pm)).encode(TEXTS, role="query")
    assert cos_min(ref, got) >= 0.99999


@pytest.mark.filterwarnings("ignore::FutureWarning")  # PEFT calls a transformers method transformers deprecates
@pytest.mark.parametrize("size", SIZES)
def test_matches_transformers_from_pretrained_with_peft(v5_ckpts, size):
    from peft import PeftModel
    from transformers import EuroBertConfig, EuroBertModel, Qwen3Config, Qwen3Model

    ck = v5_ckpts[size]
    raw = json.loads((ck / "config.json").read_text())
    native = {k: v for k, v in raw.items() if k not in ("auto_map", "model_type", "architectures", "task_names")}
    config_class, model_class = (Qwen3Config, Qwen3Model) if size == "small" else (EuroBertConfig, EuroBertModel)
    model = model_class.from_pretrained(str(ck), config=config_class(**native), dtype=torch.float32,
                                        attn_implementation="eager")
    model = PeftModel.from_pretrained(model, str(ck / "adapters" / "text-matching")).eval()
    tok = Tokenizer.from_file(str(ck / "tokenizer.json"))
    want = []
    for text in TEXTS:
        ids = torch.tensor([tok.encode("Document: " + text).ids])
        with torch.inference_mode():
            states = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        want.append(torch.nn.functional.normalize(states[0, -1], dim=-1).numpy())
    got = TorchEmbedder(load(ck)).encode(TEXTS, task="text-matching")
    assert cos_min(np.stack(want), got) >= 0.99999 and np.abs(np.stack(want) - got).max() <= 1e-5


# ---- ONNX ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_onnx_keep_equals_merge_per_task(v5_onnx, size):
    keep = open_artifact(v5_onnx[f"{size}-keep"])
    assert [i.name for i in keep.session.get_inputs()] == ["input_ids", "attention_mask", "task_id"]
    for task in TASKS:
        merged = open_artifact(v5_onnx[f"{size}-merge"] / task)
        assert merged.spec.task == task and merged.spec.role == "document"
        assert cos_min(merged.encode(TEXTS, task=task), keep.encode(TEXTS, task=task)) >= 0.99999, task
    roles = keep.encode(TEXTS, task="retrieval", role="query")
    assert cos_min(roles, keep.encode(TEXTS, task="retrieval")) < 0.99


@pytest.mark.parametrize("size", SIZES)
def test_onnx_parity_fp32_every_task_with_long_inputs(v5_ckpts, v5_onnx, size):
    art = open_artifact(v5_onnx[f"{size}-keep"])
    assert len(art.token_ids([LONG], task="retrieval")[0]) == 4096  # truncated at the cap: positions up to 4,095
    for mode in ("keep", "merge"):
        report = verify(v5_onnx[f"{size}-{mode}"], v5_ckpts[size], texts=PROBE_SUBSET, write=False)
        assert report["passed"] and {r["task"] for r in report["results"]} == set(TASKS)
        for r in report["results"]:
            assert r["min_cosine"] >= 0.9999 and r["max_abs_diff"] <= 1e-4


def test_onnx_premerged_task_and_theta_recorded(v5_ckpts, tmp_path):
    pm = v5_ckpts["small-premerged"]
    out = export(pm, tmp_path / "pm", task="text-matching", rope_theta=1_000_000.0, max_length=512)
    spec = ModelSpec.read(out)
    assert spec.task == "text-matching" and spec.lora is None and spec.rope_theta == 1_000_000.0
    art = open_artifact(out)
    with pytest.raises(EmbccError, match="text-matching"):
        art.encode(["hi"], task="retrieval")
    report = verify(out, pm, texts=TEXTS)
    assert report["passed"] and {r["task"] for r in report["results"]} == {"text-matching"}
    assert sorted(r["graph"] for r in report["results"]) == ["model.onnx", "model.portable.onnx"]
    default = ModelSpec.read(export(pm, tmp_path / "pm2", max_length=512))
    assert default.task == "retrieval" and default.rope_theta == 3_500_000.0


# ---- bad input -------------------------------------------------------------------------------------------


def test_adapter_folder_missing_a_file(capsys, v5_ckpts, tmp_path, out):
    d = shutil.copytree(v5_ckpts["small"], tmp_path / "ck")
    (d / "adapters" / "clustering" / "adapter_model.safetensors").unlink()
    assert_one_line_error(*run(capsys, "export", str(d), "--out", str(out)), "clustering", "adapter_model.safetensors")
    nothing_left(out)
    shutil.rmtree(d / "adapters" / "classification")
    assert_one_line_error(*run(capsys, "export", str(d), "--out", str(out)), "classification")
    nothing_left(out)


def test_adapter_for_another_base(capsys, v5_ckpts, tmp_path, out):
    d = shutil.copytree(v5_ckpts["small"], tmp_path / "ck")
    shutil.rmtree(d / "adapters")
    shutil.copytree(v5_ckpts["nano"] / "adapters", d / "adapters")  # nano's k/v projections are wider
    assert_one_line_error(*run(capsys, "export", str(d), "--out", str(out)), "different base model")
    nothing_left(out)


def test_unknown_task_and_missing_role(capsys, v5_ckpts, out):
    ck = str(v5_ckpts["nano"])
    assert_one_line_error(*run(capsys, "export", ck, "--out", str(out), "--task", "search"), "unknown task 'search'")
    nothing_left(out)
    assert_one_line_error(*run(capsys, "export", ck, "--out", str(out), "--task", "text-matching", "--role", "query"),
                          "has no 'query' role")
    nothing_left(out)
    assert_one_line_error(*run(capsys, "export", ck, "--out", str(out), "--role", "passage", "--task", "retrieval"),
                          "'passage'")
    nothing_left(out)
    assert_one_line_error(*run(capsys, "export", ck, "--out", str(out), "--role", "query", "--lora", "keep"),
                          "keeps every task", "'query'")
    nothing_left(out)
    pm = str(v5_ckpts["nano-premerged"])
    assert_one_line_error(*run(capsys, "export", pm, "--out", str(out), "--task", "all"), "one task merged in")
    nothing_left(out)


def test_cli_fixture_layouts(capsys, tmp_path):
    from embcc.cli import main

    assert main(["fixture", "jina-v5-nano", str(tmp_path / "n"), "--layout", "premerged"]) == 0
    assert not (tmp_path / "n" / "adapters").exists() and load(tmp_path / "n").layout == "premerged"
    assert_one_line_error(*run(capsys, "fixture", "jina-v5-small", str(tmp_path / "x"), "--layout", "hf"), "layout")


def test_verify_caps_an_uncapped_export_at_8192(v5_ckpts, tmp_path, monkeypatch):
    monkeypatch.setattr("embcc.verify.available_bytes", lambda: 64 * 2**30)  # the fixed cap, not this host's memory
    out = export(v5_ckpts["nano"], tmp_path / "full", task="clustering")
    assert ModelSpec.read(out / "clustering").max_length == 32768
    report = verify(out, v5_ckpts["nano"], texts=[LONG, "short"], write=False)
    assert report["passed"]
    tokens = {r["graph"]: r["max_tokens"] for r in report["results"]}
    # the standard-ops graph materialises heads x L^2 scores: capped at 8,192; the fused one runs the whole context
    assert tokens["model.portable.onnx"] == 8192 and tokens["model.onnx"] > 8192


def test_verify_caps_untiled_graphs_at_what_memory_allows(v5_ckpts, tmp_path, monkeypatch):
    """A standard-ops graph's probes stop where its heads x L^2 scores would not fit (full-size v5-nano's portable
    graph once ran a 24 GB machine out of memory at 8,192 tokens); the fused graph still runs the whole context."""
    import embcc.verify as v

    heads = json.loads((v5_ckpts["nano"] / "config.json").read_text())["num_attention_heads"]
    assert v.attention_heads(tmp_path, v5_ckpts["nano"]) == heads
    # room for SCORE_COPIES score tensors of 2,047 tokens: the cap rounds down to 1,536
    room = v.SCORE_COPIES * heads * 4 * 2047**2 / v.MEMORY_SHARE
    assert v.untiled_tokens(8192, heads, int(room)) == 1536
    assert v.untiled_tokens(8192, heads, None) == 8192 and v.untiled_tokens(8192, heads, 10) == 512
    out = export(v5_ckpts["nano"], tmp_path / "full", task="clustering")
    monkeypatch.setattr(v, "available_bytes", lambda: int(room))
    report = verify(out, v5_ckpts["nano"], texts=[LONG, "short"], write=False)
    tokens = {r["graph"]: r["max_tokens"] for r in report["results"]}
    assert report["passed"] and tokens == {"model.portable.onnx": 1536, "model.onnx": 32768}
