"""Byte-level BPE fixture tokenizers of the kinds jina-embeddings-v5 publishes.

* :func:`write_qwen2_bpe` -- v5-text-small (Qwen3): NFC normalizer, Qwen2's split regex, byte-level BPE,
  `<|endoftext|>` appended by a TemplateProcessing post-processor (the EOS is the pooled token).
* :func:`write_llama3_bpe` -- v5-text-nano (EuroBERT): Llama-3's split regex (digits in runs of up to three),
  byte-level BPE, `<|begin_of_text|>` + text + `<|end_of_text|>`, 256 special tokens after the BPE vocabulary.

Merges are learned from the inline corpus of :mod:`embcc.families.fixture_tokenizers` with the `tokenizers`
BpeTrainer; the BPE vocabulary is then padded with unreachable filler tokens (no merge produces them) so that
the special tokens sit at the published ids for full-size fixtures (151,643 for Qwen2, 128,000 for Llama-3).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from embcc.families.fixture_tokenizers import _ENGLISH, _EUROPEAN, _WORLD

QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|mask|>"] + [
    f"<|reserved_special_token_{i}|>" for i in range(253)
]
_CORPUS = ("Query: ", "Document: ") + _ENGLISH + _EUROPEAN + _WORLD
_MAX_MERGES = 3000


def _train(split: str, nfc: bool, bpe_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Learn byte-level BPE merges on the corpus; returns (vocab padded to `bpe_size`, merges)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = _pre_tokenizer(split)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=min(bpe_size, len(alphabet) + _MAX_MERGES), min_frequency=2,
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(list(_CORPUS), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    if len(vocab) > bpe_size:
        raise ValueError(f"BPE size {bpe_size} is below the trained vocabulary ({len(vocab)})")
    for i in range(bpe_size - len(vocab)):  # fillers: multi-character strings no merge can produce
        vocab[f"<fill{i}>"] = len(vocab)
    return vocab, merges  # type: ignore[return-value]


def _pre_tokenizer(split: str) -> Any:
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])


def _build(vocab: dict[str, int], merges: list[tuple[str, str]], split: str, nfc: bool, specials: list[str],
           single: str, pair: str, special_ids: list[tuple[str, int]]) -> Any:
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False,
                               ignore_merges=False))
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = _pre_tokenizer(split)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in specials])
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        processors.TemplateProcessing(single=single, pair=pair, special_tokens=special_ids),
    ])
    return tok


def _added(content: str) -> dict[str, Any]:
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
            "special": True}


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


def write_qwen2_bpe(out_dir: Path, *, bpe_size: int, model_max_length: int = 32768) -> int:
    """Qwen2/Qwen3 byte-level BPE (v5-text-small kind): BPE ids 0..bpe_size-1, then <|endoftext|>, <|im_start|>,
    <|im_end|>; every text is followed by <|endoftext|>. Returns the tokenizer's vocabulary size."""
    out_dir = Path(out_dir)
    vocab, merges = _train(QWEN2_SPLIT, True, bpe_size)
    eos = bpe_size
    tok = _build(vocab, merges, QWEN2_SPLIT, True, QWEN2_SPECIALS, "$A:0 <|endoftext|>:0",
                 "$A:0 <|endoftext|>:0 $B:1 <|endoftext|>:1", [("<|endoftext|>", eos)])
    assert tok.token_to_id("<|endoftext|>") == eos
    tok.save(str(out_dir / "tokenizer.json"))
    _write_json(out_dir / "tokenizer_config.json", {
        "added_tokens_decoder": {str(bpe_size + i): _added(t) for i, t in enumerate(QWEN2_SPECIALS)},
        "bos_token": None, "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": None,
        "clean_up_tokenization_spaces": False, "errors": "replace", "model_max_length": model_max_length,
        "padding_side": "right", "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer",
    })
    _write_json(out_dir / "special_tokens_map.json", {"eos_token": _added("<|endoftext|>"),
                                                      "pad_token": _added("<|endoftext|>")})
    return tok.get_vocab_size()


def write_llama3_bpe(out_dir: Path, *, bpe_size: int, model_max_length: int = 32768) -> int:
    """Llama-3 byte-level BPE (EuroBERT / v5-text-nano kind): BPE ids 0..bpe_size-1, then 256 specials starting
    with <|begin_of_text|>, <|end_of_text|>, <|mask|>; texts become BOS + text + EOS. Returns the vocab size."""
    out_dir = Path(out_dir)
    vocab, merges = _train(LLAMA3_SPLIT, False, bpe_size)
    bos, eos = bpe_size, bpe_size + 1
    tok = _build(vocab, merges, LLAMA3_SPLIT, False, LLAMA3_SPECIALS,
                 "<|begin_of_text|>:0 $A:0 <|end_of_text|>:0",
                 "<|begin_of_text|>:0 $A:0 <|end_of_text|>:0 <|begin_of_text|>:1 $B:1 <|end_of_text|>:1",
                 [("<|begin_of_text|>", bos), ("<|end_of_text|>", eos)])
    assert tok.token_to_id("<|end_of_text|>") == eos and tok.get_vocab_size() == bpe_size + 256
    tok.save(str(out_dir / "tokenizer.json"))
    _write_json(out_dir / "tokenizer_config.json", {
        "added_tokens_decoder": {str(bpe_size + i): _added(t) for i, t in enumerate(LLAMA3_SPECIALS)},
        "bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>", "pad_token": "<|end_of_text|>",
        "mask_token": "<|mask|>", "clean_up_tokenization_spaces": True, "model_max_length": model_max_length,
        "add_bos_token": True, "add_eos_token": True, "tokenizer_class": "PreTrainedTokenizerFast",
    })
    _write_json(out_dir / "special_tokens_map.json", {
        "bos_token": _added("<|begin_of_text|>"), "eos_token": _added("<|end_of_text|>"),
        "pad_token": _added("<|end_of_text|>"), "mask_token": _added("<|mask|>")})
    return tok.get_vocab_size()


__all__ = ["write_llama3_bpe", "write_qwen2_bpe"]
