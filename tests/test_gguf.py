"""GGUF artifacts proven in llama.cpp itself (llama-cpp-python): parity bars, tokenisation, RoPE theta, LoRA keep,
K-quants, metadata, bad input. Every GGUF is loaded and run by the real llama.cpp, never merely parsed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf  # a hard dependency: a missing install fails, never skips
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from embcc.core.errors import EmbccError
from embcc.export.torch_embedder import TorchEmbedder
from embcc.families import load
from embcc.fixtures import write_fixture
from embcc.fixtures.tokenizers import as_published_v3
from embcc.pipeline import export
from embcc.probes import PROBES
from embcc.runtimes import open_artifact
from embcc.verify import BARS, compare, verify

MAX_LEN = 512  # keeps the probe set's long texts (and the test time) bounded
TYPES = ("f32", "f16", "q8_0")


@pytest.fixture(scope="session")
def gguf_ckpts(ckpts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gguf-ckpt")
    out = dict(ckpts)
    # Jina's published tokenizer.json has a plain Precompiled normalizer (spaces kept), unlike transformers'
    # converter (Strip + Replace, i.e. sentencepiece's remove_extra_whitespaces): both must tokenise exactly.
    plain = shutil.copytree(ckpts["v3"], root / "v3-plain")
    as_published_v3(plain / "tokenizer.json")
    out["v3-plain"] = plain
    return out


@pytest.fixture(scope="session")
def gguf_art(gguf_ckpts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """Memoised exports: gguf_art(ckpt key, lora, type, task=None, rope_theta=None) -> artifact dir."""
    root = tmp_path_factory.mktemp("gguf-art")
    cache: dict[tuple, Path] = {}

    def get(key: str, lora: str | None, gguf_type: str, task: str | None = None, rope_theta: float | None = None) -> Path:
        k = (key, lora, gguf_type, task, rope_theta)
        if k not in cache:
            name = "-".join(str(x) for x in k if x is not None).replace(".", "_")
            cache[k] = export(gguf_ckpts[key], root / name, fmt="gguf", lora=lora, task=task, gguf_type=gguf_type,
                              rope_theta=rope_theta, max_length=MAX_LEN)
        return cache[k]

    return get


@pytest.fixture(scope="session")
def bundles(gguf_ckpts: dict[str, Path]):
    cache: dict[str, object] = {}

    def get(key: str):
        if key not in cache:
            cache[key] = load(gguf_ckpts[key])
        return cache[key]

    return get


# ---- the bars of SPEC section 4, on the whole probe set, for v2 and v3 merge and keep ------------------------


CASES = [("v2-small", None, None), ("v3", "merge", "retrieval.query"), ("v3", "keep", None)]


@pytest.mark.parametrize("gguf_type", TYPES)
@pytest.mark.parametrize(("key", "lora", "task"), CASES, ids=["v2", "v3-merge", "v3-keep"])
def test_export_loads_in_llamacpp_and_passes_the_bar(gguf_art, bundles, key, lora, task, gguf_type):
    art = gguf_art(key, lora, gguf_type, task)
    report = verify(art, bundles(key), write=False)
    assert report["results"], "verify compared nothing"
    for row in report["results"]:
        assert row["bar"] == BARS[gguf_type] and row["bar"], row
        assert row["passed"], row
    if lora == "keep":  # every task, each through its own adapter file
        assert {r["task"] for r in report["results"]} == {t.name for t in bundles(key).spec.tasks}
    assert report["passed"]


@pytest.mark.parametrize(("key", "lora"), [("v2-base", None), ("v3-hf", "keep")])
def test_other_layouts_pass_the_f32_bar(gguf_art, bundles, key, lora):
    """v2-base has 6 heads (non power-of-2 ALiBi slopes); v3-hf brings its adapters as PEFT folders."""
    report = verify(gguf_art(key, lora, "f32"), bundles(key), write=False)
    assert report["results"] and report["passed"], report["results"]


def test_keep_equals_merge_in_llamacpp_for_every_task(gguf_art, bundles):
    keep = open_artifact(gguf_art("v3", "keep", "f32"))
    texts = PROBES[:40]
    for task in [t.name for t in bundles("v3").spec.tasks]:
        merged = open_artifact(gguf_art("v3", "merge", "f32", task) / task)
        m = compare(merged.encode(texts, task=task), keep.encode(texts, task=task), BARS["lora_keep_vs_merge"])
        assert m["passed"], (task, m)


@pytest.mark.parametrize("gguf_type", ["bf16", "q4_0", "q4_1", "q5_0", "q5_1"])
def test_other_python_types_run_in_llamacpp(gguf_art, bundles, gguf_type):
    """bf16 is held to the fp16 bar; the Python-quantised 4/5-bit types run, stay finite and are reported, not
    gated (their tensors really are of that type)."""
    art = gguf_art("v3", "merge", gguf_type, "retrieval.passage")
    types = {t.tensor_type.name for t in gguf.GGUFReader(str(art / "retrieval.passage" / "model.gguf")).tensors}
    assert gguf_type.upper() in types, types
    report = verify(art, bundles("v3"), texts=PROBES[:40], write=False)
    (row,) = report["results"]
    assert row["finite"] and row["bar"] == BARS[gguf_type]
    if gguf_type == "bf16":
        assert row["result"] == "pass" and row["min_cosine"] >= 0.999, row
    else:
        assert row["result"] == "reported (not gated)" and report["gated_rows"] == 0 and 0.9 < row["min_cosine"] < 1.0


def test_keep_carries_the_token_type_adapter_as_one_extra_rank(gguf_art, bundles):
    """llama.cpp applies no adapter to token_types: its row-0 delta rides on token_embd's adapter, rank r + 1."""
    art = gguf_art("v3", "keep", "f32")
    b = bundles("v3")
    r = b.lora.rank()
    reader = gguf.GGUFReader(str(art / "lora-text-matching.gguf"))
    t = {x.name: x for x in reader.tensors}
    assert not any(n.startswith("token_types") for n in t)
    a = np.asarray(t["token_embd.weight.lora_a"].data)
    lb = np.asarray(t["token_embd.weight.lora_b"].data)
    assert a.shape == (b.spec.tasks and b.weights["embeddings.word_embeddings.weight"].shape[0], r + 1)
    assert np.all(a[:, r] == 1.0)
    alpha = float(reader.fields["adapter.lora.alpha"].parts[-1][0])
    ti = b.lora.index("text-matching")
    row0 = b.lora.modules["embeddings.token_type_embeddings"].delta(ti)[0].numpy()
    assert row0.std() > 0  # the fixture's token-type adapter is not zero, so leaving it out would show
    np.testing.assert_allclose(lb[:, r] * alpha / (r + 1), row0, rtol=1e-5, atol=1e-7)


# ---- tokenisation: llama.cpp's own tokenizer from the GGUF against the HF tokenizer --------------------------


@pytest.mark.parametrize("key", ["v2-small", "v3", "v3-plain"])
def test_llamacpp_tokenises_like_hf_on_every_probe(gguf_art, key):
    from tokenizers import Tokenizer

    art = gguf_art(key, "keep" if key.startswith("v3") else None, "f32")
    emb = open_artifact(art)
    hf = Tokenizer.from_file(str(art / "tokenizer.json"))
    hf.enable_truncation(MAX_LEN)
    texts = PROBES + ["", " ", "  x", "x  ", "a  b   c", "\tx\n", "İstanbul", "ＡＢＣ １２３"]
    assert "" in texts and any("  " in t for t in PROBES) and any(ord(c) > 0x3000 for t in PROBES for c in t)
    mismatched = [t for t in texts if emb.llama_tokens(t) != hf.encode(t).ids]
    assert not mismatched, mismatched[:5]
    # llama.cpp's own tokenize, with nothing embcc adds: equal wherever the text does not start with whitespace
    # (and everywhere when the normalizer strips, as transformers' converter writes it)
    raw_diff = []
    for t in texts:
        ids = emb.llm.tokenize(t.encode(), add_bos=True, special=False)
        if len(hf.encode(t, add_special_tokens=False).ids) < MAX_LEN - 2 and ids != hf.encode(t).ids:
            raw_diff.append(t)
    if key == "v3-plain":
        assert emb.fix_leading_space and raw_diff and all(t[:1].isspace() for t in raw_diff), raw_diff
    else:
        assert not emb.fix_leading_space and not raw_diff, raw_diff


# ---- metadata written explicitly -------------------------------------------------------------------------------


def _fields(path: Path) -> dict:
    reader = gguf.GGUFReader(str(path))
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def test_metadata_is_explicit(gguf_art):
    v2 = _fields(gguf_art("v2-small", None, "f32") / "model.gguf")
    assert v2["general.architecture"] == "jina-bert-v2" and v2["tokenizer.ggml.pre"] == "jina-v2-en"
    assert v2["jina-bert-v2.pooling_type"] == 1 and v2["jina-bert-v2.attention.causal"] is False
    assert v2["jina-bert-v2.attention.max_alibi_bias"] == 8.0
    assert v2["jina-bert-v2.context_length"] == MAX_LEN
    assert v2["jina-bert-v2.attention.layer_norm_epsilon"] == pytest.approx(1e-12)
    assert v2["tokenizer.ggml.model"] == "bert" and v2["tokenizer.ggml.normalizer.lowercase"] is True
    assert (v2["tokenizer.ggml.bos_token_id"], v2["tokenizer.ggml.seperator_token_id"], v2["tokenizer.ggml.padding_token_id"]) == (101, 102, 0)
    assert v2["tokenizer.ggml.tokens"][101] == "[CLS]" and v2["tokenizer.ggml.token_type"][101] == 3

    art = gguf_art("v3", "keep", "f32")
    v3 = _fields(art / "model.gguf")
    assert v3["general.architecture"] == "jina-bert-v3" and v3["tokenizer.ggml.model"] == "t5"
    assert v3["jina-bert-v3.rope.freq_base"] == 20000.0  # the checkpoint's inference theta, not training's 10,000
    assert v3["jina-bert-v3.pooling_type"] == 1 and v3["jina-bert-v3.attention.causal"] is False
    assert v3["jina-bert-v3.attention.layer_norm_epsilon"] == pytest.approx(1e-5)
    assert (v3["tokenizer.ggml.bos_token_id"], v3["tokenizer.ggml.eos_token_id"], v3["tokenizer.ggml.padding_token_id"]) == (0, 2, 1)
    assert v3["tokenizer.ggml.add_bos_token"] is True and v3["tokenizer.ggml.add_eos_token"] is True
    assert v3["tokenizer.ggml.remove_extra_whitespaces"] is True  # fixture: Strip + Replace(" {2,}")
    assert v3["tokenizer.ggml.add_space_prefix"] is True and len(v3["tokenizer.ggml.precompiled_charsmap"]) > 100
    plain = _fields(gguf_art("v3-plain", "keep", "f32") / "model.gguf")
    assert plain["tokenizer.ggml.remove_extra_whitespaces"] is False  # Jina's plain Precompiled keeps spaces

    lora = _fields(art / "lora-retrieval.query.gguf")
    assert lora["general.type"] == "adapter" and lora["adapter.type"] == "lora"
    assert lora["adapter.lora.task_name"] == "retrieval.query"
    assert lora["adapter.lora.prompt_prefix"] == "Represent the query for retrieving evidence documents: "
    assert lora["adapter.lora.alpha"] == 1.0


# ---- RoPE theta lands in rope.freq_base and llama.cpp uses it ------------------------------------------------


@pytest.fixture(scope="session")
def sharp_v3(ckpts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """q and k rows of every Wqkv x4 (exact in bf16): peaked attention, so the RoPE base visibly matters."""
    out = shutil.copytree(ckpts["v3"], tmp_path_factory.mktemp("sharp") / "v3-sharp")
    tensors = load_file(str(out / "model.safetensors"))
    for key, w in tensors.items():
        if key.endswith(".mixer.Wqkv.parametrizations.weight.original"):
            h = w.shape[1]
            tensors[key] = torch.cat([w[: 2 * h] * 4, w[2 * h :]]).contiguous()
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def test_rope_theta_changes_llamacpp_vectors_and_each_matches_torch(sharp_v3, tmp_path):
    bundle = load(sharp_v3)
    texts = [t for t in PROBES if len(t) > 40][:24]
    task = "text-matching"
    got, ref = {}, {}
    for theta in (None, 10000.0):
        art = export(sharp_v3, tmp_path / f"t{theta}", fmt="gguf", lora="merge", task=task, rope_theta=theta,
                     max_length=MAX_LEN)
        got[theta] = open_artifact(art / task).encode(texts, task=task)
        ref[theta] = TorchEmbedder(bundle, rope_theta=theta, max_length=MAX_LEN).encode(texts, task=task)
    fp32 = BARS["f32"]
    assert compare(ref[None], got[None], fp32)["passed"]
    assert compare(ref[10000.0], got[10000.0], fp32)["passed"]
    assert not compare(got[None], got[10000.0], fp32)["passed"]  # the two exports really differ
    assert not compare(ref[10000.0], got[None], fp32)["passed"]  # and a wrong theta would be caught


# ---- K-quants through llama.cpp's quantizer (reported, not gated) ----------------------------------------------


def test_k_quant_export_runs_and_is_reported(tmp_path):
    ckpt = write_fixture("jina-v3", tmp_path / "v3-256", size="tiny256", seed=0)
    art = export(ckpt, tmp_path / "q4km", fmt="gguf", lora="keep", task="retrieval.query", gguf_type="q4_k_m",
                 max_length=MAX_LEN)
    types = {t.tensor_type.name for t in gguf.GGUFReader(str(art / "model.gguf")).tensors}
    assert "Q4_K" in types and "F32" in types  # llama.cpp's mix: K-quant matrices, F32 norms and biases
    report = verify(art, ckpt, texts=PROBES[:32], write=False)
    (row,) = report["results"]
    assert row["bar"] == {} and row["task"] == "retrieval.query"
    assert 0.9 < row["min_cosine"] < 1.0  # a real 4-bit model: close, but not exact


def test_python_types_fall_back_like_llamacpps_converter(gguf_art):
    """q8_0 keeps norms, biases and token types F32, quantises the matrices."""
    r = gguf.GGUFReader(str(gguf_art("v2-small", None, "q8_0") / "model.gguf"))
    types = {t.name: t.tensor_type.name for t in r.tensors}
    assert types["token_embd.weight"] == "Q8_0" and types["blk.0.ffn_up.weight"] == "Q8_0"
    assert types["token_types.weight"] == "F32" and types["blk.0.attn_q.bias"] == "F32"
    assert types["blk.0.layer_output_norm.weight"] == "F32"


# ---- bad input: one line, exit 2, nothing on disk --------------------------------------------------------------


def _refused(capsys, out: Path, *argv: str) -> str:
    from embcc.cli import main

    code = main([*argv, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("embcc: error: "), err
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.*"))
    return err


def test_bad_type_and_options_are_refused(ckpts, tmp_path, capsys):
    assert "q9_9" in _refused(capsys, tmp_path / "a", "export", str(ckpts["v2-small"]), "--format", "gguf", "--type", "q9_9")
    assert "iq2_xs" in _refused(capsys, tmp_path / "b", "export", str(ckpts["v2-small"]), "--format", "gguf", "--type", "iq2_xs")
    assert "--type" in _refused(capsys, tmp_path / "c", "export", str(ckpts["v2-small"]), "--type", "q8_0")
    assert "--precision" in _refused(capsys, tmp_path / "d", "export", str(ckpts["v2-small"]), "--format", "gguf",
                                     "--precision", "int8")


def test_family_without_gguf_facts_is_refused(ckpts, tmp_path, monkeypatch):
    from embcc.families.jina_v2 import JinaV2

    monkeypatch.setattr(JinaV2, "gguf", None)
    with pytest.raises(EmbccError, match="no llama.cpp architecture"):
        export(ckpts["v2-small"], tmp_path / "o", fmt="gguf")
    assert not (tmp_path / "o").exists()


def test_unmapped_tensor_is_refused(ckpts, tmp_path):
    bundle = load(ckpts["v2-small"])
    bundle.weights["encoder.layer.0.mlp.extra.weight"] = torch.zeros(4, 4)
    with pytest.raises(EmbccError, match="extra.weight has no llama.cpp jina-bert-v2 name"):
        export(ckpts["v2-small"], tmp_path / "o", fmt="gguf", bundle=bundle)
    assert not (tmp_path / "o").exists()


def test_name_llamacpp_does_not_know_is_refused(ckpts, tmp_path, monkeypatch):
    import dataclasses

    from embcc.families.jina_v2 import GGUF, JinaV2

    bad = dataclasses.replace(GGUF, extra_tensors={"blk.{bid}.attn_bogus.weight": "encoder.layer.{bid}.attention.self.query.weight"})
    monkeypatch.setattr(JinaV2, "gguf", bad)
    with pytest.raises(EmbccError, match="attn_bogus"):
        export(ckpts["v2-small"], tmp_path / "o", fmt="gguf")
    assert not (tmp_path / "o").exists()


def test_gguf_llamacpp_refuses_to_load_is_a_failed_export(ckpts, tmp_path, monkeypatch):
    import dataclasses

    from embcc.families.jina_v2 import GGUF, JinaV2

    # without its layer-norm epsilon (a required key) llama.cpp refuses the file: no artifact may appear
    bad = dataclasses.replace(GGUF, hparams={k: v for k, v in GGUF.hparams.items() if "epsilon" not in k})
    monkeypatch.setattr(JinaV2, "gguf", bad)
    with pytest.raises(EmbccError, match="llama.cpp refuses"):
        export(ckpts["v2-small"], tmp_path / "o", fmt="gguf")
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.*"))


# ---- byte-level BPE vocabulary (what v5's qwen3 / eurobert tables will use) ------------------------------------

QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")


def test_byte_level_bpe_vocab_tokenises_like_hf_in_llamacpp(tmp_path):
    """A Qwen2-style byte-level BPE (NFC, Qwen2 split regex, EOS closing the text), named `qwen2`: llama.cpp
    loads the vocabulary alone (vocab_only) and must produce the HF tokenizer's ids on the whole probe set."""
    import llama_cpp
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    from embcc.export.gguf import write_vocab
    from embcc.export.gguf_vocab import read_vocab
    from embcc.fixtures import tokenizers as ft
    from embcc.runtimes.llamacpp import quiet

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(list(ft._ENGLISH + ft._EUROPEAN + ft._WORLD), trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="$A:0 <|endoftext|>:0",
                                                       special_tokens=[("<|endoftext|>", tok.token_to_id("<|endoftext|>"))])
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}))

    vocab = read_vocab(tmp_path, "gpt2")
    assert vocab.merges and not vocab.add_bos and vocab.add_eos and vocab.special["eos"] == tok.token_to_id("<|endoftext|>")
    w = gguf.GGUFWriter(str(tmp_path / "vocab.gguf"), "qwen3")
    w.add_type(gguf.GGUFType.MODEL)
    write_vocab(w, vocab, "qwen2")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with quiet():
        llm = llama_cpp.Llama(str(tmp_path / "vocab.gguf"), vocab_only=True, verbose=False)
    texts = PROBES + ["", " ", "  x", "a\n\nb", "don't DON'T"]
    mismatched = [t for t in texts if llm.tokenize(t.encode(), add_bos=True, special=False) != tok.encode(t).ids]
    assert not mismatched, mismatched[:5]


@pytest.mark.parametrize("key", ["v2-small", "v2-base"])
def test_v2_reference_agrees_with_llamacpps_own_jinabert(gguf_art, gguf_ckpts, key):
    """No maintained library has JinaBERT, so the v2 reference is embcc's separate float64 re-implementation; the
    one other implementation there is, llama.cpp's jina-bert-v2 (f32 GGUF), holds it to the fp32 bar."""
    from embcc.reference import reference_for

    llama = open_artifact(gguf_art(key, None, "f32"))
    with reference_for(gguf_ckpts[key]) as ref:
        assert "re-implementation" in json.dumps(ref.describe())
        m = compare(ref.encode(PROBES, max_length=MAX_LEN), llama.encode(PROBES), BARS["fp32"])
    assert m["passed"], m
