"""Tests for the small real tokenizers written into random-weight test fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sentencepiece as spm
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from embcc.fixtures.tokenizers import write_bert_wordpiece, write_xlmr_unigram

TEXTS = [
    "",
    " ",
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "  double  spaces  and trailing  ",
    " leading space",
    "Größe, Übermaß, äöü ß",
    "Café crème brûlée, naïve résumé, señor",
    "机器学习 and 日本語のテキスト 한국어",
    "emoji 👍😀🎉 test",
    "Привет мир, Καλημέρα, مرحبا, नमस्ते",
    "Numbers 3.14159 and 1,000,000! 2024-05-17",
    "def f(x): return x**2  # comment\n\tindented",
    "ＦＵＬＬ　ｗｉｄｔｈ① and\u00a0nbsp",
    "UPPER lower MiXeD",
    "a <mask> b [MASK] c",
]

WRITERS = {"bert": write_bert_wordpiece, "xlmr": write_xlmr_unigram}
SMALL = {"bert": 1024, "xlmr": 1000}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for kind, writer in WRITERS.items():
        out[kind] = tmp_path_factory.mktemp(kind)
        assert writer(out[kind], vocab_size=SMALL[kind]) == SMALL[kind]
    return out


def _load(path: Path) -> tuple[object, Tokenizer]:
    return AutoTokenizer.from_pretrained(path), Tokenizer.from_file(str(path / "tokenizer.json"))


@pytest.mark.parametrize("kind", list(WRITERS))
def test_ids_agree_between_transformers_and_tokenizers(small: dict[str, Path], kind: str) -> None:
    hf, raw = _load(small[kind])
    for text in TEXTS:
        assert hf(text)["input_ids"] == raw.encode(text).ids, text
    pair = ("first sentence", "zweiter Satz über Äpfel")
    assert hf(*pair)["input_ids"] == raw.encode(*pair).ids


@pytest.mark.parametrize("kind", list(WRITERS))
def test_vocab_size_is_exact(small: dict[str, Path], kind: str) -> None:
    hf, raw = _load(small[kind])
    assert len(hf) == raw.get_vocab_size() == SMALL[kind]
    if kind == "bert":
        assert len((small[kind] / "vocab.txt").read_text(encoding="utf-8").splitlines()) == SMALL[kind]
    else:
        proto = spm.SentencePieceProcessor(model_file=str(small[kind] / "sentencepiece.bpe.model"))
        assert proto.get_piece_size() + 2 == SMALL[kind]


def test_bert_specials_and_layout(small: dict[str, Path]) -> None:
    hf, raw = _load(small["bert"])
    expected = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
    for token, idx in expected.items():
        assert raw.token_to_id(token) == idx
    assert (hf.pad_token_id, hf.unk_token_id, hf.cls_token_id, hf.sep_token_id, hf.mask_token_id) == (
        0, 100, 101, 102, 103)
    assert all(raw.id_to_token(i).startswith("[unused") for i in range(1, 100))
    config = json.loads((small["bert"] / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "BertTokenizer" and config["do_lower_case"] is True
    assert config["model_max_length"] == 8192
    enc = raw.encode("Hello, wonderful World! Ångström café 42 mañana")
    assert enc.ids[0] == 101 and enc.ids[-1] == 102 and 100 not in enc.ids
    assert raw.decode(enc.ids) == "hello, wonderful world! angstrom cafe 42 manana"


def test_bert_cased(tmp_path: Path) -> None:
    write_bert_wordpiece(tmp_path, vocab_size=1024, lowercase=False)
    hf, raw = _load(tmp_path)
    enc = raw.encode("Hello World, Größe Ångström")
    assert "Hello" in "".join(enc.tokens) and 100 not in enc.ids
    for text in TEXTS:
        assert hf(text)["input_ids"] == raw.encode(text).ids, text


def test_xlmr_specials_and_layout(small: dict[str, Path]) -> None:
    hf, raw = _load(small["xlmr"])
    last = SMALL["xlmr"] - 1
    for token, idx in {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": last}.items():
        assert raw.token_to_id(token) == idx
    assert (hf.bos_token_id, hf.pad_token_id, hf.eos_token_id, hf.unk_token_id, hf.mask_token_id) == (
        0, 1, 2, 3, last)
    assert (hf.cls_token_id, hf.sep_token_id) == (0, 2)
    assert raw.encode("a <mask> b").ids.count(last) == 1
    config = json.loads((small["xlmr"] / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "XLMRobertaTokenizer" and config["model_max_length"] == 8194
    assert config["added_tokens_decoder"][str(last)]["lstrip"] is True


def test_xlmr_tokenizer_json_structure(small: dict[str, Path]) -> None:
    tj = json.loads((small["xlmr"] / "tokenizer.json").read_text(encoding="utf-8"))
    norm = tj["normalizer"]
    assert norm["type"] == "Sequence" and norm["normalizers"][0]["type"] == "Precompiled"
    assert len(norm["normalizers"][0]["precompiled_charsmap"]) > 100
    assert tj["pre_tokenizer"]["type"] == "Metaspace"
    assert tj["model"]["type"] == "Unigram" and tj["model"]["unk_id"] == 3
    vocab = [piece for piece, _ in tj["model"]["vocab"]]
    assert vocab[:4] == ["<s>", "<pad>", "</s>", "<unk>"] and vocab[-1] == "<mask>"
    single = tj["post_processor"]["single"]
    assert [next(iter(x.values()))["id"] for x in single] == ["<s>", "A", "</s>"]


def test_xlmr_sentencepiece_model_agrees_and_fillers_unreachable(small: dict[str, Path]) -> None:
    _, raw = _load(small["xlmr"])
    sp = spm.SentencePieceProcessor(model_file=str(small["xlmr"] / "sentencepiece.bpe.model"))
    first_filler = min(i for i in range(sp.get_piece_size()) if sp.id_to_piece(i).startswith("▁<fill"))
    for text in [t for t in TEXTS if "mask" not in t.lower()] + ["<fill1> ▁<fill2> fill3"]:
        ids = raw.encode(text).ids
        # fairseq offset: HF id = spm id + 1 for pieces; spm <unk>=0 maps to <unk>=3.
        assert ids == [0] + [i + 1 if i else 3 for i in sp.encode(text)] + [2], text
        assert all(i <= first_filler for i in ids[:-1]), text


def test_full_sizes(tmp_path: Path) -> None:
    assert write_bert_wordpiece(tmp_path / "v2", vocab_size=30528) == 30528
    assert write_xlmr_unigram(tmp_path / "v3", vocab_size=20_000) == 20_000
    for sub, size in (("v2", 30528), ("v3", 20_000)):
        hf, raw = _load(tmp_path / sub)
        assert len(hf) == raw.get_vocab_size() == size
        for text in TEXTS:
            assert hf(text)["input_ids"] == raw.encode(text).ids, text
    _, raw = _load(tmp_path / "v3")
    assert raw.token_to_id("<mask>") == 19_999


@pytest.mark.parametrize("kind", list(WRITERS))
def test_deterministic_bytes(tmp_path: Path, kind: str) -> None:
    WRITERS[kind](tmp_path / "a", vocab_size=SMALL[kind])
    WRITERS[kind](tmp_path / "b", vocab_size=SMALL[kind])
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


@pytest.mark.parametrize("kind", list(WRITERS))
def test_too_small_vocab_raises(tmp_path: Path, kind: str) -> None:
    with pytest.raises(ValueError, match="too small"):
        WRITERS[kind](tmp_path, vocab_size=200)
