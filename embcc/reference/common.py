"""What every reference does the same way, read from the checkpoint's own files.

Prompts, pooling and normalisation come from the checkpoint (config.json, config_sentence_transformers.json,
modules.json + the Pooling module's config.json); tokenisation is transformers' PreTrainedTokenizerFast over the
checkpoint's tokenizer.json, truncating at `max_length` with the special tokens kept, as HF does. Batches are
sorted by length (as sentence-transformers does) and right-padded; output order is the input order.

Nothing here imports from embcc's export path: only embcc.core.errors.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embcc.core.errors import EmbccError

# batch x longest^2 bound on one batch: the attention scores a batch materialises stay a few GB at most
ATTENTION_BUDGET = 2 * 4096 * 4096


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EmbccError(f"{path} is missing", "pass a complete checkpoint directory") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EmbccError(f"{path} is not valid JSON ({e})", "repair or re-download it") from e


def read_optional_json(path: Path) -> Any | None:
    return read_json(path) if path.is_file() else None


def weight_files(ckpt: Path) -> list[Path]:
    """The checkpoint's safetensors files (one, or the shards its index names); never a pickle."""
    index = ckpt / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set((read_json(index).get("weight_map") or {}).values()))
        files = [ckpt / n for n in names]
    else:
        files = [ckpt / "model.safetensors"] if (ckpt / "model.safetensors").is_file() else []
    if not files or not all(f.is_file() for f in files):
        raise EmbccError(f"{ckpt} has no model.safetensors (or a shard its index names is missing)",
                         "download the safetensors weights; pickled .bin weights are never loaded")
    return files


def tensor_names(ckpt: Path) -> list[str]:
    from safetensors import safe_open

    names: list[str] = []
    for f in weight_files(ckpt):
        with safe_open(str(f), framework="pt") as h:
            names += list(h.keys())
    return names


# ---- pooling and normalisation (sentence-transformers' files) ------------------------------------------------

_POOLING_MODES = {  # 1_Pooling/config.json flag -> our name
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_lasttoken": "last",
    "pooling_mode_max_tokens": "max",
}
_UNSUPPORTED_MODES = ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens")


@dataclass(frozen=True)
class Pooling:
    mode: str  # mean | cls | last | max
    normalize_module: bool  # modules.json names a Normalize step (the reference L2-normalises either way)
    source: str  # where the choice came from, for describe()


def read_pooling(ckpt: Path, default: str) -> Pooling:
    """Pooling from modules.json + the Pooling module's config.json; the family's documented pooling otherwise."""
    modules = read_optional_json(ckpt / "modules.json")
    if not isinstance(modules, list):
        return Pooling(default, True, f"{default} (no modules.json: the family's documented pooling)")
    normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules if isinstance(m, dict))
    pool = [m for m in modules if isinstance(m, dict) and str(m.get("type", "")).endswith("Pooling")]
    if not pool:
        return Pooling(default, normalize, f"{default} (modules.json has no Pooling module: the family's pooling)")
    folder = ckpt / str(pool[0].get("path") or "")
    cfg = read_optional_json(folder / "config.json")
    if not isinstance(cfg, dict):
        return Pooling(default, normalize, f"{default} ({folder.name}/config.json missing: the family's pooling)")
    on = [name for flag, name in _POOLING_MODES.items() if cfg.get(flag)]
    odd = [flag for flag in _UNSUPPORTED_MODES if cfg.get(flag)]
    if odd or len(on) != 1:
        raise EmbccError(f"{folder}/config.json asks for pooling {odd or on or 'none'}, which the reference does not run",
                         "use the checkpoint's published pooling config (one of mean, cls, last token, max)")
    if cfg.get("include_prompt", True) is False:
        raise EmbccError(f"{folder}/config.json excludes the prompt from pooling (include_prompt false)",
                         "use the checkpoint's published pooling config (Jina's include the prompt)")
    where = f"{pool[0].get('path') or '.'}/config.json"
    return Pooling(on[0], normalize, f"{on[0]} ({where}{', then Normalize' if normalize else ''})")


def pool(states: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Sentence vectors [B, H] in float64 from token states [B, L, H] and a right-padded 0/1 mask [B, L]."""
    states = states.to(torch.float64)
    m = mask.to(torch.float64)[..., None]
    if mode == "mean":
        return (states * m).sum(1) / m.sum(1).clamp(min=1e-9)
    if mode == "cls":
        return states[:, 0]
    if mode == "last":  # right padding: the last real token (the EOS the tokenizer appends)
        return states[torch.arange(states.shape[0]), mask.sum(1).long() - 1]
    if mode == "max":
        return states.masked_fill(m == 0, float("-inf")).amax(1)
    raise ValueError(f"unknown pooling {mode!r}")


def l2(x: torch.Tensor) -> np.ndarray:
    x = x.to(torch.float64)
    return (x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)).numpy().astype(np.float32)


# ---- tokenisation ------------------------------------------------------------------------------------------


class Tokens:
    """The checkpoint's tokenizer.json through transformers' PreTrainedTokenizerFast (no remote code)."""

    def __init__(self, ckpt: Path, config: dict):
        from transformers import PreTrainedTokenizerFast

        if not (ckpt / "tokenizer.json").is_file():
            raise EmbccError(f"{ckpt}/tokenizer.json is missing", "copy the tokenizer files published with the model")
        self.tok = PreTrainedTokenizerFast.from_pretrained(str(ckpt))
        pad = self.tok.pad_token_id
        self.pad_id = int(pad if pad is not None else (config.get("pad_token_id") or 0))

    def ids(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        if max_length < 2:
            raise EmbccError(f"max_length {max_length} leaves no room for the special tokens", "pass max_length >= 2")
        out = self.tok(list(texts), truncation=True, max_length=max_length, add_special_tokens=True,
                       padding=False, return_attention_mask=False)
        return [list(r) for r in out["input_ids"]]

    def describe(self) -> str:
        return "transformers PreTrainedTokenizerFast over the checkpoint's tokenizer.json (special tokens kept when truncating)"


def length_batches(ids: list[list[int]], batch_size: int, pad_id: int
                   ) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """(indices, right-padded input_ids [B, L], 0/1 mask [B, L]) over the texts sorted longest first."""
    if batch_size < 1:
        raise EmbccError(f"batch_size {batch_size} is not positive", "pass batch_size >= 1")
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    start = 0
    while start < len(order):
        longest = max(1, len(ids[order[start]]))
        take = max(1, min(batch_size, ATTENTION_BUDGET // (longest * longest)))
        group = order[start : start + take]
        start += take
        width = max(len(ids[i]) for i in group)
        input_ids = torch.full((len(group), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, i in enumerate(group):
            input_ids[row, : len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
            mask[row, : len(ids[i])] = 1
        yield group, input_ids, mask


# ---- a scratch directory outside the checkpoint ---------------------------------------------------------------


class Scratch:
    """A temporary directory (never inside the checkpoint), removed by close(), on error, and at exit."""

    def __init__(self, prefix: str = "embcc-reference-"):
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.path), True)

    def close(self) -> None:
        self._finalizer()


def versions() -> dict[str, str]:
    import peft
    import transformers

    return {"transformers": transformers.__version__, "peft": peft.__version__, "torch": torch.__version__}


# ---- loading through transformers and PEFT, refusing what they would only warn about ---------------------------


@contextmanager
def quiet_progress() -> Iterator[None]:
    """No per-load progress bar from transformers (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def from_pretrained(model_class: type, path: Path, cfg: Any, ckpt: Path,
                    ignore_missing: tuple[str, ...] = ()) -> tuple[torch.nn.Module, list[str]]:
    """`model_class.from_pretrained(path, config=cfg)` in float32 with SDPA; (model, unexpected keys).

    transformers fills missing weights with random values and only warns: the reference refuses instead.
    """
    try:
        with quiet_progress():
            model, info = model_class.from_pretrained(str(path), config=cfg, attn_implementation="sdpa",
                                                      dtype=torch.float32, output_loading_info=True)
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EmbccError(f"transformers could not load {ckpt} as {model_class.__name__} ({first})",
                         "the weights do not match config.json or the published layout; re-download the checkpoint") from e
    missing = sorted(k for k in info.get("missing_keys") or [] if not k.startswith(ignore_missing))
    mismatched = [str(m) for m in info.get("mismatched_keys") or []]
    if missing or mismatched:
        what = ", ".join((missing or mismatched)[:3])
        raise EmbccError(f"{ckpt}: transformers could not fill {len(missing) + len(mismatched)} weights of "
                         f"{model_class.__name__} ({what})",
                         "the weights do not match config.json or the published layout; re-download the checkpoint")
    return model.eval(), sorted(info.get("unexpected_keys") or [])


def load_peft(model: torch.nn.Module, folders: dict[str, Path], names: dict[str, str]) -> torch.nn.Module:
    """PeftModel.from_pretrained on the first task's folder, load_adapter for the rest; unmerged, eval.

    PEFT leaves an adapter module whose weights the file lacks at its initial value (lora_B = 0: a silent
    no-op) and skips file tensors for modules the model lacks, warning only: both are refused here.
    """
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict, load_peft_weights

    peft = None
    for task, folder in folders.items():
        try:
            if peft is None:
                peft = PeftModel.from_pretrained(model, str(folder), adapter_name=names[task])
            else:
                peft.load_adapter(str(folder), adapter_name=names[task])
            have = set(load_peft_weights(str(folder), device="cpu"))
        except (OSError, RuntimeError, ValueError, KeyError, TypeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EmbccError(f"PEFT could not load the adapter of task {task} from {folder} ({first})",
                             "the adapter belongs to another model or is corrupt; re-download it") from e
        want = set(get_peft_model_state_dict(peft, adapter_name=names[task], save_embedding_layers=False))
        missing, unexpected = sorted(want - have), sorted(have - want)
        if missing or unexpected:
            what = f"missing {missing[:2]}" if missing else f"for modules the model lacks {unexpected[:2]}"
            raise EmbccError(f"{folder}: adapter tensors {what}",
                             "the adapter belongs to another model or is incomplete; re-download it")
    assert peft is not None
    return peft.eval()
