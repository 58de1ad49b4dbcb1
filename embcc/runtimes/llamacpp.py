"""llama.cpp Embedder (llama-cpp-python) over an embcc GGUF artifact.

Everything llama.cpp does itself: tokenisation from the GGUF's own vocabulary, the forward pass, pooling by
the GGUF's pooling type, and for `--lora keep` the task's adapter (lora-<task>.gguf, selected per call with
llama_set_adapters_lora). What stays shared with the other runtimes: the task prefix, truncation to the
artifact's max_length (special tokens kept, as the HF tokenizer truncates), Matryoshka and L2 (base.Embedder).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from embcc.core.errors import EmbccError
from embcc.core.spec import ModelSpec
from embcc.runtimes.base import Embedder

MODEL_FILE = "model.gguf"  # an artifact's base model; kept adapters beside it as lora-<task>.gguf


def adapter_file(task: str) -> str:
    return f"lora-{task}.gguf"


def leading_space_differs(vocab_flags: dict[str, bool]) -> bool:
    """True when llama.cpp's Unigram normaliser adds one U+2581 too many before a text that starts with a space.

    With spaces kept (plain Precompiled normalizer), HF's Metaspace prepends U+2581 only when the normalised text
    does not start with one, while llama.cpp prepends it before the first non-space character. No GGUF key
    expresses HF's rule; the llama.cpp Embedder drops one leading space in exactly that case.
    """
    return vocab_flags.get("add_space_prefix", False) and not vocab_flags.get("remove_extra_whitespaces", True)


INSTALL_FIX = "reinstall with scripts/install, which builds llama.cpp for this CPU with AMX off (README: llama.cpp build)"
NATIVE_OK = "EMBCC_LLAMA_CPP_NATIVE"  # =1: accept a native build with AMX (on a host known to run AMX)
_checked = False


def _llama_cpp():
    global _checked
    try:
        import llama_cpp
    except ImportError as e:  # a hard dependency: a broken install is an error, never a skip
        raise EmbccError(f"llama-cpp-python is not importable ({e})", INSTALL_FIX) from e
    if not _checked:
        check_build(build_features(llama_cpp))
        _checked = True
    return llama_cpp


def build_features(llama_cpp) -> dict[str, str]:
    """The CPU features the installed llama.cpp was compiled for (llama_print_system_info's `CPU :` part)."""
    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    out: dict[str, str] = {}
    for part in info.split("|"):
        key, sep, value = part.rpartition(":")[2].partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


# llama.cpp's CPU feature names (llama_print_system_info) -> the /proc/cpuinfo flag each needs
CPU_FLAGS = {"SSE3": "pni", "SSSE3": "ssse3", "AVX": "avx", "AVX2": "avx2", "F16C": "f16c", "FMA": "fma",
             "BMI2": "bmi2", "AVX_VNNI": "avx_vnni", "AVX512": "avx512f", "AVX512_VBMI": "avx512vbmi",
             "AVX512_VNNI": "avx512_vnni", "AVX512_BF16": "avx512_bf16", "AMX_INT8": "amx_int8"}


def host_cpu_flags() -> set[str] | None:
    """This CPU's flags from /proc/cpuinfo (None where there is no such file)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def check_build(features: dict[str, str], host: set[str] | None = None) -> None:
    """Refuse a llama.cpp that cannot run here. AMX: on a host that reports AMX but whose hypervisor cannot run
    it, every quantized GGUF crashes at the first decode (ggml_backend_amx_mul_mat; ggml-org/llama.cpp#20824).
    A feature this CPU lacks: SIGILL. pip compiles llama-cpp-python with GGML_NATIVE=ON and caches the wheel, so
    such a build can arrive from an earlier install, or from another host."""
    on = sorted(k for k, v in features.items() if v == "1")
    amx = [k for k in on if k.startswith("AMX")]
    if amx and os.environ.get(NATIVE_OK) != "1":
        raise EmbccError(
            f"the installed llama-cpp-python was compiled natively with {amx[0]}, which crashes quantized GGUF "
            "files on hosts whose hypervisor cannot run AMX",
            f"{INSTALL_FIX}; or set {NATIVE_OK}=1 on a host where AMX is known to run")
    host = host_cpu_flags() if host is None else host
    if host:
        lacking = [k for k in on if k in CPU_FLAGS and not k.startswith("AMX") and CPU_FLAGS[k] not in host]
        if lacking:
            raise EmbccError(f"the installed llama-cpp-python was compiled for {lacking[0]}, which this CPU lacks "
                             "(llama.cpp would die with SIGILL)", INSTALL_FIX)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence llama.cpp's own logging (it writes to the C stderr) for the duration."""
    from llama_cpp._utils import suppress_stdout_stderr

    with suppress_stdout_stderr(disable=False):
        yield


def _open(model: Path, *, n_ctx: int, threads: int | None, exact: bool = False):
    """exact (f32 artifacts): attention in f32. llama.cpp's flash attention casts K and V to F16 when there is no
    KV cache (bidirectional encoders such as eurobert), and a causal model's KV cache is F16 by default; both
    cost about 2e-4 on the pooled vector, more than the f32 bar allows."""
    llama_cpp = _llama_cpp()
    kv = {"type_k": llama_cpp.GGML_TYPE_F32, "type_v": llama_cpp.GGML_TYPE_F32} if exact else {}
    try:
        with quiet():
            return llama_cpp.Llama(
                model_path=str(model), embedding=True, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                n_threads=threads, n_threads_batch=threads, flash_attn=not exact, verbose=False, **kv,
            )
    except (ValueError, RuntimeError) as e:
        raise EmbccError(f"llama.cpp refuses to load {model.name} ({e})", "the GGUF is not one llama.cpp can run") from e


def _adapter(llm, path: Path):
    llama_cpp = _llama_cpp()
    with quiet():
        handle = llama_cpp.llama_adapter_lora_init(llm._model.model, str(path).encode())
    if not handle:
        raise EmbccError(f"llama.cpp refuses to load adapter {path.name}", "the adapter does not fit the base GGUF")
    return handle


def load_check(model: Path, adapters: list[Path]) -> None:
    """Load a written GGUF (and its adapters) in llama.cpp and decode one text, in a child process: a file
    llama.cpp refuses is a failed export, and a file that crashes it cannot take embcc down."""
    from embcc.runtimes.native import run_child

    run_child("gguf-load-check", {"model": str(model), "adapters": [str(a) for a in adapters]},
              what=f"loading {Path(model).name}", timeout=1800)


def run_load_check(model: Path, adapters: list[Path]) -> None:
    """The load check itself (runs in the child)."""
    llama_cpp = _llama_cpp()
    llm = _open(model, n_ctx=64, threads=1)
    try:
        for a in adapters:
            llama_cpp.llama_adapter_lora_free(_adapter(llm, a))
        ids = llm.tokenize(b"hello world", add_bos=True, special=False)
        with quiet():
            llm._ctx.decode(_batch_of(llm, [ids]))
    except RuntimeError as e:
        raise EmbccError(f"llama.cpp cannot run {model.name} ({e})", "the GGUF is not one llama.cpp can run") from e
    finally:
        llm.close()


def quantize(src: Path, dst: Path, gguf_type: str, threads: int) -> None:
    """llama.cpp's own quantizer (K-quants), in a child process."""
    from embcc.runtimes.native import run_child

    run_child("gguf-quantize", {"src": str(src), "dst": str(dst), "type": gguf_type, "threads": threads},
              what=f"quantizing {Path(dst).name} to {gguf_type}", timeout=3600)


def run_quantize(src: Path, dst: Path, gguf_type: str, threads: int) -> None:
    llama_cpp = _llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{gguf_type.upper()}")
    params.nthread = max(1, threads)
    with quiet():
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise EmbccError(f"llama.cpp's quantizer failed to write {gguf_type} (code {rc})", "choose another --type")


def _batch_of(llm, seqs: list[list[int]]):
    batch = llm._batch
    batch.reset()
    for i, ids in enumerate(seqs):
        batch.add_sequence(ids, i, True)
    return batch


class LlamaCppEmbedder(Embedder):
    runtime = "llama.cpp"

    def __init__(self, artifact: Path, *, threads: int | None = None, max_length: int | None = None):
        artifact = Path(artifact)
        spec = ModelSpec.read(artifact)
        super().__init__(spec, artifact / "tokenizer.json", max_length)
        path = artifact / MODEL_FILE
        if not path.is_file():
            raise EmbccError(f"{artifact} has no {MODEL_FILE}", "export it with --format gguf")
        import torch

        self.threads = threads or torch.get_num_threads()
        self.n_ctx = max(64, self.max_length)
        self.llm = _open(path, n_ctx=self.n_ctx, threads=self.threads, exact=spec.precision == "f32")
        self.n_seq_max = int(self.llm.context_params.n_seq_max)
        self.adapters: dict[int, object] = {}
        if spec.lora == "keep":
            for t in spec.tasks:
                f = artifact / adapter_file(t.name)
                if not f.is_file():
                    raise EmbccError(f"{artifact} lacks adapter {f.name}", "export it again with --lora keep")
                self.adapters[t.id] = _adapter(self.llm, f)
        self._active: int | None = None
        meta = self.llm.metadata
        flags = {k.removeprefix("tokenizer.ggml."): v == "true" for k, v in meta.items()
                 if k in ("tokenizer.ggml.add_space_prefix", "tokenizer.ggml.remove_extra_whitespaces")}
        self.fix_leading_space = leading_space_differs(flags)
        # llama.cpp's byte-level BPE applies no normalizer; the HF tokenizer may run NFC (Qwen2's does): apply it here
        self.bpe_normalizer = self.tokenizer.normalizer if meta.get("tokenizer.ggml.model") == "gpt2" else None
        with_specials = self.llm.tokenize(b"a", add_bos=True, special=False)
        plain = self.llm.tokenize(b"a", add_bos=False, special=False)
        i = next(i for i in range(len(with_specials)) if with_specials[i : i + len(plain)] == plain)
        self.before, self.after = with_specials[:i], with_specials[i + len(plain):]

    def close(self) -> None:
        llama_cpp = _llama_cpp()
        for handle in self.adapters.values():
            llama_cpp.llama_adapter_lora_free(handle)
        self.adapters = {}
        self.llm.close()

    def llama_tokens(self, text: str) -> list[int]:
        """llama.cpp's own token ids for one text, special tokens included, truncated like the HF tokenizer."""
        if self.fix_leading_space and text and self._starts_with_space(text):
            text = text[1:]
        if self.bpe_normalizer is not None:
            text = self.bpe_normalizer.normalize_str(text)
        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) if text else []
        keep = self.max_length - len(self.before) - len(self.after)
        return self.before + ids[:keep] + self.after

    def _starts_with_space(self, text: str) -> bool:
        """The first character normalises to one space and the text is not all spaces (see leading_space_differs)."""
        norm = self.tokenizer.normalizer
        if norm is None:
            return text[0] == " " and bool(text.strip(" "))
        return norm.normalize_str(text[0]) == " " and bool(norm.normalize_str(text).strip(" "))

    def token_ids(self, texts, task: str | None = None, role: str | None = None) -> list[list[int]]:
        full, _ = self.prefixed(texts, task, role)
        return [self.llama_tokens(t) for t in full]

    def _select(self, task_id: int | None) -> None:
        if not self.adapters or task_id == self._active:
            return
        llama_cpp = _llama_cpp()
        if task_id not in self.adapters:
            raise EmbccError("this artifact selects its adapter by task", "pass a task")
        arr = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self.adapters[task_id])
        scales = (ctypes.c_float * 1)(1.0)
        if llama_cpp.llama_set_adapters_lora(self.llm._ctx.ctx, arr, 1, scales):
            raise EmbccError("llama.cpp failed to select the task adapter", "export the artifact again")
        self._active = task_id

    def _embed(self, input_ids: np.ndarray, attention_mask: np.ndarray, task_id: int | None) -> np.ndarray:
        llama_cpp = _llama_cpp()
        self._select(task_id)
        seqs = [row[: int(m.sum())].tolist() for row, m in zip(input_ids, attention_mask)]
        out: list[np.ndarray] = []
        group: list[list[int]] = []

        def run() -> None:
            self.llm._ctx.kv_cache_clear()
            self.llm._ctx.decode(_batch_of(self.llm, group))
            n = self.llm.n_embd()
            for i in range(len(group)):
                ptr = llama_cpp.llama_get_embeddings_seq(self.llm._ctx.ctx, i)
                out.append(np.ctypeslib.as_array(ptr, shape=(n,)).astype(np.float64))

        for ids in seqs:
            if group and (sum(map(len, group)) + len(ids) > self.n_ctx or len(group) >= self.n_seq_max):
                run()
                group = []
            group.append(ids)
        if group:
            run()
        return np.stack(out)
