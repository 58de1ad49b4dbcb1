"""GGUF tensors: which llama.cpp tensor each weight becomes, at which type, and the adapter factors (keep).

Names come from gguf-py's own map (`gguf.get_tensor_name_map(arch, n_blocks)`); a family declares only what
that map lacks (`GgufFacts.extra_tensors`: fused QKV, names of layouts gguf-py does not know). Tensors are
written block by block in the order gguf-py lists an architecture's tensor kinds.

llama.cpp's own rules, kept here because they are llama.cpp's and not any family's:
- types: 1-D tensors, norms, token types and position tables stay F32; a row that does not split into the
  type's blocks falls back to F16 (as llama.cpp's converter does);
- adapters: llama.cpp adds row 0 of `token_types` to every token but applies no adapter to it, so that
  adapter's row-0 delta is carried on `token_embd`'s adapter as one extra rank.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

from embcc.core.adapted import Adapted
from embcc.core.bundle import Bundle
from embcc.core.errors import EmbccError
from embcc.core.gguf_facts import Cfg, GgufFacts
from embcc.core.lora import LoraSet, LoraWeights

PY_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1")
LLAMA_TYPES = ("q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k")
GGUF_TYPES = PY_TYPES + LLAMA_TYPES
FOLD_ROW0 = {"token_types.weight": "token_embd.weight"}  # adapter llama.cpp does not apply -> where it folds


def facts_of(bundle: Bundle) -> GgufFacts:
    facts = bundle.family.gguf_facts(bundle)
    if facts is None:
        raise EmbccError(f"{bundle.spec.family} has no llama.cpp architecture", "export it with --format onnx")
    return facts


def hparams(facts: GgufFacts, config: dict) -> dict[str, object]:
    out = {}
    for key, value in facts.hparams.items():
        try:
            out[key] = value.read(config) if isinstance(value, Cfg) else value(config) if callable(value) else value
        except KeyError as e:
            raise EmbccError(f"config.json lacks {e.args[0]!r}, needed for GGUF key {facts.arch}.{key}",
                             "use the config.json published with the model") from e
    return out


def _arch(facts: GgufFacts) -> Any:
    import gguf

    arch = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}.get(facts.arch)
    if arch is None:
        raise EmbccError(f"the gguf package knows no llama.cpp architecture {facts.arch!r}",
                         "update the gguf and llama-cpp-python packages")
    return arch


def tensor_plan(bundle: Bundle, facts: GgufFacts) -> list[tuple[str, tuple[str, ...]]]:
    """[(GGUF tensor name, source weight names)]: every weight covered once, every name one llama.cpp knows."""
    import gguf

    arch = _arch(facts)
    kinds = [gguf.TENSOR_NAMES[t] for t in gguf.MODEL_TENSORS[arch]]
    n_blocks = int(hparams(facts, bundle.config)["block_count"])
    entries: dict[str, tuple[str, ...]] = {}
    for name, src in facts.extra_tensors.items():
        sources = (src,) if isinstance(src, str) else tuple(src)
        for bid in range(n_blocks) if "{bid}" in name else [None]:
            entries[name.format(bid=bid)] = tuple(s.format(bid=bid) for s in sources)
    claimed = {s for srcs in entries.values() for s in srcs}
    missing = sorted(claimed - set(bundle.weights))
    if missing:
        raise EmbccError(f"{bundle.path} has no tensor {missing[0]}, which the GGUF mapping needs",
                         "the checkpoint is incomplete")
    names = gguf.get_tensor_name_map(arch, n_blocks)
    for key in bundle.weights:
        if key in claimed or key.startswith(facts.unused):
            continue
        target = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise EmbccError(f"tensor {key} has no llama.cpp {facts.arch} name (not in gguf-py's map nor the "
                             f"family's extra names)", "add it to the family's GgufFacts, or list it as unused")
        if target in entries:
            raise EmbccError(f"tensors {entries[target][0]} and {key} both map to GGUF {target}",
                             "fix the family's GgufFacts")
        entries[target] = (key,)
    def kind(name: str) -> str:  # "blk.3.attn_q.weight" -> "blk.{bid}.attn_q"
        return re.sub(r"^blk\.\d+\.", "blk.{bid}.", name.rsplit(".", 1)[0])

    for name in entries:
        if kind(name) not in kinds:
            raise EmbccError(f"tensor {name} is not one llama.cpp's {facts.arch} has", "fix the family's GgufFacts")

    def order(name: str) -> tuple[int, int, str]:
        m = re.match(r"blk\.(\d+)\.", name)
        return (int(m.group(1)) if m else -1, kinds.index(kind(name)), name)

    return sorted(entries.items(), key=lambda e: order(e[0]))


def tensor_type(name: str, shape: tuple[int, ...], gguf_type: str):
    """llama.cpp's converter rules: F32 for 1-D tensors, norms, token types and non-weights; F16 when a row
    does not split into quantization blocks."""
    import gguf

    q = gguf.GGMLQuantizationType
    if len(shape) <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight") or name.startswith(
        ("token_types.", "position_embd.")
    ):
        return q.F32
    want = q[gguf_type.upper()] if gguf_type in PY_TYPES else q.F32
    block, _ = gguf.GGML_QUANT_SIZES[want]
    if shape[-1] % block:
        return q.F16
    return want


def to_numpy(t: torch.Tensor, qtype) -> np.ndarray:
    import gguf

    return gguf.quants.quantize(t.detach().float().contiguous().numpy(), qtype)


def produce(adapted: Adapted, sources: tuple[str, ...]) -> torch.Tensor:
    """One GGUF tensor's float32 data: its sources with the merged task folded in, concatenated on dim 0."""
    parts = [adapted.tensor(s) for s in sources]
    return parts[0] if len(parts) == 1 else torch.cat(parts, 0)


# ---- adapters (keep) ----------------------------------------------------------------------------------------


def _module(source: str) -> str:
    return source.removesuffix(".weight")


def _factors(mods: list[LoraWeights], t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A [r, in], B [out, r]) of one GGUF tensor built from the adapters of its sources (concatenated rows)."""
    if len(mods) == 1:
        return mods[0].A[t].float(), mods[0].B[t].float()
    a0 = mods[0].A[t]
    if all(torch.equal(m.A[t], a0) for m in mods):  # fused q,k,v sharing one A (Jina's original Wqkv adapter)
        return a0.float(), torch.cat([m.B[t] for m in mods], 0).float()
    return torch.cat([m.A[t] for m in mods], 0).float(), torch.block_diag(*[m.B[t] for m in mods]).float()


def adapter_tensors(bundle: Bundle, facts: GgufFacts, t: int) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """GGUF tensor name -> (lora_a, lora_b with scaling folded in, rank), in llama.cpp's layouts."""
    lora: LoraSet | None = bundle.lora
    assert lora is not None
    covered = set()
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    kinds: dict[str, str] = {}
    folds: dict[str, LoraWeights] = {}
    for name, sources in tensor_plan(bundle, facts):
        mods = [lora.modules.get(_module(s)) for s in sources]
        if all(m is None for m in mods):
            continue
        if any(m is None for m in mods) or len({m.kind for m in mods}) != 1:
            raise EmbccError(f"GGUF tensor {name} fuses adapted and unadapted weights", "fix the family's GgufFacts")
        covered |= {_module(s) for s in sources}
        if name in FOLD_ROW0:
            folds[name] = mods[0]
            continue
        out[name] = (mods[0].A[t].float(), mods[0].B[t].float()) if mods[0].kind == "embedding" else _factors(mods, t)
        kinds[name] = mods[0].kind
    for name, m in folds.items():
        target = FOLD_ROW0[name]
        if target not in out:
            raise EmbccError(f"{name}'s adapter folds into {target}, which has no adapter", "fix the family's GgufFacts")
        row0 = m.delta(t)[0]  # added to every token by llama.cpp's graph
        a, b = out[target]
        out[target] = (torch.cat([a, torch.ones(a.shape[0], 1)], 1), torch.cat([b, row0[None]], 0))
    # adapters on weights the GGUF leaves out (jina-embeddings-v4's multi-vector projector) go with them
    left = sorted(m for m in set(lora.modules) - covered if not f"{m}.weight".startswith(facts.unused))
    if left:
        raise EmbccError(f"adapter on {left[0]} has no GGUF tensor in {bundle.spec.family}'s mapping",
                         "fix the family's GgufFacts")
    result = {}
    for name, (a, b) in out.items():
        if kinds[name] == "embedding":  # llama.cpp: lora_a [vocab, r] gathered by token, lora_b [dim, r]
            result[name] = (a.numpy(), b.T.contiguous().numpy(), a.shape[1])
        else:  # lora_a [r, in], lora_b [out, r]
            result[name] = (a.contiguous().numpy(), b.contiguous().numpy(), a.shape[0])
    return result
