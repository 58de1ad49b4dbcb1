"""GGUF for llama.cpp: metadata written explicitly, tensors streamed one at a time, every file run once.

- merge / no adapters: one self-contained `model.gguf` (the task's adapter folded into each tensor as it is
  written);
- keep: the base `model.gguf` plus `lora-<task>.gguf` per task in llama.cpp's adapter convention
  (general.type=adapter, adapter.type=lora, adapter.lora.alpha/task_name/prompt_prefix, F32 tensors).
  llama.cpp scales every adapter by alpha / rank of that tensor, so each lora_b is written pre-multiplied by
  rank / alpha (the rank of token_embd's adapter is one larger: see gguf_tensors.FOLD_ROW0).
- Types the `gguf` package writes itself (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1) are written in Python;
  K-quants go through llama.cpp's own quantizer on an F32 file (in a child process).
Tensors are produced and written one at a time (header first, then data), so peak memory stays near the
loaded checkpoint plus one tensor. The written files are loaded and run by llama.cpp in a child process.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embcc.core.adapted import Adapted
from embcc.core.bundle import Bundle
from embcc.core.errors import EmbccError
from embcc.core.gguf_facts import GgufFacts
from embcc.core.spec import ModelSpec
from embcc.core.weights import shape_of
from embcc.export.base import Format, Option, Plan
from embcc.export.gguf_tensors import (
    GGUF_TYPES,
    LLAMA_TYPES,
    PY_TYPES,
    adapter_tensors,
    facts_of,
    hparams,
    produce,
    tensor_plan,
    tensor_type,
    to_numpy,
)
from embcc.runtimes.llamacpp import MODEL_FILE, adapter_file

POOLING = {"none": 0, "mean": 1, "cls": 2, "last": 3}
SPECIAL_KEYS = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id",
                "seperator": "seperator_token_id", "padding": "padding_token_id", "cls": "cls_token_id",
                "mask": "mask_token_id"}
TYPE = Option("gguf_type", "--type", "llama.cpp's type name, any case (default f32)", tuple(GGUF_TYPES),
              type=str.lower)  # type: ignore[arg-type]  # the CLI takes Q8_0 as q8_0, as check_type does


def check_type(gguf_type: str) -> str:
    t = gguf_type.lower()
    if t not in GGUF_TYPES:
        raise EmbccError(f"GGUF type {gguf_type!r} is not one embcc can write for these encoders",
                         f"choose one of: {', '.join(GGUF_TYPES)}")
    return t


# ---- writing ------------------------------------------------------------------------------------------------


def _write_metadata(w, facts: GgufFacts, bundle: Bundle, spec: ModelSpec, gguf_type: str, vocab, n_types: int) -> None:
    import gguf

    arch = facts.arch
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(f"{bundle.path.name}" + (f" ({spec.task})" if spec.task else ""))
    ftype = gguf.LlamaFileType.ALL_F32 if gguf_type == "f32" else gguf.LlamaFileType[f"MOSTLY_{gguf_type.upper()}"]
    w.add_file_type(int(ftype))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for key, value in hparams(facts, bundle.config).items():
        full = f"{arch}.{key}"
        if isinstance(value, bool):
            w.add_bool(full, value)
        elif isinstance(value, list | tuple):  # e.g. qwen2vl's rope.dimension_sections (int32 array)
            w.add_array(full, [int(v) for v in value])
        elif isinstance(value, float):
            w.add_float32(full, value)
        else:
            w.add_uint32(full, int(value))
    w.add_context_length(spec.max_length)
    w.add_causal_attention(facts.causal)
    w.add_pooling_type(gguf.PoolingType(POOLING[spec.pooling]))
    if spec.position in ("rope", "mrope"):
        w.add_rope_freq_base(float(spec.rope_theta))
    write_vocab(w, vocab, facts.pre_tokenizer, n_types)


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
            data: Iterator[np.ndarray]) -> None:
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
    for array in data:
        w.write_tensor_data(array)
    w.close()


def write_model(adapted: Adapted, path: Path, spec: ModelSpec, gguf_type: str) -> None:
    """One GGUF model file; a merged task's adapter is folded into each tensor as it is written."""
    from embcc.export.gguf_vocab import pad_vocab, read_vocab

    bundle = adapted.bundle
    facts = facts_of(bundle)
    entries = tensor_plan(bundle, facts)
    vocab = read_vocab(bundle.path, facts.tokenizer)
    embd = next((s[0] for n, s in entries if n == "token_embd.weight"), None)
    if embd is not None:
        pad_vocab(vocab, shape_of(bundle.weights, embd)[0])
    file_type = gguf_type if gguf_type in PY_TYPES else "f32"
    infos = []
    for name, sources in entries:
        shapes = [tuple(shape_of(bundle.weights, s)) for s in sources]  # shapes only: no tensor is read yet
        shape = (sum(s[0] for s in shapes), *shapes[0][1:])
        infos.append((name, shape, tensor_type(name, shape, file_type)))
    n_types = next((shape_of(bundle.weights, s[0])[0] for n, s in entries if n == "token_types.weight"), 0)
    data = (to_numpy(produce(adapted, sources), qtype) for (_, sources), (_, _, qtype) in zip(entries, infos))
    _stream(path, facts.arch, lambda w: _write_metadata(w, facts, bundle, spec, file_type, vocab, n_types),
            infos, data)
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


def lora_alpha(bundle: Bundle) -> float:
    """The adapters' alpha as published (config.json, else the first PEFT adapter_config.json)."""
    if bundle.config.get("lora_alpha") is not None:
        return float(bundle.config["lora_alpha"])
    for f in sorted(bundle.path.glob("*/adapter_config.json")):
        return float(json.loads(f.read_text()).get("lora_alpha", 1.0))
    return float(bundle.lora.rank()) if bundle.lora else 1.0


def write_adapter(bundle: Bundle, path: Path, task: str) -> None:
    import gguf

    facts = facts_of(bundle)
    lora = bundle.lora
    assert lora is not None
    alpha = lora_alpha(bundle)
    tensors = adapter_tensors(bundle, facts, lora.index(task))
    prefix = next((x.prefix for x in bundle.spec.tasks if x.name == task), "")
    w = gguf.GGUFWriter(str(path), facts.arch)
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


class GgufFormat(Format):
    name = "gguf"
    options = (TYPE,)
    keep_takes_tasks = True  # keep writes one adapter file per task asked for

    def supports(self, bundle: Bundle) -> None:
        facts_of(bundle)

    def parts(self, bundle: Bundle) -> tuple[str, ...]:
        return ("text",)  # llama.cpp embeds text; image towers have no upstream llama.cpp graph

    def part_refusal(self, bundle: Bundle, part: str, cli: bool = True) -> tuple[str, str]:
        why = facts_of(bundle).unsupported_parts.get(part, f"llama.cpp has no {bundle.spec.family} {part} graph")
        onnx, text = ("--format onnx", "--format gguf --part text") if cli else ("fmt='onnx'", "fmt='gguf', part='text'")
        return (f"a {bundle.spec.family} {part} GGUF cannot be written: {why}",
                f"export the {part} part with {onnx}, and the text tower with {text}")

    def check(self, bundle: Bundle, values: dict[str, Any], *, cli: bool) -> dict[str, Any]:
        return {"gguf_type": check_type(values.get("gguf_type") or "f32")}

    def recorded(self, plan: Plan) -> dict[str, Any]:
        return {"precision": plan.values["gguf_type"]}

    def write(self, adapted: Adapted, where: Path, plan: Plan) -> ModelSpec:
        from embcc.runtimes.llamacpp import load_check

        gguf_type = plan.values["gguf_type"]
        # GGUF files are text-only, single-vector (a multi-vector projector stays out, as in Jina's GGUFs)
        spec = dataclasses.replace(adapted.spec, precision=gguf_type, multi_vector_dim=None)
        if spec.lora == "keep":  # one adapter file per task asked for; the artifact offers exactly those
            spec = dataclasses.replace(spec, tasks=[t for t in spec.tasks if t.name in plan.tasks])
        write_model(adapted, where / MODEL_FILE, spec, gguf_type)
        adapters = []
        if spec.lora == "keep":
            for task in plan.tasks:
                adapters.append(where / adapter_file(task))
                write_adapter(adapted.bundle, adapters[-1], task)
        load_check(where / MODEL_FILE, adapters)
        return spec
