"""The one Embedder interface, and the steps every runtime shares.

Prefixing, tokenisation (from the artifact's own tokenizer.json), truncation, padding, pooling of token states
when a graph returns only those, Matryoshka truncation and L2 normalisation live here, once, so the torch
reference and every artifact runtime do them the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from embcc.errors import EmbccError
from embcc.modelspec import ModelSpec, Task


def pool_numpy(states: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    """Pooling outside the graph (for graphs that return token states only, like Jina's own ONNX)."""
    if pooling == "mean":
        m = mask[..., None].astype(np.float64)
        return (states * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    if pooling == "cls":
        return states[:, 0]
    if pooling == "last":
        last = (np.arange(mask.shape[1])[None] * mask).argmax(1)
        return states[np.arange(states.shape[0]), last]
    raise ValueError(f"unknown pooling {pooling!r}")


def normalize(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


ATTENTION_BUDGET = 2 * 4096 * 4096  # batch x longest^2: bounds the attention matrices a batch materialises


def batches(ids: list[list[int]], batch_size: int) -> list[list[list[int]]]:
    """Consecutive texts, in input order, at most `batch_size` per batch and within the attention budget."""
    out: list[list[list[int]]] = []
    cur: list[list[int]] = []
    longest = 0
    for row in ids:
        n = max(longest, len(row))
        if cur and (len(cur) >= batch_size or (len(cur) + 1) * n * n > ATTENTION_BUDGET):
            out.append(cur)
            cur, n = [], len(row)
        cur.append(row)
        longest = n
    if cur:
        out.append(cur)
    return out


class Embedder(ABC):
    """encode(texts, task=..., dim=...) -> float32 [N, dim], L2-normalised."""

    runtime: str = "?"

    def __init__(self, spec: ModelSpec, tokenizer_json: Path, max_length: int | None = None):
        self.spec = spec
        self.max_length = min(max_length or spec.max_length, spec.max_length)
        if not Path(tokenizer_json).is_file():
            raise EmbccError(f"{tokenizer_json} is missing", "the artifact is incomplete; export it again")
        self.tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        self.pad_id = self._pad_id()

    def prefixed(self, texts: Sequence[str], task: str | None, role: str | None = None) -> tuple[list[str], Task | None]:
        """Texts with their task's prefix; `role` (v5: query | document) defaults to the artifact's role."""
        if isinstance(texts, str):
            raise EmbccError("encode() takes a list of texts, not one string", "wrap the text in a list")
        t = self.spec.task_by_name(task)
        role = role if role is not None else self.spec.role
        if t is None:
            if role is not None:
                raise EmbccError(f"{self.spec.family} inputs have no roles, but role {role!r} was given", "leave out role")
            return list(texts), None
        prefix = t.prefix_for(role)
        return [prefix + x for x in texts], t

    def token_ids(self, texts: Sequence[str], task: str | None = None, role: str | None = None) -> list[list[int]]:
        """The ids the model sees for each text (prefix, special tokens, truncation included)."""
        full, _ = self.prefixed(texts, task, role)
        return [e.ids for e in self.tokenizer.encode_batch(full)]

    def batch(self, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded int64 input_ids and attention_mask."""
        width = max(2, max(len(x) for x in ids))
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return input_ids, mask

    def _pad_id(self) -> int:
        for tok in ("<pad>", "[PAD]", "<|endoftext|>"):
            i = self.tokenizer.token_to_id(tok)
            if i is not None:
                return i
        return 0

    def encode(
        self, texts: Sequence[str], task: str | None = None, dim: int | None = None, batch_size: int = 16,
        role: str | None = None,
    ) -> np.ndarray:
        dim = self.spec.check_dim(dim)
        if len(texts) == 0:
            return np.zeros((0, dim), dtype=np.float32)
        ids = self.token_ids(texts, task, role)
        t = self.spec.task_by_name(task)
        out = []
        for group in batches(ids, batch_size):
            input_ids, mask = self.batch(group)
            out.append(np.asarray(self._embed(input_ids, mask, t.id if t else None), dtype=np.float64))
        return normalize(np.concatenate(out)[:, :dim])

    @abstractmethod
    def _embed(self, input_ids: np.ndarray, attention_mask: np.ndarray, task_id: int | None) -> np.ndarray:
        """Pooled sentence vectors [B, H] (normalised or not) for one padded batch."""
