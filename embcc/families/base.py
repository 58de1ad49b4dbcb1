"""What every model family declares (the Bundle a loader returns is embcc.core.bundle's).

A family is the only code that knows a model: how to recognise and load its published layouts, its tasks and
prefixes, pooling, position scheme, LoRA targets. Random-weight fixtures are written by embcc.fixtures.
"""

from __future__ import annotations

import contextlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import ClassVar

import torch

from embcc.core.bundle import Bundle
from embcc.core.contract import GraphContract
from embcc.core.errors import EmbccError
from embcc.core.files import hash_tree
from embcc.core.gguf_facts import GgufFacts
from embcc.core.spec import ModelSpec
from embcc.core.weights import WEIGHT_DTYPES, LazyWeights, TensorRef, read_refs

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

    def client_config(self, bundle: Bundle, spec: ModelSpec) -> dict | None:
        """The config.json an artifact of this model carries for its clients (None: none). Its `model_type` must
        be one released transformers versions know and it names no remote code (no auto_map): clients parse it
        with AutoConfig (sentence-transformers/optimum) or read `hidden_size`, `num_hidden_layers`,
        `max_position_embeddings`, `architectures` (text-embeddings-inference). The artifact's RoPE base goes in."""
        return None

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
    """config.json of a checkpoint directory, as a dict; every way it can be unreadable is one EmbccError.

    Also refuses a checkpoint with a symlink that leads out of it (check_contained): nothing outside the
    checkpoint directory is read."""
    cfg = path / "config.json"
    if not path.is_dir():
        raise EmbccError(f"checkpoint {path} is not a directory", "pass the directory holding config.json")
    check_contained(path)
    if not cfg.is_file():
        raise EmbccError(f"{path} has no config.json", "pass a checkpoint directory as Jina publishes it")
    try:
        config = json.loads(cfg.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise EmbccError(f"{cfg} is not UTF-8 text (byte {e.start})", "repair or re-download it") from e
    except json.JSONDecodeError as e:
        raise EmbccError(f"{cfg} is not valid JSON ({e.msg} at line {e.lineno})", "repair or re-download it") from e
    except OSError as e:
        raise EmbccError(f"cannot read {cfg} ({e.strerror})", "check the file's permissions") from e
    if not isinstance(config, dict):
        raise EmbccError(f"{cfg} holds a JSON {type(config).__name__}, not an object",
                         "repair or re-download it (config.json is one JSON object of model settings)")
    check_config_values(config, cfg)
    return config


# config.json keys every family reads, and what their values must be (when present)
POSITIVE_INTS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "max_position_embeddings", "num_key_value_heads", "head_dim", "lora_rank", "model_max_length")
REQUIRED_SHAPE_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
NON_NEGATIVE_INTS = ("type_vocab_size", "pad_token_id", "bos_token_id", "eos_token_id")
POSITIVE_NUMBERS = ("layer_norm_eps", "rms_norm_eps", "rope_theta", "rotary_emb_base", "lora_alpha")
STRING_LISTS = ("lora_adaptations", "task_names", "architectures")


def check_config_values(config: dict, where: Path) -> None:
    """Refuse values of the wrong kind for the keys the loaders read (a string for hidden_size, a list where a
    mapping belongs ...), as one line naming the key, before a config class or a tensor shape trips on them."""

    def bad(key: str, want: str) -> EmbccError:
        return EmbccError(f"{where}: {key} is {json.dumps(config[key])[:60]}, not {want}", "repair or re-download it")

    def is_int(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    for k in POSITIVE_INTS:
        nullable = k not in REQUIRED_SHAPE_KEYS
        if k in config and not (nullable and config[k] is None) and not (is_int(config[k]) and config[k] > 0):
            raise bad(k, "a positive integer")
    for k in NON_NEGATIVE_INTS:
        if k in config and config[k] is not None and not (is_int(config[k]) and config[k] >= 0):
            raise bad(k, "a token id (an integer >= 0)")
    for k in POSITIVE_NUMBERS:
        v = config.get(k)
        if v is not None and not ((is_int(v) or isinstance(v, float)) and v > 0):
            raise bad(k, "a positive number")
    for k in STRING_LISTS:
        v = config.get(k)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) and x for x in v)):
            raise bad(k, "a list of names")
    dims = config.get("matryoshka_dimensions")
    if dims is not None and not (isinstance(dims, list) and all(is_int(d) and d > 0 for d in dims)):
        raise bad("matryoshka_dimensions", "a list of positive integers")
    for k in ("task_instructions", "rope_parameters", "rope_scaling", "auto_map"):
        v = config.get(k)
        if v is not None and not isinstance(v, dict):
            raise bad(k, "an object")
    instructions = config.get("task_instructions") or {}
    if not all(isinstance(v, str) for v in instructions.values()):
        raise bad("task_instructions", "an object of task -> instruction text")
    hidden, heads = config.get("hidden_size"), config.get("num_attention_heads")
    if is_int(hidden) and is_int(heads) and config.get("head_dim") is None and hidden % heads:
        raise EmbccError(f"{where}: hidden_size {hidden} does not split into {heads} attention heads",
                         "repair or re-download it")


def check_contained(path: Path) -> None:
    """Refuse a checkpoint holding a symlink whose target lies outside it (or dangles).

    A checkpoint in huggingface_hub's cache (`models--ORG--NAME/snapshots/REV/`) links every file into the
    repository's own `blobs/` directory: those links stay inside the repository cache and are accepted."""
    root = path.resolve()
    allowed = [root]
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith("models--"):
        allowed.append(root.parent.parent / "blobs")
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if not p.is_symlink():
                continue
            target = p.resolve()
            if not any(target == a or target.is_relative_to(a) for a in allowed):
                raise EmbccError(f"{p} is a symlink to {target}, outside the checkpoint directory",
                                 "copy the file into the checkpoint (embcc reads nothing outside it)")
            if not target.exists():
                raise EmbccError(f"{p} is a dangling symlink", "copy the missing file into the checkpoint")


def weight_files(path: Path, stem: str = "model") -> list[Path]:
    """The safetensors files of a checkpoint (single or sharded). Pickle-based weights are refused."""
    single, index = path / f"{stem}.safetensors", path / f"{stem}.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        try:
            weight_map = json.loads(index.read_bytes().decode("utf-8")).get("weight_map")
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
            raise EmbccError(f"{index} is not a JSON object", "repair or re-download it") from e
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise EmbccError(f"{index} has no weight_map of tensor -> shard file", "repair or re-download it")
        shards = sorted(set(weight_map.values()))
        outside = [s for s in shards if Path(s).name != s or s in (".", "..")]
        if outside:  # a shard is a file in the checkpoint directory, never a path to elsewhere
            raise EmbccError(f"{index} names shard {outside[0]!r}, which is not a file in the checkpoint directory",
                             "repair or re-download the index")
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


def read_safetensors(files: list[Path]) -> dict[str, TensorRef]:
    """A lazy reference (embcc.core.weights.TensorRef) to every tensor of the files: headers are read and
    checked here, data only when a tensor is used."""
    return read_refs(files)


def hash_checkpoint(path: Path) -> str:
    """sha256 over every regular file of the checkpoint (names and bytes), independent of walk order."""
    return hash_tree(path)


def tokenizer_files(path: Path) -> list[Path]:
    files = [path / n for n in TOKENIZER_FILES if (path / n).is_file()]
    if not (path / "tokenizer.json").is_file():
        raise EmbccError(f"{path} has no tokenizer.json", "copy the tokenizer files published with the model")
    return files


def check_tokenizer(path: Path, vocab_size: int | None) -> None:
    """tokenizer.json must parse, and its ids must fit the embedding table (an id past it fails at run time)."""
    from tokenizers import Tokenizer

    f = path / "tokenizer.json"
    try:
        tok = Tokenizer.from_file(str(f))
    except Exception as e:  # tokenizers raises its own exception type (and a panic for some malformed files)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EmbccError(f"{f} does not parse as a tokenizers file ({first[:200]})",
                         "copy the tokenizer.json published with the model") from e
    n = tok.get_vocab_size(with_added_tokens=True)
    ids = tok.get_vocab(with_added_tokens=True).values()
    top = max(ids, default=-1) + 1
    if isinstance(vocab_size, int) and top > vocab_size:
        raise EmbccError(f"{f} has token ids up to {top - 1} ({n} tokens) but the embedding table has {vocab_size} rows",
                         "the tokenizer belongs to another model; copy the one published with these weights")


def check_tensors(
    got: Mapping[str, torch.Tensor | TensorRef], want: dict[str, torch.Size], *, ignored: tuple[str, ...], where: Path
) -> LazyWeights:
    """Match a renamed state dict against the reference model's names, shapes and float dtypes.

    Tensors whose name starts with one of `ignored` (pooler, MLM heads ...) are dropped; anything else that the
    model does not have is an error, as is a missing tensor, a shape mismatch or a non-float dtype. Returns the
    weights as LazyWeights (float32 on access, read from the file each time; see embcc.core.weights).
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
        if kept[k].dtype not in WEIGHT_DTYPES:
            name = str(kept[k].dtype).removeprefix("torch.")
            raise EmbccError(f"{where}: tensor {k} is stored as {name}; model weights are floating point",
                             "the weights are damaged or not this model's; re-download or re-convert them "
                             "(float32, float16 or bfloat16)")
    return LazyWeights(kept)


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Modules built inside get their parameters on the meta device (no memory, no random initialisation);
    buffers (RoPE frequencies, ALiBi slopes) are computed as usual. Patches nn.Module.register_parameter for the
    duration (not thread-safe; model construction is not done concurrently in embcc)."""
    register = torch.nn.Module.register_parameter

    def on_meta(module: torch.nn.Module, name: str, param: torch.nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    torch.nn.Module.register_parameter = on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register  # type: ignore[method-assign]


def build_backbone(make: Callable[[], torch.nn.Module], weights: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """`make()` with `weights` as its parameters, holding one float32 copy of the model, not two.

    The module is built with empty (meta) parameters, then each weight is read once (LazyWeights: from the
    file, with any merged adapter folded in) and becomes the parameter itself (load_state_dict assign=True)."""
    with _parameters_on_meta():
        model = make()
    state = {k: weights[k] for k in weights}
    model.load_state_dict(state, strict=True, assign=True)
    return model.float().eval()
