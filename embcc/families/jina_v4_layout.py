"""jina-embeddings-v4's published layout, read into transformers' native Qwen2.5-VL names and embcc's LoraSet.

Published (SPEC.md section 8): config.json (`architectures` ["JinaEmbeddingsV4Model"], `model_type` "qwen2_5_vl",
`task_names`, `matryoshka_dims`, `multi_vector_projector_dim`, vision token ids, the Qwen2.5-VL text keys flat
and/or as `text_config`, `vision_config`); weights in the OLD Qwen2.5-VL naming (`model.layers...`, `visual...`,
`multi_vector_projector`), one file or sharded with an index; ONE `adapters/` folder with one PEFT
adapter_config.json and one safetensors holding every task under Jina's per-task keys
`base_model.model.<module>.lora_{A,B}.<task>.weight`.

`read(path)` returns a V4Checkpoint whose weights carry the names of transformers'
`Qwen2_5_VLForConditionalGeneration` (`model.language_model.*`, `model.visual.*`; transformers' own key mapping
renames the old naming) plus `multi_vector_projector.{weight,bias}`; adapters are a LoraSet keyed by those module
names (`model.language_model.layers.{i}.self_attn.q_proj` ..., `multi_vector_projector`), stacked in
`task_names` order with alpha / r folded into B. Nothing of Jina's remote code is run.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from embcc.core.errors import EmbccError
from embcc.core.lora import LoraSet, LoraWeights
from embcc.core.weights import WEIGHT_DTYPES, LazyWeights, shape_of
from embcc.families.base import read_config, read_safetensors, tokenizer_files, weight_files

ARCHITECTURE = "JinaEmbeddingsV4Model"
TASKS = ("retrieval", "text-matching", "code")
PROMPTS = {"query": "Query: ", "passage": "Passage: "}  # Jina's PREFIX_DICT + ": " (modeling_jina_embeddings_v4.py)
QUERY_ONLY_TASKS = ("text-matching",)  # Jina's code gives text-matching the query prefix whatever the role
DEFAULT_ROLE = "query"  # Jina's encode_text: prompt_name or "query"
IMAGE_PROMPT = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|>\n"
MAX_LENGTH = 32768  # JinaEmbeddingsV4Processor.text_max_length
ADAPTERS_DIR = "adapters"
ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
PROJECTOR = "multi_vector_projector"
LANGUAGE_MODEL = "model.language_model."
VISUAL = "model.visual."
LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])\.(?P<task>[^.]+)\.weight$")
JINA_KEYS = ("task_names", "matryoshka_dims", "multi_vector_projector_dim", "single_vector_pool_strategy",
             "truncate_dim", "verbosity", "auto_map", "_name_or_path", "architectures", "transformers_version")


@dataclass
class V4Checkpoint:
    path: Path
    config: dict[str, Any]  # config.json as published
    qwen_config: Any  # transformers' Qwen2_5_VLConfig built from it (float32, sdpa)
    weights: Mapping[str, torch.Tensor]  # LazyWeights (float32 on access), Qwen2_5_VL names + multi_vector_projector
    lora: LoraSet  # every task, language model and projector
    lora_rank: int
    lora_alpha: float
    tasks: list[str]
    prompts: dict[str, str]  # role -> prefix ("query", "passage")
    matryoshka_dims: list[int]
    hidden_size: int
    projector_dim: int
    max_length: int
    rope_theta: float
    mrope_section: list[int]
    image_token_id: int
    video_token_id: int
    vision_start_token_id: int
    vision_end_token_id: int
    pool_strategy: str
    tokenizer_files: list[Path] = field(default_factory=list)
    preprocessor: dict[str, Any] | None = None  # preprocessor_config.json (None: no image preprocessing published)

    def prefix(self, task: str, role: str | None = None) -> str:
        """The text prefix Jina's encode_text puts before a text: `Query: ` / `Passage: `, text-matching always
        `Query: `; role None is Jina's default ("query")."""
        if task not in self.tasks:
            raise EmbccError(f"unknown task {task!r} for jina-embeddings-v4", f"choose one of: {', '.join(self.tasks)}")
        role = DEFAULT_ROLE if role is None else role
        if role not in self.prompts:
            raise EmbccError(f"jina-embeddings-v4 has no {role!r} role", f"choose one of: {', '.join(self.prompts)}")
        return self.prompts[DEFAULT_ROLE if task in QUERY_ONLY_TASKS else role]

    def language_weights(self) -> dict[str, torch.Tensor]:
        """The text model's weights under Qwen2_5_VLTextModel's own names (prefix `model.language_model.` cut)."""
        return {k[len(LANGUAGE_MODEL):]: self.weights[k] for k in self.weights if k.startswith(LANGUAGE_MODEL)}

    def visual_weights(self) -> dict[str, torch.Tensor]:
        """The vision tower's weights under Qwen2_5_VisionTransformerPretrainedModel's own names."""
        # keys first: items() of LazyWeights would read (and drop) every other tensor of the checkpoint too
        return {k[len(VISUAL):]: self.weights[k] for k in self.weights if k.startswith(VISUAL)}


def image_facts(ckpt: V4Checkpoint) -> dict[str, Any]:
    """What a runtime needs to feed the image graph, recorded in the artifact's embcc.json (`image`): the
    processor's settings (preprocessor_config.json), the vision geometry, the prompt and its token ids."""
    vc = ckpt.qwen_config.vision_config
    processor = {k: v for k, v in (ckpt.preprocessor or {}).items() if k not in ("image_processor_type",
                                                                              "processor_class")}
    return {
        "kind": "qwen2-vl", "processor": copy.deepcopy(processor), "prompt": IMAGE_PROMPT,
        "patch_size": int(vc.patch_size), "temporal_patch_size": int(vc.temporal_patch_size),
        "spatial_merge_size": int(vc.spatial_merge_size), "window_size": int(vc.window_size),
        "image_token_id": int(ckpt.image_token_id), "vision_start_token_id": int(ckpt.vision_start_token_id),
        "vision_end_token_id": int(ckpt.vision_end_token_id),
    }


# ---- recognising ------------------------------------------------------------------------------------------------


def detect(config: dict) -> bool:
    """A jina-embeddings-v4 config: Jina's architecture name, or a Qwen2.5-VL config carrying Jina's keys."""
    if ARCHITECTURE in (config.get("architectures") or []):
        return True
    return config.get("model_type") == "qwen2_5_vl" and "task_names" in config and "multi_vector_projector_dim" in config


# ---- config -----------------------------------------------------------------------------------------------------


def _int(config: dict, key: str, where: Path) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EmbccError(f"{where}/config.json has no valid {key} (got {value!r})",
                         "use the config.json published with jina-embeddings-v4")
    return value


def native_config(config: dict, where: Path) -> Any:
    """transformers' Qwen2_5_VLConfig from the published dict (flat text keys or `text_config`, as transformers
    itself reads either), float32 and sdpa attention."""
    from transformers import Qwen2_5_VLConfig

    if not isinstance(config.get("vision_config"), dict):
        raise EmbccError(f"{where}/config.json has no vision_config", "use the config.json published with the model")
    if "text_config" in config and not isinstance(config["text_config"], dict):
        raise EmbccError(f"{where}/config.json has a text_config that is not an object", "repair or re-download it")
    kw = {k: v for k, v in config.items() if k not in JINA_KEYS}
    kw.pop("torch_dtype", None)
    kw.pop("dtype", None)
    text = kw.get("text_config")
    if text is not None:
        text = dict(text)
        text.pop("torch_dtype", None)
        text.pop("dtype", None)
        kw["text_config"] = text
    try:
        import transformers

        level = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # rope_scaling/mrope_section notices for a valid hub config
        try:
            cfg = Qwen2_5_VLConfig(**kw)
        finally:
            transformers.logging.set_verbosity(level)
    except (TypeError, ValueError, KeyError) as e:
        raise EmbccError(f"{where}/config.json is not a Qwen2.5-VL config transformers accepts ({e})",
                         "use the config.json published with jina-embeddings-v4") from e
    cfg._attn_implementation = "sdpa"
    cfg.text_config._attn_implementation = "sdpa"
    cfg.vision_config._attn_implementation = "sdpa"
    cfg.dtype = torch.float32
    return cfg


def _text_facts(cfg: Any, where: Path) -> tuple[float, list[int]]:
    t = cfg.text_config
    if t.hidden_size % t.num_attention_heads or t.num_attention_heads % t.num_key_value_heads:
        raise EmbccError(f"{where}/config.json: hidden_size {t.hidden_size} / {t.num_attention_heads} heads / "
                         f"{t.num_key_value_heads} KV heads do not divide", "use the config.json published with the model")
    rope = t.rope_parameters or {}
    section = rope.get("mrope_section")
    head_dim = t.hidden_size // t.num_attention_heads
    if not isinstance(section, list | tuple) or len(section) != 3 or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in section):
        raise EmbccError(f"{where}/config.json has no valid rope_scaling.mrope_section (got {section!r})",
                         "Qwen2.5-VL needs three M-RoPE sections, e.g. [16, 24, 24]")
    if sum(section) != head_dim // 2:
        raise EmbccError(f"{where}/config.json: mrope_section {list(section)} sums to {sum(section)}, not head_dim/2 "
                         f"= {head_dim // 2}", "use the config.json published with the model")
    if rope.get("rope_type", "default") != "default":
        raise EmbccError(f"{where}/config.json asks for RoPE scaling {rope.get('rope_type')!r}, which Qwen2.5-VL's "
                         "M-RoPE does not combine with here", "use the config.json as Jina publishes it")
    theta = rope.get("rope_theta")
    if not isinstance(theta, int | float) or isinstance(theta, bool) or theta <= 0:
        raise EmbccError(f"{where}/config.json has no valid rope_theta (got {theta!r})", "use the published config.json")
    return float(theta), [int(s) for s in section]


def _tasks(config: dict, where: Path) -> list[str]:
    names = config.get("task_names")
    if names is None:
        raise EmbccError(f"{where}/config.json has no task_names", "use the config.json published with jina-embeddings-v4")
    if (not isinstance(names, list) or not names or len(set(map(str, names))) != len(names)
            or not all(isinstance(n, str) and n and "." not in n for n in names)):
        raise EmbccError(f"{where}/config.json has malformed task_names {names!r}",
                         'expect a list of distinct names, e.g. ["retrieval", "text-matching", "code"]')
    return list(names)


def _matryoshka(config: dict, hidden: int, where: Path) -> list[int]:
    dims = config.get("matryoshka_dims", [d for d in (128, 256, 512, 1024, 2048) if d <= hidden])
    if (not isinstance(dims, list) or not dims or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims)
            or any(d <= 0 or d > hidden for d in dims) or sorted(set(dims)) != dims):
        raise EmbccError(f"{where}/config.json has malformed matryoshka_dims {dims!r}",
                         f"expect increasing dimensions from 1 to the hidden size {hidden}")
    return dims


def _vision_ids(config: dict, cfg: Any, tokenizer_json: Path, where: Path) -> dict[str, int]:
    """The vision token ids, inside the embedding table and naming the tokens Qwen's tokenizer gives them."""
    from tokenizers import Tokenizer

    vocab = cfg.text_config.vocab_size
    expect = {"image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>",
              "vision_start_token_id": "<|vision_start|>", "vision_end_token_id": "<|vision_end|>"}
    try:
        tok = Tokenizer.from_file(str(tokenizer_json))
    except Exception as e:  # tokenizers raises its own exception type for malformed files
        raise EmbccError(f"{tokenizer_json} is not a readable tokenizer.json ({e})", "re-download it") from e
    out = {}
    for key, token in expect.items():
        value = config.get(key, getattr(cfg, key, None))
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab:
            raise EmbccError(f"{where}/config.json has no valid {key} (got {value!r}; the embedding table has {vocab} "
                             "rows)", "use the config.json published with the model")
        if tok.token_to_id(token) != value:
            raise EmbccError(f"{where}: {key} is {value}, but the tokenizer has {token} at "
                             f"{tok.token_to_id(token)}", "the config and tokenizer files belong to different models")
        out[key] = value
    return out


# ---- weights ----------------------------------------------------------------------------------------------------


def _renamer(cfg: Any):
    """transformers' own checkpoint key mapping for Qwen2_5_VLForConditionalGeneration (old -> native names),
    and the native names and shapes it loads into (from a meta-device model)."""
    from transformers import Qwen2_5_VLForConditionalGeneration
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(cfg)
    meta = model.state_dict()
    transforms = get_model_conversion_mapping(model)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]

    def rename(key: str) -> str:
        return rename_source_key(key, renamings, converters, model.base_model_prefix, meta)[0]

    return rename, {k: v.shape for k, v in meta.items()}


def _read_weights(path: Path, cfg: Any, projector_dim: int) -> tuple[dict[str, torch.Tensor], Any]:
    rename, want = _renamer(cfg)
    raw = read_safetensors(weight_files(path))
    weights: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        name = rename(key)
        if name in weights:
            raise EmbccError(f"{path}: tensors for {name} appear twice (old and new naming mixed?)",
                             "use the weight files as Jina publishes them")
        weights[name] = value
    hidden = cfg.text_config.hidden_size
    want = {k: v for k, v in want.items() if k != "lm_head.weight"}  # tied to the embeddings; unused for embedding
    want[f"{PROJECTOR}.weight"] = torch.Size([projector_dim, hidden])
    want[f"{PROJECTOR}.bias"] = torch.Size([projector_dim])
    weights.pop("lm_head.weight", None)
    missing = sorted(set(want) - set(weights))
    if missing:
        raise EmbccError(f"{path} is missing tensor {missing[0]} ({len(missing)} missing)",
                         "the checkpoint is incomplete or of another model; re-download it")
    extra = sorted(set(weights) - set(want))
    if extra:
        raise EmbccError(f"{path} has unexpected tensor {extra[0]} ({len(extra)} unexpected)",
                         "this is not jina-embeddings-v4's layout; check the model id")
    for k, shape in want.items():
        if tuple(weights[k].shape) != tuple(shape):
            raise EmbccError(f"{path}: tensor {k} has shape {list(weights[k].shape)} but config.json implies "
                             f"{list(shape)}", "the weights do not belong to this config.json")
        if weights[k].dtype not in WEIGHT_DTYPES:
            raise EmbccError(f"{path}: tensor {k} is {weights[k].dtype}, not a float type", "re-download the weights")
    # float32 on access, read from the files each time: a 3.8B checkpoint is never held whole (15 GB at fp32)
    return LazyWeights(weights), rename


# ---- adapters ---------------------------------------------------------------------------------------------------


def read_adapters(folder: Path, tasks: list[str], weights: Mapping[str, torch.Tensor],
                  rename=lambda k: k) -> tuple[LoraSet, int, float]:
    """Jina's one adapter folder: PEFT's config loader for adapter_config.json, safetensors for the weights,
    split by the per-task key suffix; returns (LoraSet in `tasks` order, rank, alpha)."""
    from peft import LoraConfig
    from safetensors import safe_open

    if not folder.is_dir():
        raise EmbccError(f"{folder.parent} has no {ADAPTERS_DIR}/ folder",
                         "jina-embeddings-v4 publishes its task adapters there; copy it with the model")
    if not (folder / ADAPTER_CONFIG).is_file():
        raise EmbccError(f"{folder} has no {ADAPTER_CONFIG}", "copy every adapter file published with the model")
    if not (folder / ADAPTER_WEIGHTS).is_file():
        unsafe = (folder / "adapter_model.bin").is_file()
        raise EmbccError(f"{folder} has no {ADAPTER_WEIGHTS}" + (" (only adapter_model.bin, which embcc never "
                         "unpickles)" if unsafe else ""), "copy the adapter weights (safetensors only)")
    try:
        json.loads((folder / ADAPTER_CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EmbccError(f"{folder / ADAPTER_CONFIG} is not valid JSON", "repair or re-download it") from e
    try:
        cfg = LoraConfig.from_pretrained(str(folder))
    except Exception as e:  # PEFT raises assorted errors for bad or foreign configs
        raise EmbccError(f"{folder / ADAPTER_CONFIG} is not a PEFT LoRA config ({e})", "re-download the adapters") from e
    if getattr(cfg, "use_dora", False) or getattr(cfg, "rank_pattern", None) or getattr(cfg, "alpha_pattern", None):
        raise EmbccError(f"{folder}: DoRA or per-module rank/alpha patterns are not supported",
                         "use plain LoRA adapters as Jina publishes them")
    if not isinstance(cfg.r, int) or cfg.r <= 0 or not isinstance(cfg.lora_alpha, int | float) or cfg.lora_alpha <= 0:
        raise EmbccError(f"{folder / ADAPTER_CONFIG} has rank {cfg.r!r} and alpha {cfg.lora_alpha!r}",
                         "expect positive numbers (Jina: r 32, alpha 32)")
    if getattr(cfg, "lora_bias", False):
        raise EmbccError(f"{folder}: LoRA biases (lora_bias) are not supported", "use the adapters as Jina publishes them")
    scaling = cfg.lora_alpha / (cfg.r ** 0.5 if cfg.use_rslora else cfg.r)
    try:
        with safe_open(str(folder / ADAPTER_WEIGHTS), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors' own errors for truncated or corrupt files
        raise EmbccError(f"{folder / ADAPTER_WEIGHTS} is not a readable safetensors file ({e})",
                         "re-download the adapters") from e
    per: dict[tuple[str, str, str], torch.Tensor] = {}
    for key, value in state.items():
        m = LORA_KEY.match(key)
        if m is None:
            raise EmbccError(f"{folder}: unexpected adapter tensor {key}",
                             "expect Jina's per-task keys base_model.model.<module>.lora_A.<task>.weight")
        module = rename(m["module"] + ".weight").removesuffix(".weight")
        if module.startswith(VISUAL) or ".visual." in f".{module}":
            raise EmbccError(f"{folder}: adapter on vision module {module}",
                             "Jina's adapters exclude the vision tower (exclude_modules .*visual.*)")
        if m["task"] not in tasks:
            raise EmbccError(f"{folder}: adapter tensor for task {m['task']!r}, which config.json's task_names "
                             f"{tasks} lack", "the adapters and config.json belong to different releases")
        per[(module, m["ab"], m["task"])] = value
    if not per:
        raise EmbccError(f"{folder / ADAPTER_WEIGHTS} holds no adapter tensors", "re-download the adapters")
    modules = sorted({k[0] for k in per})
    out: dict[str, LoraWeights] = {}
    for module in modules:
        name = f"{module}.weight"
        base = shape_of(weights, name) if name in weights else None  # shapes only: nothing is read
        if base is None or len(base) != 2:
            raise EmbccError(f"{folder}: adapter for {module}, which the model does not have as a Linear",
                             "the adapters belong to another model")
        a_list, b_list = [], []
        for task in tasks:
            for ab in "AB":
                if (module, ab, task) not in per:
                    raise EmbccError(f"{folder}: the adapter of {module} lacks lora_{ab} for task {task!r}",
                                     "every task needs both factors on every adapted module; re-download")
            a, b = per[(module, "A", task)], per[(module, "B", task)]
            out_f, in_f = base
            if a.dim() != 2 or b.dim() != 2 or a.shape != (cfg.r, in_f) or b.shape != (out_f, cfg.r):
                raise EmbccError(f"{folder}: adapter of {module} ({task}) has shapes {list(a.shape)}/{list(b.shape)}, "
                                 f"not [{cfg.r}, {in_f}]/[{out_f}, {cfg.r}] (rank {cfg.r}, weight {list(base)})",
                                 "the adapters were trained for another base model or rank")
            a_list.append(a.float())
            b_list.append(b.float() * scaling)
        out[module] = LoraWeights("linear", torch.stack(a_list), torch.stack(b_list))
    if not any(m.startswith(LANGUAGE_MODEL) for m in out):
        raise EmbccError(f"{folder}: no adapter on the language model", "re-download the adapters")
    return LoraSet(list(tasks), out), int(cfg.r), float(cfg.lora_alpha)


# ---- the whole checkpoint ---------------------------------------------------------------------------------------


def _preprocessor(path: Path) -> dict[str, Any] | None:
    f = path / "preprocessor_config.json"
    if not f.is_file():
        return None
    try:
        pre = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EmbccError(f"{f} is not valid JSON", "repair or re-download it") from e
    if not isinstance(pre, dict):
        raise EmbccError(f"{f} is not a JSON object", "repair or re-download it")
    return pre


def read(path: str | Path) -> V4Checkpoint:
    """Read a jina-embeddings-v4 checkpoint directory; malformed input raises a one-line EmbccError."""
    path = Path(path)
    config = read_config(path)
    if not detect(config):
        arch = ",".join(config.get("architectures") or []) or "no architectures"
        raise EmbccError(f"{path} is not jina-embeddings-v4 (model_type {config.get('model_type')!r}, {arch})",
                         f"pass a checkpoint whose config.json names {ARCHITECTURE}")
    cfg = native_config(config, path)
    theta, section = _text_facts(cfg, path)
    tasks = _tasks(config, path)
    hidden = cfg.text_config.hidden_size
    projector_dim = _int(config, "multi_vector_projector_dim", path) if "multi_vector_projector_dim" in config else 128
    if projector_dim == 0:
        raise EmbccError(f"{path}/config.json: multi_vector_projector_dim is 0", "use the published config.json")
    pool = config.get("single_vector_pool_strategy", "mean")
    if pool != "mean":
        raise EmbccError(f"{path}/config.json: single_vector_pool_strategy {pool!r}; Jina's v4 pools by mean",
                         "use the config.json published with the model")
    if cfg.vision_config.out_hidden_size != hidden:
        raise EmbccError(f"{path}/config.json: vision_config.out_hidden_size {cfg.vision_config.out_hidden_size} is "
                         f"not the text hidden size {hidden}", "use the config.json published with the model")
    tok_files = tokenizer_files(path)
    ids = _vision_ids(config, cfg, path / "tokenizer.json", path)
    weights, rename = _read_weights(path, cfg, projector_dim)
    lora, rank, alpha = read_adapters(path / ADAPTERS_DIR, tasks, weights, rename)
    return V4Checkpoint(
        path=path, config=config, qwen_config=cfg, weights=weights, lora=lora, lora_rank=rank, lora_alpha=alpha,
        tasks=tasks, prompts=dict(PROMPTS), matryoshka_dims=_matryoshka(config, hidden, path), hidden_size=hidden,
        projector_dim=projector_dim, max_length=min(MAX_LENGTH, int(cfg.text_config.max_position_embeddings)),
        rope_theta=theta, mrope_section=section, pool_strategy=pool, tokenizer_files=tok_files,
        preprocessor=_preprocessor(path), **ids,
    )


__all__ = ["IMAGE_PROMPT", "MAX_LENGTH", "PROMPTS", "TASKS", "V4Checkpoint", "detect", "image_facts", "native_config", "read",
           "read_adapters"]
