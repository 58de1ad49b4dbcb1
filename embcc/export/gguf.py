"""GGUF writer: walks the family's GgufTable, writes metadata explicitly, streams tensors one at a time.

- merge / no adapters: one self-contained `model.gguf` (the task's adapter folded into each tensor as it is
  written);
- keep: the base `model.gguf` plus `lora-<task>.gguf` per task in llama.cpp's adapter convention
  (general.type=adapter, adapter.type=lora, adapter.lora.alpha/task_name/prompt_prefix, F32 tensors).
  Adapters llama.cpp does not apply (the token-type embedding) are folded, per the table, into another
  tensor's adapter as one extra rank. llama.cpp scales every adapter by alpha / rank of that tensor, so each
  lora_b is written pre-multiplied by rank / alpha (the rank of token_embd's adapter is one larger).
- Types the `gguf` package writes itself (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1) are written in Python
  with llama.cpp's converter rules (1-D tensors, norms and token types stay F32; a row that is not a multiple
  of the block size falls back to F16); K-quants go through llama.cpp's own quantizer on an F32 file.
Tensors are produced and written one at a time (header first, then data), so peak memory stays near the
loaded checkpoint plus one tensor.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from embcc.errors import EmbccError
from embcc.export.gguf_table import Cfg, GgufTable
from embcc.export.lora import LoraSet, LoraWeights
from embcc.families.base import Bundle
from embcc.modelspec import ModelSpec

MODEL_FILE = "model.gguf"
PY_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1")
LLAMA_TYPES = ("q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k")
GGUF_TYPES = PY_TYPES + LLAMA_TYPES
POOLING = {"none": 0, "mean": 1, "cls": 2, "last": 3}
SPECIAL_KEYS = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id",
                "seperator": "seperator_token_id", "padding": "padding_token_id", "cls": "cls_token_id",
                "mask": "mask_token_id"}


def adapter_file(task: str) -> str:
    return f"lora-{task}.gguf"


def check_type(gguf_type: str) -> str:
    t = gguf_type.lower()
    if t not in GGUF_TYPES:
        raise EmbccError(f"GGUF type {gguf_type!r} is not one embcc can write for these encoders",
                         f"choose one of: {', '.join(GGUF_TYPES)}")
    return t


def table_of(bundle: Bundle) -> GgufTable:
    table = bundle.family.gguf_table(bundle)
    if table is None:
        raise EmbccError(f"{bundle.spec.family} has no GGUF mapping", "export it with --format onnx")
    return table


# ---- the table, expanded and checked ----------------------------------------------------------------------


def _hparams(table: GgufTable, config: dict) -> dict[str, object]:
    out = {}
    for key, value in table.hparams.items():
        try:
            out[key] = value.read(config) if isinstance(value, Cfg) else value(config) if callable(value) else value
        except KeyError as e:
            raise EmbccError(f"config.json lacks {e.args[0]!r}, needed for GGUF key {table.arch}.{key}",
                             "use the config.json published with the model") from e
    return out


def plan(bundle: Bundle, table: GgufTable) -> list[tuple[str, tuple[str, ...]]]:
    """[(GGUF tensor name, source weight names)], every weight covered, every name one llama.cpp's arch knows."""
    import gguf

    arch = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}.get(table.arch)
    if arch is None:
        raise EmbccError(f"the gguf package knows no llama.cpp architecture {table.arch!r}",
                         "update the gguf and llama-cpp-python packages")
    known = {gguf.TENSOR_NAMES[t] for t in gguf.MODEL_TENSORS[arch]}
    n_blocks = int(_hparams(table, bundle.config)["block_count"])
    entries: list[tuple[str, tuple[str, ...]]] = []
    for name, src in table.tensors.items():
        base = name.rsplit(".", 1)[0]
        if base not in known:
            raise EmbccError(f"tensor {name} of {bundle.spec.family}'s GGUF table is not one llama.cpp's {table.arch} has",
                             "fix the family's GGUF table")
        sources = (src,) if isinstance(src, str) else tuple(src)
        for bid in range(n_blocks) if "{bid}" in name else [None]:
            entries.append((name.format(bid=bid), tuple(s.format(bid=bid) for s in sources)))
    used = {s for _, srcs in entries for s in srcs}
    missing = sorted(used - set(bundle.weights))
    if missing:
        raise EmbccError(f"{bundle.path} has no tensor {missing[0]}, which the GGUF table maps", "the checkpoint is incomplete")
    unmapped = sorted(k for k in set(bundle.weights) - used if not k.startswith(table.unused))
    if unmapped:
        raise EmbccError(f"tensor {unmapped[0]} has no GGUF mapping in {bundle.spec.family}'s table ({len(unmapped)} unmapped)",
                         "add it to the family's GGUF table, or list it as unused")
    return entries


def _module(source: str) -> str:
    return source.removesuffix(".weight")


# ---- tensor types -----------------------------------------------------------------------------------------


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


def _to_numpy(t: torch.Tensor, qtype) -> np.ndarray:
    import gguf

    return gguf.quants.quantize(t.detach().float().contiguous().numpy(), qtype)


# ---- writing ------------------------------------------------------------------------------------------------


def _write_metadata(w, table: GgufTable, bundle: Bundle, spec: ModelSpec, gguf_type: str, vocab, n_types: int) -> None:
    import gguf

    arch = table.arch
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(f"{bundle.path.name}" + (f" ({spec.task})" if spec.task else ""))
    ftype = gguf.LlamaFileType.ALL_F32 if gguf_type == "f32" else gguf.LlamaFileType[f"MOSTLY_{gguf_type.upper()}"]
    w.add_file_type(int(ftype))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for key, value in _hparams(table, bundle.config).items():
        full = f"{arch}.{key}"
        if isinstance(value, bool):
            w.add_bool(full, value)
        elif isinstance(value, float):
            w.add_float32(full, value)
        else:
            w.add_uint32(full, int(value))
    w.add_context_length(spec.max_length)
    w.add_causal_attention(table.causal)
    w.add_pooling_type(gguf.PoolingType(POOLING[spec.pooling]))
    if spec.position == "rope":
        w.add_rope_freq_base(float(spec.rope_theta))
    write_vocab(w, vocab, table.pre_tokenizer, n_types)


def write_vocab(w, vocab, pre_tokenizer: str, n_types: int | None = None) -> None:
    """The tokenizer.ggml.* keys: llama.cpp tokenises from these alone."""
    w.add_tokenizer_model(vocab.model)
    w.add_tokenizer_pre(pre_tokenizer)
    w.add_token_list(vocab.tokens)
    w.add_token_types(vocab.types)
    if vocab.scores is not None:
        w.add_token_scores(vocab.scores)
    if vocab.merges is not None:
        w.add_token_merges(vocab.merges)
    if n_types:
        w.add_token_type_count(n_types)
    for role, i in vocab.special.items():
        w.add_uint32(f"tokenizer.ggml.{SPECIAL_KEYS[role]}", i)
    w.add_add_bos_token(vocab.add_bos)
    w.add_add_eos_token(vocab.add_eos)
    w.add_add_sep_token(vocab.add_sep)
    for flag, value in vocab.flags.items():
        w.add_bool(f"tokenizer.ggml.{flag}", value)
    if vocab.charsmap:
        w.add_precompiled_charsmap(vocab.charsmap)


def _stream(path: Path, arch: str, header, tensors: list[tuple[str, tuple[int, ...], object]],
            produce: Iterator[np.ndarray]) -> None:
    """Header and tensor infos first, then each tensor's data as it is produced."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    header(w)
    for name, shape, qtype in tensors:
        nbytes = int(np.prod(gguf.quant_shape_to_byte_shape(shape, qtype)))
        w.add_tensor_info(name, shape, np.dtype(np.float32), nbytes, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for data in produce:
        w.write_tensor_data(data)
    w.close()


def _source_tensor(bundle: Bundle, source: str, lora: LoraSet | None, task_index: int | None) -> torch.Tensor:
    w = bundle.weights[source]
    if lora is not None and task_index is not None and (m := lora.modules.get(_module(source))) is not None:
        w = (w.double() + m.delta(task_index).double()).float()
    return w


def write_model(bundle: Bundle, path: Path, spec: ModelSpec, gguf_type: str, *, task: str | None) -> None:
    """One GGUF model file; with `task`, that task's adapter is folded into each tensor as it is written."""
    from embcc.export.gguf_vocab import pad_vocab, read_vocab

    table = table_of(bundle)
    entries = plan(bundle, table)
    vocab = read_vocab(bundle.path, table.tokenizer)
    embd = next((s[0] for n, s in entries if n == "token_embd.weight"), None)
    if embd is not None:
        pad_vocab(vocab, bundle.weights[embd].shape[0])
    t_index = bundle.lora.index(task) if task is not None and bundle.lora is not None else None
    file_type = gguf_type if gguf_type in PY_TYPES else "f32"
    infos = []
    for name, sources in entries:
        shapes = [tuple(bundle.weights[s].shape) for s in sources]
        shape = (sum(s[0] for s in shapes), *shapes[0][1:])
        infos.append((name, shape, tensor_type(name, shape, file_type)))
    n_types = next((bundle.weights[s[0]].shape[0] for n, s in entries if n == "token_types.weight"), 0)

    def produce() -> Iterator[np.ndarray]:
        for (_, sources), (_, _, qtype) in zip(entries, infos):
            parts = [_source_tensor(bundle, s, bundle.lora, t_index) for s in sources]
            yield _to_numpy(parts[0] if len(parts) == 1 else torch.cat(parts, 0), qtype)

    _stream(path, table.arch, lambda w: _write_metadata(w, table, bundle, spec, file_type, vocab, n_types),
            infos, produce())
    if gguf_type in LLAMA_TYPES:
        _llama_quantize(path, gguf_type)


def _llama_quantize(path: Path, gguf_type: str) -> None:
    """K-quants through llama.cpp's own quantizer (an F32 file in, the quantized file out, in place)."""
    from embcc.runtimes.llamacpp import quantize

    src = path.with_suffix(".f32.gguf")
    os.replace(path, src)
    try:
        quantize(src, path, gguf_type, max(1, torch.get_num_threads()))
    finally:
        src.unlink()


# ---- adapters (keep) ----------------------------------------------------------------------------------------


def _factors(mods: list[LoraWeights], t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A [r, in], B [out, r]) of one GGUF tensor built from the adapters of its sources (concatenated rows)."""
    if len(mods) == 1:
        return mods[0].A[t].float(), mods[0].B[t].float()
    a0 = mods[0].A[t]
    if all(torch.equal(m.A[t], a0) for m in mods):  # fused q,k,v sharing one A (Jina's original Wqkv adapter)
        return a0.float(), torch.cat([m.B[t] for m in mods], 0).float()
    return torch.cat([m.A[t] for m in mods], 0).float(), torch.block_diag(*[m.B[t] for m in mods]).float()


def adapter_tensors(bundle: Bundle, table: GgufTable, t: int) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """GGUF tensor name -> (lora_a, lora_b with scaling folded in, rank), in llama.cpp's layouts."""
    lora = bundle.lora
    assert lora is not None
    entries = plan(bundle, table)
    covered = set()
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    kinds: dict[str, str] = {}
    for name, sources in entries:
        mods = [lora.modules.get(_module(s)) for s in sources]
        if all(m is None for m in mods):
            continue
        if any(m is None for m in mods) or len({m.kind for m in mods}) != 1:
            raise EmbccError(f"GGUF tensor {name} fuses adapted and unadapted weights", "fix the family's GGUF table")
        covered |= {_module(s) for s in sources}
        if mods[0].kind == "embedding":  # delta = A [vocab, r] @ B [r, dim]
            if any(s in table.fold_row0_adapters for s in sources):
                continue
            out[name] = (mods[0].A[t].float(), mods[0].B[t].float())
        else:
            out[name] = _factors(mods, t)
        kinds[name] = mods[0].kind
    for source, target in table.fold_row0_adapters.items():
        m = lora.modules.get(_module(source))
        if m is None:
            continue
        covered.add(_module(source))
        if target not in out:
            raise EmbccError(f"{source}'s adapter folds into {target}, which has no adapter", "fix the family's GGUF table")
        row0 = m.delta(t)[0]  # added to every token by llama.cpp's graph
        a, b = out[target]
        out[target] = (torch.cat([a, torch.ones(a.shape[0], 1)], 1), torch.cat([b, row0[None]], 0))
    left = sorted(set(lora.modules) - covered)
    if left:
        raise EmbccError(f"adapter on {left[0]} has no GGUF mapping in {bundle.spec.family}'s table", "fix the family's GGUF table")
    result = {}
    for name, (a, b) in out.items():
        if kinds[name] == "embedding":  # llama.cpp: lora_a [vocab, r] gathered by token, lora_b [dim, r]
            result[name] = (a.numpy(), b.T.contiguous().numpy(), a.shape[1])
        else:  # lora_a [r, in], lora_b [out, r]
            result[name] = (a.contiguous().numpy(), b.contiguous().numpy(), a.shape[0])
    return result


def lora_alpha(bundle: Bundle) -> float:
    """The adapters' alpha as published (config.json, else the first PEFT adapter_config.json)."""
    if bundle.config.get("lora_alpha") is not None:
        return float(bundle.config["lora_alpha"])
    for f in sorted(bundle.path.glob("*/adapter_config.json")):
        return float(json.loads(f.read_text()).get("lora_alpha", 1.0))
    return float(bundle.lora.rank()) if bundle.lora else 1.0


def write_adapter(bundle: Bundle, path: Path, task: str) -> None:
    import gguf

    table = table_of(bundle)
    lora = bundle.lora
    assert lora is not None
    t = lora.index(task)
    alpha = lora_alpha(bundle)
    tensors = adapter_tensors(bundle, table, t)
    prefix = next((x.prefix for x in bundle.spec.tasks if x.name == task), "")
    w = gguf.GGUFWriter(str(path), table.arch)
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    w.add_string(gguf.Keys.Adapter.LORA_TASK_NAME, task)
    w.add_string(gguf.Keys.Adapter.LORA_PROMPT_PREFIX, prefix)
    for name, (a, b, rank) in tensors.items():
        w.add_tensor(f"{name}.lora_a", np.ascontiguousarray(a, dtype=np.float32))
        w.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b * (rank / alpha), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ---- one artifact ---------------------------------------------------------------------------------------------


def export_gguf(bundle: Bundle, where: Path, spec: ModelSpec, gguf_type: str, *, tasks: list[str]) -> list[Path]:
    """Write the GGUF file(s) of one artifact directory and prove that llama.cpp loads them."""
    from embcc.runtimes.llamacpp import load_check

    model = where / MODEL_FILE
    write_model(bundle, model, spec, gguf_type, task=spec.task if spec.lora == "merge" else None)
    adapters = []
    if spec.lora == "keep":
        for task in tasks:
            adapters.append(where / adapter_file(task))
            write_adapter(bundle, adapters[-1], task)
    load_check(model, adapters)
    return [model, *adapters]

