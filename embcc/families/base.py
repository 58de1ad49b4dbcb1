"""What every model family declares (the Bundle a loader returns is embcc.core.bundle's).

A family is the only code that knows a model: how to recognise and load its published layouts, its tasks and
prefixes, pooling, position scheme, LoRA targets. Random-weight fixtures are written by embcc.fixtures.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import torch
from safetensors import safe_open

from embcc.core.bundle import Bundle
from embcc.core.contract import GraphContract
from embcc.core.errors import EmbccError
from embcc.core.files import hash_tree
from embcc.core.gguf_facts import GgufFacts
from embcc.core.spec import ModelSpec

WEIGHT_FILE = "model.safetensors"
WEIGHT_INDEX = "model.safetensors.index.json"
UNSAFE_WEIGHTS = ("pytorch_model.bin", "model.bin", "pytorch_model.bin.index.json", "model.pt", "model.ckpt")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "sentencepiece.bpe.model",
    "merges.txt",
    "vocab.json",
)


class Family(ABC):
    """One model family. Subclasses are registered in embcc.families.FAMILIES."""

    name: ClassVar[str]
    layouts: ClassVar[tuple[str, ...]] = ()
    own_parts: ClassVar[tuple[str, ...]] = ()  # parts whose module the family builds itself (even text)
    gguf: ClassVar[GgufFacts | None] = None  # llama.cpp architecture, names gguf-py lacks (None: no GGUF)

    def gguf_facts(self, bundle: Bundle) -> GgufFacts | None:
        """The llama.cpp facts for one checkpoint (a family with several backbones picks by the bundle)."""
        return self.gguf

    def parts(self, bundle: Bundle) -> tuple[str, ...]:
        """The parts of this model an artifact can hold: text only, or also an image tower and a combined graph."""
        return ("text",)

    def part_spec(self, bundle: Bundle, part: str) -> ModelSpec:
        """The ModelSpec of a part other than text."""
        raise EmbccError(f"{self.name} has no {part} part", f"choose one of: {', '.join(self.parts(bundle))}")

    def part_module(self, adapted, part: str) -> tuple[torch.nn.Module, GraphContract]:
        """The torch module and graph contract of a part other than text (the text part is export.graph's)."""
        raise EmbccError(f"{self.name} has no {part} part", f"choose one of: {', '.join(self.parts(adapted.bundle))}")

    def attention(self, bundle: Bundle, part: str) -> dict | None:
        """How this model's attention fuses into ONNX Runtime's tiled kernels (embcc.export.attention's
        options: kind mha | gqa | bias, heads, kv_heads, head_dim, causal), or None to keep the standard ops."""
        return None

    @classmethod
    @abstractmethod
    def detect(cls, config: dict, path: Path) -> bool:
        """True when the checkpoint at `path` (with its parsed config.json) belongs to this family."""

    @abstractmethod
    def load(self, path: Path) -> Bundle:
        """Read a published checkpoint directory; errors are EmbccError with one line each."""

    @abstractmethod
    def backbone(
        self, bundle: Bundle, weights: dict[str, torch.Tensor], rope_theta: float | None = None
    ) -> torch.nn.Module:
        """The float32 reference module holding `weights`: forward(input_ids, attention_mask) -> states [B, L, H]."""


# ---- helpers shared by the family loaders -------------------------------------------------------------------


def read_config(path: Path) -> dict:
    cfg = path / "config.json"
    if not path.is_dir():
        raise EmbccError(f"checkpoint {path} is not a directory", "pass the directory holding config.json")
    if not cfg.is_file():
        raise EmbccError(f"{path} has no config.json", "pass a checkpoint directory as Jina publishes it")
    try:
        return json.loads(cfg.read_text())
    except json.JSONDecodeError as e:
        raise EmbccError(f"{cfg} is not valid JSON ({e.msg} at line {e.lineno})", "repair or re-download it") from e


def weight_files(path: Path, stem: str = "model") -> list[Path]:
    """The safetensors files of a checkpoint (single or sharded). Pickle-based weights are refused."""
    single, index = path / f"{stem}.safetensors", path / f"{stem}.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise EmbccError(f"{path} lacks weight shard {missing[0]}", "copy every shard named in the index")
        return [path / s for s in shards]
    for name in UNSAFE_WEIGHTS:
        if (path / name).exists():
            raise EmbccError(
                f"{path / name} is not a safetensors file; embcc never unpickles checkpoint files",
                "convert the weights to model.safetensors (safetensors.torch.save_file) and retry",
            )
    raise EmbccError(f"{path} has no {stem}.safetensors", "pass a checkpoint directory with safetensors weights")


def read_safetensors(files: list[Path]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as sf:
                for k in sf.keys():
                    out[k] = sf.get_tensor(k)
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise EmbccError(f"{f} is not a readable safetensors file ({e})", "re-download or re-convert it") from e
    return out


def hash_checkpoint(path: Path) -> str:
    """sha256 over every regular file of the checkpoint (names and bytes), independent of walk order."""
    return hash_tree(path)


def tokenizer_files(path: Path) -> list[Path]:
    files = [path / n for n in TOKENIZER_FILES if (path / n).is_file()]
    if not (path / "tokenizer.json").is_file():
        raise EmbccError(f"{path} has no tokenizer.json", "copy the tokenizer files published with the model")
    return files


def check_tensors(
    got: dict[str, torch.Tensor], want: dict[str, torch.Size], *, ignored: tuple[str, ...], where: Path
) -> dict[str, torch.Tensor]:
    """Match a renamed state dict against the reference model's names and shapes.

    Tensors whose name starts with one of `ignored` (pooler, MLM heads ...) are dropped; anything else that the
    model does not have is an error, as is a missing tensor or a shape mismatch.
    """
    kept = {k: v for k, v in got.items() if not k.startswith(ignored)}
    missing = sorted(set(want) - set(kept))
    if missing:
        raise EmbccError(f"{where} is missing tensor {missing[0]} ({len(missing)} missing)", "the checkpoint is incomplete or of another model; re-download it")
    extra = sorted(set(kept) - set(want))
    if extra:
        raise EmbccError(f"{where} has unexpected tensor {extra[0]} ({len(extra)} unexpected)", "this layout is not one embcc knows; check the model id")
    for k, shape in want.items():
        if tuple(kept[k].shape) != tuple(shape):
            raise EmbccError(
                f"{where}: tensor {k} has shape {list(kept[k].shape)} but config.json implies {list(shape)}",
                "the weights do not belong to this config.json",
            )
    return {k: v.float() for k, v in kept.items()}
