"""The one Embedder interface every runtime implements.

Preprocessing (runtimes/preprocess.py) and batching (runtimes/batching.py) are shared; pooling of token states when a graph returns only those,
Matryoshka truncation and L2 normalisation live here, once, so every artifact runtime does them the same way.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from embcc.core.errors import EmbccError
from embcc.core.spec import ModelSpec, Task
from embcc.runtimes.batching import plan_batches
from embcc.runtimes.preprocess import Preprocessor, texts_list


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


class Embedder(ABC):
    """encode(texts, task=..., dim=...) -> float32 [N, dim], L2-normalised; texts: any iterable of str (a list,
    tuple or generator), never one bare string."""

    runtime: str = "?"

    def __init__(self, spec: ModelSpec, tokenizer_json: Path, max_length: int | None = None):
        self.spec = spec
        self.pre = Preprocessor(spec, tokenizer_json, max_length)
        self.max_length = self.pre.max_length
        self.tokenizer = self.pre.tokenizer
        self.pad_id = self.pre.pad_id

    def prefixed(self, texts: Sequence[str], task: str | None, role: str | None = None) -> tuple[list[str], Task | None]:
        return self.pre.prefixed(texts, task, role)

    def token_ids(self, texts: Iterable[str], task: str | None = None, role: str | None = None) -> list[list[int]]:
        """The ids the model sees for each text (prefix, special tokens, truncation included); any iterable."""
        return self.pre.token_ids(texts_list(texts), task, role)

    def batch(self, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        return self.pre.pad(ids)

    def encode(
        self, texts: Iterable[str], task: str | None = None, dim: int | None = None, batch_size: int = 16,
        role: str | None = None, vectors: str = "single",
    ) -> np.ndarray | list[np.ndarray]:
        """Single vectors: float32 [N, dim], L2-normalised (Matryoshka `dim`). vectors="multi" (models with a
        multi-vector head, jina-embeddings-v4): a list of float32 [n_tokens_i, D] arrays, padding removed."""
        if self.spec.part == "vision":
            raise EmbccError("this artifact is an image tower: it embeds images, not texts",
                             "call encode_images(), or open the text part (text/ or combined/)")
        if vectors not in ("single", "multi"):
            raise EmbccError(f"unknown vectors={vectors!r}", "choose 'single' or 'multi'")
        if vectors == "multi" and not self.spec.multi_vector_dim:
            raise EmbccError(f"{self.spec.family} has no multi-vector output", "use vectors='single'")
        if vectors == "multi" and dim is not None:
            raise EmbccError("Matryoshka truncation applies to single vectors", "leave out dim with vectors='multi'")
        texts = texts_list(texts)
        dim = self.spec.check_dim(dim)
        if len(texts) == 0:
            return [] if vectors == "multi" else np.zeros((0, dim), dtype=np.float32)
        ids = self.token_ids(texts, task, role)
        t = self.spec.task_by_name(task)
        task_id = t.id if t else None
        multi: list = [None] * len(ids)
        single: np.ndarray | None = None
        for group in plan_batches([max(2, len(x)) for x in ids], batch_size, self.attention_kind()):
            input_ids, mask = self.batch([ids[i] for i in group])
            if vectors == "multi":
                out = np.asarray(self._embed_multi(input_ids, mask, task_id), dtype=np.float32)
                for i, m, k in zip(group, out, mask):
                    multi[i] = m[: int(k.sum())]
            else:
                out = np.asarray(self._embed(input_ids, mask, task_id), dtype=np.float64)
                if single is None:
                    single = np.zeros((len(ids), out.shape[1]), dtype=np.float64)
                single[group] = out
        if vectors == "multi":
            return multi
        assert single is not None
        return normalize(single[:, :dim])

    def attention_kind(self) -> str | None:
        """How the runtime's attention batches best (embcc.runtimes.batching): None for the attention-budget
        packing every runtime can take; ONNX graphs with fused attention say their kind."""
        return None

    def _embed_multi(self, input_ids: np.ndarray, attention_mask: np.ndarray, task_id: int | None) -> np.ndarray:
        raise EmbccError(f"the {self.runtime} runtime has no multi-vector output", "use vectors='single'")

    def encode_images(self, images: Iterable, dim: int | None = None, batch_size: int = 8, task: str | None = None,
                      vectors: str = "single") -> np.ndarray | list[np.ndarray]:
        """float32 [N, dim] L2-normalised image embeddings: paths, PIL images or uint8 arrays, preprocessed by the
        one image step every runtime and the reference share (embcc.core.images). Models whose images go through
        their decoder (jina-embeddings-v4) also take `task` (its adapter) and `vectors="multi"`."""
        from embcc.core.images import load_images, preprocess

        if self.spec.part not in ("vision", "combined") or not self.spec.image:
            raise EmbccError(f"this {self.spec.family} artifact embeds texts only (part {self.spec.part!r})",
                             "open the vision part (vision/ or combined/) of a model with an image tower")
        if isinstance(images, str | bytes):
            raise EmbccError("encode_images() takes a list of images, not one", "wrap the image in a list")
        vl = self.spec.image.get("kind") == "qwen2-vl"
        if vectors not in ("single", "multi"):
            raise EmbccError(f"unknown vectors={vectors!r}", "choose 'single' or 'multi'")
        if not vl and (vectors != "single" or task is not None):
            raise EmbccError(f"{self.spec.family}'s image tower takes no task and has one vector per image",
                             "leave out task= and vectors=")
        if vectors == "multi" and dim is not None:
            raise EmbccError("Matryoshka truncation applies to single vectors", "leave out dim with vectors='multi'")
        dim = self.spec.check_dim(dim)
        items = list(images)
        if not items:
            return [] if vectors == "multi" else np.zeros((0, dim), dtype=np.float32)
        if vl:
            return self._encode_vl_images(load_images(items), task, vectors, dim)
        out = []
        for start in range(0, len(items), batch_size):
            pixels = preprocess(load_images(items[start:start + batch_size]), self.spec.image)
            out.append(np.asarray(self._embed_images(pixels), dtype=np.float64))
        return normalize(np.concatenate(out)[:, :dim])

    def _encode_vl_images(self, images: list, task: str | None, vectors: str, dim: int) -> np.ndarray | list:
        """Images through a Qwen2.5-VL image graph, one image per run (the vision attention masks are patches^2):
        the graph's inputs from embcc.core.vl_images, the task's adapter by task_id where kept."""
        from embcc.core import vl_images

        facts = self.spec.image or {}
        t = self.spec.task_by_name(task)
        proc = vl_images.processor(facts)
        tokenizer = copy.copy(self.tokenizer)  # image prompts are never truncated (the text max_length is not theirs)
        tokenizer.no_truncation()
        single, multi = [], []
        for image in images:
            pixels, grid = vl_images.patches([image], facts, proc)
            feeds = vl_images.image_feeds(pixels, grid, tokenizer, self.pad_id, facts)
            s, m = self._embed_vl(feeds, t.id if t else None, vectors)
            if vectors == "multi":
                multi.append(np.asarray(m[0][feeds["attention_mask"][0].astype(bool)], np.float32))
            else:
                single.append(np.asarray(s, np.float64))
        if vectors == "multi":
            return multi
        return normalize(np.concatenate(single)[:, :dim])

    def _embed_vl(self, feeds: dict[str, np.ndarray], task_id: int | None, vectors: str) -> tuple:
        raise EmbccError(f"the {self.runtime} runtime runs no image graph", "open the artifact with onnxruntime")

    def _embed_images(self, pixel_values: np.ndarray) -> np.ndarray:
        raise EmbccError(f"the {self.runtime} runtime runs no image tower", "open the artifact with onnxruntime")

    @abstractmethod
    def _embed(self, input_ids: np.ndarray, attention_mask: np.ndarray, task_id: int | None) -> np.ndarray:
        """Pooled sentence vectors [B, H] (normalised or not) for one padded batch."""


def maxsim(queries: list[np.ndarray], documents: list[np.ndarray]) -> np.ndarray:
    """Late-interaction scores [Q, D]: for each query token its best-matching document token, summed (ColBERT's
    MaxSim, as jina-embeddings-v4's multi-vectors are scored)."""
    out = np.zeros((len(queries), len(documents)), dtype=np.float64)
    for i, q in enumerate(queries):
        for j, d in enumerate(documents):
            out[i, j] = (q.astype(np.float64) @ d.astype(np.float64).T).max(axis=1).sum() if len(d) else 0.0
    return out
