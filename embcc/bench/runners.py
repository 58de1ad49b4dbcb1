"""The three sides bench times, each as `prepare(lengths) -> call()` over the same token ids.

- artifact: the artifact's runtime (open_artifact), batched as Embedder.encode batches (runtimes/batching.py);
- torch: the reference model (embcc.reference; SDPA, inference mode), batched as the reference's encode does
  (length-sorted, right-padded, attention budget), pooled as the checkpoint says;
- plain: the plain ONNX graph (bench/plain.py) in ONNX Runtime, batched like torch, pooled in numpy.

Token ids are random in the tokenizer's range (speed does not depend on which ids), the same for every side.
ONNX Runtime sessions run with intra-op spinning off: the sides alternate call by call, and a spinning pool
would take CPU from the next side's call.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

Call = Callable[[], object]


def token_ids(lengths: list[int], vocab: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    hi = max(6, min(vocab, 30000))
    return [rng.integers(5, hi, size=n).tolist() for n in lengths]


def no_spin_options(threads: int, arena: bool = True):
    """Session options without intra-op spinning; `arena=False` (long inputs): no CPU memory arena, so a
    side's peak (the plain graph's heads x L^2 attention) is freed after its call instead of kept for the next,
    and the sides sharing the timing process do not hold their peaks all at once."""
    from embcc.runtimes.onnxrt import session_options

    o = session_options(threads)
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    o.enable_cpu_mem_arena = arena
    return o


def ort_session(path: Path, threads: int, device: str, arena: bool = True):
    import onnxruntime as ort

    from embcc.runtimes.onnxrt import providers

    return ort.InferenceSession(str(path), no_spin_options(threads, arena), providers=providers(device))


def open_side(art: Path, *, threads: int, device: str | None, max_length: int | None = None, arena: bool = True):
    """The artifact's Embedder, its ONNX Runtime session rebuilt without spinning (same graph, same providers)."""
    from embcc.runtimes import open_artifact
    from embcc.runtimes.onnxrt import OnnxEmbedder

    emb = open_artifact(art, threads=threads, device=device, max_length=max_length)
    if isinstance(emb, OnnxEmbedder):
        import onnxruntime as ort

        emb.session = ort.InferenceSession(str(Path(art) / emb.model_file), no_spin_options(threads, arena),
                                           providers=emb.session.get_providers())
    return emb


def artifact_runner(emb, task: str | None, vectors: str = "single") -> Callable[[list[list[int]]], Call]:
    from embcc.runtimes.batching import plan_batches

    t = emb.spec.task_by_name(task)
    task_id = t.id if t else None
    kind = emb.attention_kind()
    embed = emb._embed_multi if vectors == "multi" else emb._embed

    def prepare(ids: list[list[int]]) -> Call:
        groups = plan_batches([max(2, len(x)) for x in ids], len(ids), kind)
        feeds = [emb.batch([ids[i] for i in g]) for g in groups]

        def call() -> list:
            return [np.asarray(embed(i, m, task_id)) for i, m in feeds]
        return call
    return prepare


def reference_fp32(ref) -> str:
    """Cast a float64 reference (JinaBERT's re-implementation) to float32, as torch users run models; returns
    the dtype the torch side runs."""
    w = getattr(ref, "w", None)
    if isinstance(w, dict) and any(v.dtype == torch.float64 for v in w.values()):
        ref.w = {k: v.float() for k, v in w.items()}
        return "float32 (the float64 verify reference cast to float32)"
    return "float32"


def _reference_batches(ref, ids: list[list[int]]):
    from embcc.reference.common import length_batches

    return list(length_batches(ids, len(ids), ref.tokens.pad_id))


def torch_runner(ref, task: str | None, device: str = "cpu") -> Callable[[list[list[int]]], Call]:
    from embcc.reference.common import pool

    if hasattr(ref, "_hidden") and hasattr(ref, "set_task"):  # jina-embeddings-v4: Qwen2.5-VL's own forward
        return _v4_torch_runner(ref, task, device)
    if not hasattr(ref, "_states"):
        raise RuntimeError(f"the {type(ref).__name__} reference has no token-state forward to time")
    mode = ref.pooling.mode

    def prepare(ids: list[list[int]]) -> Call:
        batches = [(i.to(device), m.to(device)) for _, i, m in _reference_batches(ref, ids)]

        def call() -> list:
            with torch.inference_mode():
                out = [pool(ref._states(i, m, task).float().cpu(), m.cpu(), mode) for i, m in batches]
            if device == "cuda":
                torch.cuda.synchronize()
            return out
        return call
    return prepare


def _v4_torch_runner(ref, task: str | None, device: str, multi: bool = False) -> Callable[[list[list[int]]], Call]:
    """The v4 reference's forward (transformers' Qwen2.5-VL with PEFT's unmerged adapter, positions from its own
    get_rope_index), mean-pooled as its encode does, or (`multi`) its multi-vector projector per token, L2, masked;
    CPU only (its positions are computed on the CPU)."""
    from embcc.reference.common import length_batches

    if device != "cpu":
        raise RuntimeError("the jina-embeddings-v4 reference is timed on the CPU only")
    ref.set_task(task)
    pad = ref.tokenizer.pad_token_id or 0

    def prepare(ids: list[list[int]]) -> Call:
        batches = [(i, m) for _, i, m in length_batches(ids, len(ids), pad)]

        def call() -> list:
            out = []
            with torch.inference_mode():
                for i, m in batches:
                    hidden = ref._hidden({"input_ids": i, "attention_mask": m})
                    p = m.unsqueeze(-1).to(hidden.dtype)
                    if multi:
                        out.append(torch.nn.functional.normalize(ref.model.multi_vector_projector(hidden), dim=-1) * p)
                    else:
                        out.append((hidden * p).sum(1) / p.sum(1))
            return out
        return call
    return prepare


def torch_multi_runner(ref, task: str | None) -> Callable[[list[list[int]]], Call]:
    """Multi-vectors on the torch side (jina-embeddings-v4's reference)."""
    if not hasattr(ref, "_hidden"):
        raise RuntimeError(f"the {type(ref).__name__} reference has no multi-vector output")
    return _v4_torch_runner(ref, task, "cpu", multi=True)


def plain_runner(session, pooling: str, pad_id: int) -> Callable[[list[list[int]]], Call]:
    from embcc.reference.common import length_batches
    from embcc.runtimes.base import pool_numpy

    def prepare(ids: list[list[int]]) -> Call:
        batches = [(i.numpy(), m.numpy()) for _, i, m in length_batches(ids, len(ids), pad_id)]

        def call() -> list:
            return [pool_numpy(session.run(["last_hidden_state"], {"input_ids": i, "attention_mask": m})[0], m, pooling)
                    for i, m in batches]
        return call
    return prepare
