"""Batching for graphs with fused attention: sort by length, run what can run unmasked, pad only where L^2 is small.

ONNX Runtime's CPU attention is tiled (no batch x heads x L x L matrix) only when a batch needs no mask
(embcc.export.attention). So texts are sorted by token count and:
- texts of equal length go together, unpadded (the tiled path), up to `batch_size` per batch;
- the remaining texts are packed in length order into padded batches while batch x longest^2 stays within
  `pad_budget` (the masked path materialises that matrix per head); a text too long for that runs alone, unmasked;
- a causal graph ("gqa") is exact unmasked for right-padded batches, so there only a token budget applies;
- a graph whose attention always takes a bias ("bias": ALiBi) or an unfused graph (None) materialises L^2 for every
  batch: sorted packing within `attention_budget`.
Every runtime's Embedder.encode batches this way and returns vectors in input order; they do not depend on the
batching (tests/test_attention_fusion.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby

ATTENTION_BUDGET = 2 * 4096 * 4096  # batch x longest^2 of any batch that materialises the attention matrix
PAD_BUDGET = 16 * 512 * 512  # batch x longest^2 of a padded batch on the masked (non-tiled) path
TOKEN_BUDGET = 32 * 512  # batch x longest of a batch whose attention is tiled
SHORT = 64  # below this, padding waste is not worth a smaller batch
METADATA_KEY = "embcc.attention"  # model metadata the fused graph carries: mha | gqa | bias


def _pack(order: Sequence[int], lengths: Sequence[int], batch_size: int, fits) -> list[list[int]]:
    """Consecutive indices of `order` (sorted by length) into batches of at most `batch_size` texts while
    fits(count, longest, shortest) holds and padding at most doubles the tokens computed (or the batch is
    short); a text that fits with none of its neighbours runs alone."""
    out: list[list[int]] = []
    cur: list[int] = []
    real = 0
    for i in order:
        n = lengths[i]
        if cur and (len(cur) >= batch_size or not fits(len(cur) + 1, n, lengths[cur[0]])
                    or ((len(cur) + 1) * n > 2 * (real + n) and n > SHORT)):
            out.append(cur)
            cur, real = [], 0
        cur.append(i)
        real += n
    if cur:
        out.append(cur)
    return out


def plan_batches(
    lengths: Sequence[int], batch_size: int, kind: str | None, *, pad_budget: int = PAD_BUDGET,
    token_budget: int = TOKEN_BUDGET, attention_budget: int = ATTENTION_BUDGET,
) -> list[list[int]]:
    """Batches of indices into `lengths` (token counts, as padded: at least 2) for a graph whose attention is
    `kind` ("mha", "gqa", "bias" or None for an unfused graph)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    if kind == "gqa":  # right-padded batches run the tiled causal kernel: only activations count
        return _pack(order, lengths, batch_size, lambda count, longest, shortest: count * longest <= token_budget)
    if kind != "mha":  # every batch materialises batch x L x L per head
        return _pack(order, lengths, batch_size,
                     lambda count, longest, shortest: count * longest * longest <= attention_budget)
    out: list[list[int]] = []
    rest: list[int] = []
    for _, same in groupby(order, key=lambda i: lengths[i]):  # full batches of one length: unpadded, tiled
        group = list(same)
        per = max(1, min(batch_size, token_budget // lengths[group[0]]))
        full = len(group) - len(group) % per if per > 1 else 0
        out.extend(group[start : start + per] for start in range(0, full, per))
        rest.extend(group[full:])

    def fits(count: int, longest: int, shortest: int) -> bool:
        if longest == shortest:  # still unpadded
            return count * longest <= token_budget
        return count * longest * longest <= pad_budget

    out.extend(_pack(rest, lengths, batch_size, fits))
    return out
