"""The one preprocessing step every runtime and calibration share: prefix (task and role), tokenise with the
artifact's own tokenizer.json, truncate as the HF tokenizer does (special tokens kept), and pad (batching:
embcc.runtimes.batching).

Special tokens come from the tokenizer files themselves: the pad token named by tokenizer_config.json /
special_tokens_map.json (else tokenizer.json's padding setting), BOS/EOS from what the post-processor adds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from embcc.core.errors import EmbccError
from embcc.core.spec import ModelSpec, Task


def texts_list(texts: Iterable[str] | str) -> list[str]:
    """A list of texts from any iterable (a generator included); one bare string is refused. A lone surrogate
    (a str that is not valid Unicode text, e.g. from surrogateescape decoding) becomes U+FFFD, as UTF-8 encoders
    replace it, in every runtime alike (the tokenizers and llama.cpp take UTF-8)."""
    if isinstance(texts, str | bytes):
        raise EmbccError("encode() takes a list (or any iterable) of texts, not one string", "wrap the text in a list")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise EmbccError(f"text {i} is a {type(t).__name__}, not a str", "pass strings only")
        if _SURROGATE.search(t):
            out[i] = _SURROGATE.sub("\ufffd", t)
    return out


_SURROGATE = re.compile("[\ud800-\udfff]")


def _named_token(tokenizer_dir: Path, role: str) -> str | None:
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        f = tokenizer_dir / name
        if not f.is_file():
            continue
        try:
            value = json.loads(f.read_text(encoding="utf-8")).get(f"{role}_token")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            continue
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            return value
    return None


def pad_id_of(tokenizer: Tokenizer, tokenizer_dir: Path) -> int:
    """The pad id the checkpoint's tokenizer files name. Padded positions are masked out, so any id is
    correct; the named one keeps the graphs' inputs what the HF tokenizer would feed."""
    name = _named_token(tokenizer_dir, "pad")
    if name is not None and (i := tokenizer.token_to_id(name)) is not None:
        return i
    padding = tokenizer.padding
    if padding and padding.get("pad_id") is not None:
        return int(padding["pad_id"])
    return 0


class Preprocessor:
    def __init__(self, spec: ModelSpec, tokenizer_json: Path, max_length: int | None = None):
        self.spec = spec
        self.max_length = min(max_length or spec.max_length, spec.max_length)
        tokenizer_json = Path(tokenizer_json)
        if not tokenizer_json.is_file():
            raise EmbccError(f"{tokenizer_json} is missing", "the artifact is incomplete; export it again")
        try:
            self.tokenizer = Tokenizer.from_file(str(tokenizer_json))
        except Exception as e:  # tokenizers raises its own exception type for unparsable files
            raise EmbccError(f"{tokenizer_json} does not parse as a tokenizers file ({str(e).splitlines()[0]})",
                             "copy the tokenizer.json published with the model") from e
        self.pad_id = pad_id_of(self.tokenizer, tokenizer_json.parent)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)

    def prefixed(self, texts: Sequence[str], task: str | None, role: str | None = None) -> tuple[list[str], Task | None]:
        """Texts with their task's prefix; `role` (v5: query | document) defaults to the artifact's role."""
        texts = texts_list(texts)
        t = self.spec.task_by_name(task)
        role = role if role is not None else self.spec.role
        if t is None:
            if role is not None:
                raise EmbccError(f"{self.spec.family} inputs have no roles, but role {role!r} was given",
                                 "leave out role")
            return texts, None
        return [t.prefix_for(role) + x for x in texts], t

    def token_ids(self, texts: Sequence[str], task: str | None = None, role: str | None = None) -> list[list[int]]:
        """The ids the model sees for each text (prefix, special tokens, truncation included)."""
        full, _ = self.prefixed(texts, task, role)
        return [e.ids for e in self.tokenizer.encode_batch(full)]

    def pad(self, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded int64 input_ids and attention_mask."""
        width = max(2, max(len(x) for x in ids))
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return input_ids, mask
