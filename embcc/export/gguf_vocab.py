"""Tokenizer metadata for GGUF, read from the tokenizer.json the HF tokenizer really runs.

llama.cpp tokenises inside the GGUF from these keys, so every knob is derived from the HF pipeline itself:
- WordPiece ("bert"): vocab in llama.cpp's "phantom space" form (word starts get U+2581, `##` is dropped),
  lowercase / strip_accents from the BertNormalizer.
- Unigram ("t5"): pieces and scores, the sentencepiece charsmap from the Precompiled normalizer, and the
  whitespace handling from the normalizers that follow it: `Strip(right) + Replace(" {2,}", "▁")` (what
  transformers' converter writes) is sentencepiece's remove_extra_whitespaces; a plain Precompiled
  normalizer keeps every space. The space prefix comes from the Metaspace pre-tokenizer.
- byte-level BPE ("gpt2", for v5): tokens in byte-to-unicode form, merges; the split regex is llama.cpp's for
  the pre-tokenizer name the family declares (`qwen2`, ...), never guessed by hashing.
- Special ids (BOS/EOS/UNK/SEP/CLS/PAD/MASK) and whether BOS/EOS are added come from the tokenizer's own
  post-processor, found by encoding a text with and without special tokens.
Anything this module does not recognise is refused with one line, never guessed.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import gguf
from tokenizers import Tokenizer

from embcc.core.errors import EmbccError

NORMAL, UNKNOWN, CONTROL = gguf.TokenType.NORMAL, gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL
USER_DEFINED, UNUSED, BYTE = gguf.TokenType.USER_DEFINED, gguf.TokenType.UNUSED, gguf.TokenType.BYTE


@dataclass
class Vocab:
    model: str  # tokenizer.ggml.model
    tokens: list[str]
    types: list[int]
    scores: list[float] | None
    special: dict[str, int]  # bos, eos, unk, seperator, padding, cls, mask -> id
    add_bos: bool
    add_eos: bool
    add_sep: bool
    flags: dict[str, bool]  # add_space_prefix, remove_extra_whitespaces, normalizer.lowercase, ...
    charsmap: bytes | None = None
    merges: list[str] | None = None


def _specials(tok: Tokenizer, path: Path) -> dict[str, int]:
    """Special-token ids named in tokenizer_config.json / special_tokens_map.json, resolved in tokenizer.json."""
    names: dict[str, str] = {}
    for fname in ("special_tokens_map.json", "tokenizer_config.json"):
        f = path / fname
        if f.is_file():
            for k, v in json.loads(f.read_text()).items():
                if k.endswith("_token") and v is not None:
                    names.setdefault(k.removesuffix("_token"), v["content"] if isinstance(v, dict) else v)
    key = {"bos": "bos", "eos": "eos", "unk": "unk", "sep": "seperator", "pad": "padding", "cls": "cls",
           "mask": "mask"}
    out = {}
    for role, gguf_role in key.items():
        if role in names and (i := tok.token_to_id(names[role])) is not None:
            out[gguf_role] = i
    return out


def _added_around(tok: Tokenizer) -> tuple[list[int], list[int]]:
    """Ids the post-processor puts before and after a text."""
    plain = tok.encode("a b", add_special_tokens=False).ids
    full = tok.encode("a b", add_special_tokens=True).ids
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return full[:i], full[i + len(plain) :]
    raise EmbccError("the tokenizer's post-processor changes the text's own tokens", "use the published tokenizer.json")


def _token_types(tok: Tokenizer, n: int, unk_id: int | None) -> list[int]:
    types = [NORMAL] * n
    for i, added in tok.get_added_tokens_decoder().items():
        if i < n:
            types[i] = CONTROL if added.special else USER_DEFINED
    if unk_id is not None and unk_id < n:
        types[unk_id] = UNKNOWN
    return types


def _check_special_ids(special: dict[str, int], prefix: list[int], suffix: list[int], model: str) -> tuple[bool, bool, bool]:
    """Map the post-processor's added ids onto llama.cpp's BOS / EOS / SEP switches."""
    if len(prefix) > 1 or len(suffix) > 1:
        raise EmbccError(f"the tokenizer adds {len(prefix)} tokens before and {len(suffix)} after a text",
                         "llama.cpp adds at most one on each side; use the published tokenizer.json")
    if prefix:
        special["bos"] = prefix[0]
    if model == "bert":  # llama.cpp's WordPiece always adds BOS and SEP
        if not prefix or not suffix:
            raise EmbccError("a WordPiece tokenizer without [CLS] ... [SEP] cannot run in llama.cpp", "use the published tokenizer.json")
        special["seperator"] = suffix[0]
        return True, False, True
    if suffix:
        special["eos"] = suffix[0]
    return bool(prefix), bool(suffix), False


def _wordpiece(tj: dict, tok: Tokenizer, path: Path) -> Vocab:
    norm = tj.get("normalizer") or {}
    if norm.get("type") != "BertNormalizer":
        raise EmbccError(f"WordPiece tokenizer with normalizer {norm.get('type')!r}; llama.cpp implements BertNormalizer only",
                         "use the published tokenizer.json")
    if (tj.get("pre_tokenizer") or {}).get("type") != "BertPreTokenizer":
        raise EmbccError("WordPiece tokenizer without BertPreTokenizer", "use the published tokenizer.json")
    lowercase = bool(norm.get("lowercase", True))
    strip = norm.get("strip_accents")
    strip = lowercase if strip is None else bool(strip)
    vocab = tj["model"]["vocab"]
    n = max(vocab.values()) + 1
    by_id = [""] * n
    for t, i in vocab.items():
        by_id[i] = t
    special = _specials(tok, path)
    types = _token_types(tok, n, vocab.get(tj["model"].get("unk_token", "[UNK]")))
    # llama.cpp's WordPiece matches "\u2581word" for word starts and the bare piece for continuations
    tokens = [t if ty == CONTROL else (t[2:] if t.startswith("##") else "\u2581" + t) for t, ty in zip(by_id, types)]
    if len(set(tokens)) != len(tokens):
        raise EmbccError("the WordPiece vocabulary has pieces that collide in llama.cpp's form", "use the published vocabulary")
    prefix, suffix = _added_around(tok)
    add_bos, add_eos, add_sep = _check_special_ids(special, prefix, suffix, "bert")
    special.setdefault("cls", special["bos"])
    flags = {"normalizer.lowercase": lowercase, "normalizer.strip_accents": strip}
    return Vocab("bert", tokens, types, None, special, add_bos, add_eos, add_sep, flags)


def _unigram_whitespace(tj: dict) -> tuple[bytes | None, bool]:
    """(precompiled charsmap, remove_extra_whitespaces) from the normalizer the HF tokenizer runs."""
    norm = tj.get("normalizer") or {"type": "Sequence", "normalizers": []}
    steps = norm["normalizers"] if norm.get("type") == "Sequence" else [norm]
    charsmap = None
    if steps and steps[0].get("type") == "Precompiled":
        charsmap = base64.b64decode(steps[0]["precompiled_charsmap"]) if steps[0].get("precompiled_charsmap") else None
        steps = steps[1:]
    kinds = [s.get("type") for s in steps]
    if not steps:
        return charsmap, False  # spaces kept: every space becomes a U+2581
    if kinds == ["Strip", "Replace"]:
        strip, rep = steps
        pattern = (rep.get("pattern") or {}).get("Regex")
        if not strip.get("strip_left") and strip.get("strip_right") and pattern == " {2,}" and rep.get("content") == "\u2581":
            return charsmap, True  # sentencepiece's remove_extra_whitespaces, as transformers' converter writes it
    raise EmbccError(f"Unigram tokenizer with normalizers {kinds}; embcc cannot reproduce them in llama.cpp",
                     "use the published tokenizer.json")


def _unigram(tj: dict, tok: Tokenizer, path: Path) -> Vocab:
    model = tj["model"]
    pre = tj.get("pre_tokenizer") or {}
    if pre.get("type") != "Metaspace" or pre.get("replacement", "\u2581") != "\u2581":
        raise EmbccError(f"Unigram tokenizer with pre-tokenizer {pre.get('type')!r}; llama.cpp expects Metaspace",
                         "use the published tokenizer.json")
    scheme = pre.get("prepend_scheme") or ("always" if pre.get("add_prefix_space", True) else "never")
    charsmap, remove_extra = _unigram_whitespace(tj)
    pieces = model["vocab"]
    tokens = [p for p, _ in pieces]
    scores = [float(s) for _, s in pieces]
    unk_id = model.get("unk_id")
    types = _token_types(tok, len(tokens), unk_id)
    if model.get("byte_fallback"):
        types = [BYTE if len(t) == 6 and t.startswith("<0x") and t.endswith(">") else ty for t, ty in zip(tokens, types)]
    for i, added in tok.get_added_tokens_decoder().items():  # added tokens beyond the model's pieces (<mask>)
        if i >= len(tokens):
            tokens += [f"[PAD{j}]" for j in range(len(tokens), i + 1)]
            scores += [0.0] * (i + 1 - len(scores))
            types += [UNUSED] * (i + 1 - len(types))
            tokens[i], types[i] = added.content, CONTROL if added.special else USER_DEFINED
    special = _specials(tok, path)
    if unk_id is not None:
        special["unk"] = unk_id
    prefix, suffix = _added_around(tok)
    add_bos, add_eos, add_sep = _check_special_ids(special, prefix, suffix, "t5")
    flags = {"add_space_prefix": scheme != "never", "remove_extra_whitespaces": remove_extra}
    return Vocab("t5", tokens, types, scores, special, add_bos, add_eos, add_sep, flags, charsmap=charsmap)


def _bpe(tj: dict, tok: Tokenizer, path: Path) -> Vocab:
    """Byte-level BPE (Qwen2 / Llama-3 style): tokens in their byte-to-unicode form, merges in rank order.
    The split regex is llama.cpp's for the pre-tokenizer name the family declares."""
    model = tj["model"]
    pre, dec = tj.get("pre_tokenizer") or {}, tj.get("decoder") or {}
    kinds = [p.get("type") for p in pre.get("pretokenizers", [pre])] + [dec.get("type")]
    if "ByteLevel" not in kinds:
        raise EmbccError("BPE tokenizer without byte-level pre-tokenization; llama.cpp's gpt2 vocabulary needs it",
                         "use the published tokenizer.json")
    norm = (tj.get("normalizer") or {}).get("type")
    if norm not in (None, "NFC"):
        raise EmbccError(f"BPE tokenizer with normalizer {norm!r}; llama.cpp applies none", "use the published tokenizer.json")
    vocab = model["vocab"]
    n = max([*vocab.values(), *tok.get_added_tokens_decoder().keys()]) + 1
    tokens, types = [f"[PAD{i}]" for i in range(n)], [UNUSED] * n
    for t, i in vocab.items():
        tokens[i], types[i] = t, NORMAL
    for i, added in tok.get_added_tokens_decoder().items():
        tokens[i], types[i] = added.content, CONTROL if added.special else USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    special = _specials(tok, path)
    prefix, suffix = _added_around(tok)
    add_bos, add_eos, add_sep = _check_special_ids(special, prefix, suffix, "gpt2")
    return Vocab("gpt2", tokens, types, None, special, add_bos, add_eos, add_sep, {}, merges=merges)


def pad_vocab(vocab: Vocab, rows: int) -> Vocab:
    """Pad the token list to the embedding table's rows, as llama.cpp's converter does (Qwen3 has 151,936 rows
    for 151,669 tokens): `[PAD{i}]`, type UNUSED. llama.cpp requires n_vocab == token_embd rows."""
    n = len(vocab.tokens)
    if rows > n:
        vocab.tokens = vocab.tokens + [f"[PAD{i}]" for i in range(n, rows)]
        vocab.types = vocab.types + [UNUSED] * (rows - n)
        if vocab.scores is not None:
            vocab.scores = vocab.scores + [0.0] * (rows - n)
    return vocab


def read_vocab(path: Path, expected_model: str) -> Vocab:
    """The GGUF tokenizer metadata for the tokenizer.json in checkpoint directory `path`."""
    tj = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    kind = (tj.get("model") or {}).get("type")
    readers = {"WordPiece": ("bert", _wordpiece), "Unigram": ("t5", _unigram), "BPE": ("gpt2", _bpe)}
    if kind not in readers:
        raise EmbccError(f"tokenizer model {kind!r} has no GGUF vocabulary writer in embcc", "use the published tokenizer.json")
    model, reader = readers[kind]
    if model != expected_model:
        raise EmbccError(f"the family declares a {expected_model!r} vocabulary but tokenizer.json is {kind}",
                         "use the tokenizer published with the model")
    return reader(tj, tok, path)
