"""jina-embeddings-v5 small (llama.cpp `qwen3`) and nano (`eurobert`) as GGUF, proven in llama.cpp itself:
parity bars per type, pre-merged checkpoints, kept adapters, roles, tokenisation, metadata, RoPE theta."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import gguf
import numpy as np
import pytest

from embcc.export.torch_embedder import TorchEmbedder
from embcc.families import load
from embcc.pipeline import export
from embcc.probes import PROBES
from embcc.runtimes import open_artifact
from embcc.verify import BARS, compare, verify

LONG = 4096  # long enough that RoPE's base visibly matters (the probe set has a text of more than 8,192 tokens)
SHORT = 512  # for the tests that do not need long inputs
SIZES = ("small", "nano")


@pytest.fixture(scope="session")
def v5_gguf(v5_ckpts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """Memoised exports: v5_gguf(ckpt key, type, lora=None, task=None, max_length, role, theta) -> artifact dir."""
    root = tmp_path_factory.mktemp("v5-gguf")
    cache: dict[tuple, Path] = {}

    def get(key: str, gguf_type: str, lora: str | None = None, task: str | None = None, max_length: int = SHORT,
            role: str | None = None, rope_theta: float | None = None) -> Path:
        k = (key, gguf_type, lora, task, max_length, role, rope_theta)
        if k not in cache:
            name = "-".join(str(x) for x in k if x is not None).replace(".", "_")
            cache[k] = export(v5_ckpts[key], root / name, fmt="gguf", gguf_type=gguf_type, lora=lora, task=task,
                              max_length=max_length, role=role, rope_theta=rope_theta)
        return cache[k]

    return get


@pytest.fixture(scope="session")
def v5_bundles(v5_ckpts: dict[str, Path]):
    cache: dict[str, object] = {}

    def get(key: str):
        if key not in cache:
            cache[key] = load(v5_ckpts[key])
        return cache[key]

    return get


def _fields(path: Path) -> dict:
    reader = gguf.GGUFReader(str(path))
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


# ---- the bars of SPEC section 4 on the whole probe set ----------------------------------------------------------


@pytest.mark.parametrize("gguf_type", ["f32", "f16", "q8_0"])
@pytest.mark.parametrize("size", SIZES)
def test_merged_retrieval_passes_the_bar_in_llamacpp(v5_gguf, v5_bundles, size, gguf_type):
    """Merged per task as Jina ships its v5 GGUFs; f32 at 4,096 tokens so long inputs are covered."""
    art = v5_gguf(size, gguf_type, task="retrieval", max_length=LONG if gguf_type == "f32" else SHORT)
    report = verify(art, v5_bundles(size), write=False)
    (row,) = report["results"]
    assert row["task"] == "retrieval" and row["bar"] == BARS[gguf_type] and row["bar"], row
    assert row["passed"], row
    assert row["min_cosine"] < 1.0 or gguf_type == "f32"  # reduced types really are reduced


@pytest.mark.parametrize("size", SIZES)
def test_premerged_checkpoint_passes_the_f32_bar(v5_gguf, v5_bundles, size):
    key = f"{size}-premerged"
    art = v5_gguf(key, "f32")
    report = verify(art, v5_bundles(key), write=False)
    assert [r["task"] for r in report["results"]] == ["retrieval"] and report["passed"], report["results"]


@pytest.mark.parametrize("size", SIZES)
def test_kept_adapters_pass_every_task_and_equal_merge(v5_gguf, v5_bundles, size):
    """keep: base model.gguf plus one llama.cpp adapter per task (Linear adapters only, so none is folded)."""
    keep = v5_gguf(size, "f32", lora="keep")
    report = verify(keep, v5_bundles(size), texts=PROBES[:40], write=False)
    assert {r["task"] for r in report["results"]} == set(v5_bundles(size).lora.task_names) and report["passed"]
    lora = _fields(keep / "lora-text-matching.gguf")
    assert lora["general.type"] == "adapter" and lora["adapter.lora.prompt_prefix"] == "Document: "
    kept = open_artifact(keep)
    for task in v5_bundles(size).lora.task_names:  # keep == merge in llama.cpp, every task
        merged = open_artifact(v5_gguf(size, "f32", lora="merge", task=task) / task)
        k = kept.encode(PROBES[:24], task=task)
        assert compare(merged.encode(PROBES[:24], task=task), k, BARS["lora_keep_vs_merge"])["passed"], task


# ---- roles: the artifact records one, llama.cpp gets the same prefix as torch ---------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_role_prefix_reaches_llamacpp(v5_gguf, v5_bundles, size):
    art = v5_gguf(size, "f32", task="retrieval", role="query") / "retrieval"
    emb = open_artifact(art)
    assert emb.spec.role == "query"
    texts = PROBES[:24]
    ref = TorchEmbedder(v5_bundles(size), max_length=SHORT)
    query = emb.encode(texts, task="retrieval")  # the recorded role by default
    assert compare(ref.encode(texts, task="retrieval", role="query"), query, BARS["f32"])["passed"]
    doc = emb.encode(texts, task="retrieval", role="document")
    assert compare(ref.encode(texts, task="retrieval", role="document"), doc, BARS["f32"])["passed"]
    assert not compare(query, doc, BARS["f16"])["passed"]  # the prefix really changes the vectors
    hf = emb.tokenizer.encode("Query: hello").ids
    assert emb.token_ids(["hello"], task="retrieval")[0] == hf


# ---- tokenisation: llama.cpp's own tokenizer from the GGUF against the HF tokenizer --------------------------


@pytest.mark.parametrize("size", SIZES)
def test_llamacpp_tokenises_like_hf_on_every_probe(v5_gguf, size):
    from tokenizers import Tokenizer

    art = v5_gguf(size, "f32", task="retrieval") / "retrieval"
    emb = open_artifact(art)
    hf = Tokenizer.from_file(str(art / "tokenizer.json"))
    hf.enable_truncation(SHORT)
    texts = PROBES + ["", " ", "  x", "x  ", "a\n\nb", "\tx\n", "don't DON'T", "İstanbul", "ＡＢＣ １２３", "e\u0301"]
    assert any(ord(c) > 0x3000 for t in PROBES for c in t) and any("  " in t for t in PROBES)
    mismatched = [t for t in texts if emb.llama_tokens(t) != hf.encode(t).ids]
    assert not mismatched, mismatched[:5]
    # and with nothing embcc adds: llama.cpp's tokenize with its own BOS/EOS flags gives the HF ids, except where
    # the HF normalizer (Qwen2's NFC) changes the text: llama.cpp's BPE normalises nothing, the Embedder does it
    raw = [t for t in texts if len(hf.encode(t, add_special_tokens=False).ids) < SHORT - 2
           and emb.llm.tokenize(t.encode(), add_bos=True, special=False) != hf.encode(t).ids]
    assert all(unicodedata.normalize("NFC", t) != t for t in raw), raw[:5]
    assert ("e\u0301" in raw) == (size == "small")  # small's tokenizer runs NFC, nano's none


# ---- metadata written explicitly -------------------------------------------------------------------------------


def test_metadata_is_explicit(v5_gguf, v5_bundles):
    small = _fields(v5_gguf("small", "f32", task="retrieval") / "retrieval" / "model.gguf")
    cfg = v5_bundles("small").config
    assert small["general.architecture"] == "qwen3" and small["tokenizer.ggml.pre"] == "qwen2"
    assert small["qwen3.pooling_type"] == 3 and small["qwen3.attention.causal"] is True
    assert small["qwen3.rope.freq_base"] == 3_500_000.0 and small["qwen3.context_length"] == SHORT
    assert (small["qwen3.block_count"], small["qwen3.embedding_length"], small["qwen3.feed_forward_length"]) == (
        cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"])
    assert (small["qwen3.attention.head_count"], small["qwen3.attention.head_count_kv"]) == (
        cfg["num_attention_heads"], cfg["num_key_value_heads"])
    assert small["qwen3.attention.key_length"] == small["qwen3.attention.value_length"] == cfg["head_dim"]
    assert small["qwen3.attention.layer_norm_rms_epsilon"] == pytest.approx(cfg["rms_norm_eps"])
    eos = v5_bundles("small").config["eos_token_id"]
    assert small["tokenizer.ggml.model"] == "gpt2" and small["tokenizer.ggml.merges"]
    assert small["tokenizer.ggml.eos_token_id"] == eos and small["tokenizer.ggml.tokens"][eos] == "<|endoftext|>"
    assert small["tokenizer.ggml.add_eos_token"] is True and small["tokenizer.ggml.add_bos_token"] is False
    # llama.cpp needs one token per embedding row: the unused rows are padding tokens, as its converter writes
    assert len(small["tokenizer.ggml.tokens"]) == cfg["vocab_size"]
    names = {t.name for t in gguf.GGUFReader(str(v5_gguf("small", "f32", task="retrieval") / "retrieval" / "model.gguf")).tensors}
    assert "output.weight" not in names and "blk.0.attn_q_norm.weight" in names  # tied embeddings

    nano = _fields(v5_gguf("nano", "f32", task="retrieval") / "retrieval" / "model.gguf")
    ncfg = v5_bundles("nano").config
    assert nano["general.architecture"] == "eurobert" and nano["tokenizer.ggml.pre"] == "jina-v5-nano"
    assert nano["eurobert.pooling_type"] == 3 and nano["eurobert.attention.causal"] is False
    assert nano["eurobert.rope.freq_base"] == 1_000_000.0
    assert nano["tokenizer.ggml.add_bos_token"] is True and nano["tokenizer.ggml.add_eos_token"] is True
    assert (nano["tokenizer.ggml.bos_token_id"], nano["tokenizer.ggml.eos_token_id"]) == (ncfg["bos_token_id"], ncfg["eos_token_id"])
    assert nano["eurobert.attention.layer_norm_rms_epsilon"] == pytest.approx(ncfg["rms_norm_eps"])


# ---- RoPE theta lands in rope.freq_base and llama.cpp uses it ------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_rope_theta_changes_llamacpp_vectors_and_each_matches_torch(v5_gguf, v5_bundles, size):
    texts = [t for t in PROBES if len(t) > 40][:24]
    got, ref = {}, {}
    for theta in (None, 10000.0):
        art = v5_gguf(size, "f32", task="clustering", rope_theta=theta) / "clustering"
        assert _fields(art / "model.gguf")[f"{'qwen3' if size == 'small' else 'eurobert'}.rope.freq_base"] == (
            theta or v5_bundles(size).spec.rope_theta)
        got[theta] = open_artifact(art).encode(texts, task="clustering")
        ref[theta] = TorchEmbedder(v5_bundles(size), rope_theta=theta, max_length=SHORT).encode(texts, task="clustering")
    fp32 = BARS["f32"]
    assert compare(ref[None], got[None], fp32)["passed"]
    assert compare(ref[10000.0], got[10000.0], fp32)["passed"]
    assert not compare(got[None], got[10000.0], fp32)["passed"]  # the two exports really differ
    assert not compare(ref[10000.0], got[None], fp32)["passed"]  # and a wrong theta would be caught
    assert float(np.min(np.sum(got[None] * got[10000.0], 1))) < 0.9999


# ---- bad input: one line, exit 2, nothing on disk --------------------------------------------------------------


def _refused(capsys, out: Path, *argv: str) -> str:
    from embcc.cli import main

    code = main([*argv, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("embcc: error: "), err
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.*"))
    return err


def test_bad_input_is_refused(v5_ckpts, tmp_path, capsys):
    base, pm = str(v5_ckpts["nano"]), str(v5_ckpts["small-premerged"])
    assert "no 'query' role" in _refused(capsys, tmp_path / "a", "export", base, "--format", "gguf", "--task",
                                         "classification", "--role", "query")
    assert "no task adapters" in _refused(capsys, tmp_path / "b", "export", pm, "--format", "gguf", "--lora", "keep")
    assert "q9_9" in _refused(capsys, tmp_path / "c", "export", base, "--format", "gguf", "--type", "q9_9")
    assert "unknown task" in _refused(capsys, tmp_path / "d", "export", base, "--format", "gguf", "--task", "summarize")
