"""Reading Jina's published jina-clip-v2 checkpoint (JinaCLIPModel) into one ClipCheckpoint.

Layout (model.safetensors, bfloat16):
- `text_model.transformer.roberta.*`: jina-embeddings-v3's original layout (parametrized weights, fused Wqkv) with
  ONE stacked adapter per Linear/Embedding (`lora_adaptations` ["retrieval.query"], rank 4, alpha 4). Jina's
  HFTextEncoder always runs it with `default_lora_task`'s adapter, so it is merged here (scaling alpha / rank).
  The tower's config is jina-embeddings-v3's published config.json updated with `text_config.
  hf_model_config_kwargs` (as HFTextEncoder does: AutoConfig of `hf_model_name_or_path`, then `.update`); the
  widths are read from the tensor shapes, heads / eps / rotary base from the kwargs where present.
- `vision_model.*`: the EVA02 tower of embcc.families.eva02, configured by `vision_config`.
- `logit_scale`: a scalar (logits = exp(logit_scale) * cosine).
Text embeddings: mean over tokens with input_ids != pad_token_id (Jina's mask; its ONNX takes no attention_mask),
then Matryoshka truncation and L2. `encode_text` prefixes `task_instructions[task]` only when a task is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import JinaEmbeddingsV3Config

from embcc.core.errors import EmbccError
from embcc.core.images import image_settings
from embcc.core.lora import LoraSet, adapted_weight
from embcc.families import eva02
from embcc.families.base import check_tensors, read_config, read_safetensors, weight_files
from embcc.families.jina_v3_layouts import check_lora, from_original

TEXT_PREFIX, VISION_PREFIX = "text_model.transformer.", "vision_model."
# jina-embeddings-v3's published config.json: what HFTextEncoder starts from before hf_model_config_kwargs
V3_DEFAULTS = {
    "num_attention_heads": 16, "layer_norm_eps": 1e-5, "rotary_emb_base": 20000.0, "max_position_embeddings": 8194,
    "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "hidden_act": "gelu", "position_embedding_type": "rotary",
    "lora_rank": 4, "lora_alpha": 1,
    "lora_adaptations": ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"],
    "task_instructions": {
        "retrieval.query": "Represent the query for retrieving evidence documents: ",
        "retrieval.passage": "Represent the document for retrieval: ",
        "separation": "", "classification": "", "text-matching": "",
    },
}


@dataclass
class ClipCheckpoint:
    """A loaded jina-clip-v2 checkpoint: both towers under embcc's module names, float32."""

    path: Path
    config: dict
    text_config: JinaEmbeddingsV3Config  # native config (widths from the tensors, theta from the kwargs or v3)
    text_weights: dict[str, torch.Tensor]  # JinaEmbeddingsV3Model names, `text_task`'s adapter merged in
    text_lora: LoraSet | None  # the stacked adapter(s) as read (scaling folded into B), for inspection
    text_task: str | None  # the adapter always applied (text_config.default_lora_task)
    instructions: dict[str, str]  # task -> prefix (prepended only when a task is asked)
    default_task: str | None  # text_config.default_instruction_task: the prefix used when no task is asked (null)
    vision_config: eva02.Eva02Config
    vision_weights: dict[str, torch.Tensor]  # Eva02VisionTower names (`vision_model.` stripped)
    preprocessor: dict  # preprocessor_config.json, for embcc.core.images.preprocess
    matryoshka_dims: list[int] = field(default_factory=list)
    logit_scale: float = 0.0
    pad_token_id: int = 1
    max_length: int = 8192  # positions - 2; Jina's encode_text truncates at 512 tokens unless told otherwise

    @property
    def dim(self) -> int:
        return self.vision_config.width

    def prompt(self, task: str | None) -> str:
        """The text prefix of `task`, as Jina's encode_text: without a task, the default instruction task's (none
        in the published config, whose default_instruction_task is null)."""
        if task is None:
            return self.instructions.get(self.default_task, "") if self.default_task else ""
        if task not in self.instructions:
            raise EmbccError(f"jina-clip-v2 has no task {task!r}", f"choose one of: {', '.join(self.instructions)} (or none)")
        return self.instructions[task]

    @property
    def query_prompt(self) -> str:
        return self.prompt("retrieval.query") if "retrieval.query" in self.instructions else ""

    def vision_tower(self) -> eva02.Eva02VisionTower:
        return eva02.build(self.vision_config, self.vision_weights)

    def text_model(self) -> torch.nn.Module:
        """transformers' JinaEmbeddingsV3Model (no pooler) holding the merged text weights, float32, eval, SDPA."""
        from transformers import JinaEmbeddingsV3Model

        cfg = JinaEmbeddingsV3Config(**self.text_config.to_dict())
        cfg._attn_implementation = "sdpa"
        model = JinaEmbeddingsV3Model(cfg, add_pooling_layer=False)
        model.load_state_dict(self.text_weights, strict=True)
        return model.float().eval()


def detect(config: dict) -> bool:
    """jina-clip-v2: a JinaCLIPModel whose text tower is Jina-XLM-RoBERTa (v1's is JinaBERT)."""
    if not _is_jina_clip(config):
        return False
    text = config.get("text_config")
    if not isinstance(text, dict) or not isinstance(config.get("vision_config"), dict):
        return False
    name = str(text.get("hf_model_name_or_path") or "")
    kwargs = text.get("hf_model_config_kwargs")
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    return "jina-embeddings-v3" in name or "xlm-roberta" in name or "lora_adaptations" in kwargs


def _is_jina_clip(config: dict) -> bool:
    return "JinaCLIPModel" in (config.get("architectures") or []) or config.get("model_type") == "jina_clip"


def read(path: Path) -> ClipCheckpoint:
    """Load a jina-clip-v2 checkpoint directory; every problem is a one-line EmbccError."""
    path = Path(path)
    config = read_config(path)
    if not detect(config):
        if _is_jina_clip(config):
            raise EmbccError(f"{path} is a JinaCLIP model whose text tower is not Jina-XLM-RoBERTa (jina-clip-v1?)",
                             "embcc compiles jina-clip-v2")
        raise EmbccError(f"{path} is not a jina-clip-v2 checkpoint (architectures {config.get('architectures')})",
                         "pass the jinaai/jina-clip-v2 directory")
    if config.get("add_projections"):
        raise EmbccError(f"{path}: add_projections is true; jina-clip-v2 publishes none",
                         "embcc compiles the published jina-clip-v2 (identity projections)")
    text_cfg = config.get("text_config")
    kwargs = text_cfg.get("hf_model_config_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise EmbccError(f"{path}: text_config.hf_model_config_kwargs is not an object", "pass the checkpoint's own config.json")
    settings = {**V3_DEFAULTS, **kwargs}
    if settings["position_embedding_type"] != "rotary":
        raise EmbccError(f"{path}: the text tower has {settings['position_embedding_type']} positions, not rotary",
                         "pass a jina-clip-v2 checkpoint")
    if text_cfg.get("pooler_type", "mean_pooler") not in (None, "mean_pooler") or text_cfg.get("proj_type") is not None:
        raise EmbccError(f"{path}: text_config asks for pooler {text_cfg.get('pooler_type')!r} / projection "
                         f"{text_cfg.get('proj_type')!r}", "jina-clip-v2 publishes mean pooling and no projection")
    raw = read_safetensors(weight_files(path))
    text_raw, vision_raw, logit = _split(raw, where=path)
    del raw  # from here on each bfloat16 tensor is dropped once its float32 copy exists (peak ~5 GB at full size)

    tasks = list(settings["lora_adaptations"] or [])
    try:
        scaling = float(settings["lora_alpha"]) / float(settings["lora_rank"])
    except (TypeError, ValueError, ZeroDivisionError) as e:
        raise EmbccError(f"{path}: lora_alpha / lora_rank are not usable numbers ({e})", "pass the checkpoint's own config.json") from e
    renamed, lora = from_original(text_raw, tasks, scaling, where=path)
    del text_raw
    tcfg = _text_config(renamed, settings, where=path)
    from transformers import JinaEmbeddingsV3Model

    with torch.device("meta"):
        want = {k: v.shape for k, v in JinaEmbeddingsV3Model(tcfg, add_pooling_layer=False).state_dict().items()}
    weights = check_tensors(renamed, want, ignored=("pooler.",), where=path)
    del renamed
    task = text_cfg.get("default_lora_task")
    if lora is not None:
        check_lora(lora, weights, where=path)
    if task is not None:
        if lora is None:
            raise EmbccError(f"{path}: default_lora_task is {task!r} but the text tower holds no adapter tensors",
                             "the checkpoint is incomplete; re-download it")
        if task not in lora.task_names:
            raise EmbccError(f"{path}: default_lora_task {task!r} is not in lora_adaptations {lora.task_names}",
                             "pass the checkpoint's own config.json")
        _merge_in_place(weights, lora, lora.index(task))
    elif lora is not None:
        raise EmbccError(f"{path}: the text tower holds adapters but text_config.default_lora_task is null",
                         "set default_lora_task as the published config.json does (retrieval.query)")

    vcfg = eva02.Eva02Config.from_vision_config(config.get("vision_config"), where=path / "config.json")
    prefixed = {VISION_PREFIX + k: vision_raw.pop(k) for k in list(vision_raw)}
    vision = check_tensors(prefixed, {VISION_PREFIX + k: s for k, s in eva02.expected_shapes(vcfg).items()},
                           ignored=(), where=path)
    del prefixed
    vision = {k[len(VISION_PREFIX):]: v for k, v in vision.items()}

    preprocessor = _preprocessor(path, vcfg)
    dims = config.get("matryoshka_dimensions") or kwargs.get("matryoshka_dimensions") or []
    if any(not isinstance(d, int) or d < 1 or d > vcfg.width for d in dims):
        raise EmbccError(f"{path}: matryoshka_dimensions {dims} are not within 1..{vcfg.width}", "pass the checkpoint's own config.json")
    instructions = settings["task_instructions"] or {}
    default_task = text_cfg.get("default_instruction_task")
    if default_task is not None and default_task not in instructions:
        raise EmbccError(f"{path}: default_instruction_task {default_task!r} has no task_instructions entry",
                         "pass the checkpoint's own config.json")
    return ClipCheckpoint(
        path=path, config=config, text_config=tcfg, text_weights=weights, text_lora=lora, text_task=task,
        instructions=dict(instructions), default_task=default_task, vision_config=vcfg, vision_weights=vision,
        preprocessor=preprocessor, matryoshka_dims=sorted(dims), logit_scale=logit, pad_token_id=int(settings["pad_token_id"]),
        max_length=int(settings["max_position_embeddings"]) - 2,
    )


def _merge_in_place(weights, lora: LoraSet, t: int) -> None:
    """W += delta_t for every adapted module (core.lora.adapted_weight: float64 sum a block of rows at a time,
    float32 result), stored back into `weights` (LazyWeights: each read is a fresh tensor, so the merged one must
    be set), so the 250,002 x 1024 embedding never needs a second full-size copy."""
    for module in lora.modules:
        key = f"{module}.weight"
        weights[key] = adapted_weight(weights[key], lora, module, t, in_place=True)


def _split(raw: dict[str, torch.Tensor], *, where: Path) -> tuple[dict, dict, float]:
    text = {k[len(TEXT_PREFIX):]: v for k, v in raw.items() if k.startswith(TEXT_PREFIX)}
    vision = {k[len(VISION_PREFIX):]: v for k, v in raw.items() if k.startswith(VISION_PREFIX)}
    other = sorted(k for k in raw if not k.startswith((TEXT_PREFIX, VISION_PREFIX)) and k != "logit_scale")
    if other:
        raise EmbccError(f"{where} has unexpected tensor {other[0]} ({len(other)} unexpected)",
                         "this is not jina-clip-v2's published layout (projections? another model?)")
    for name, part in (("text_model.transformer.*", text), ("vision_model.*", vision)):
        if not part:
            raise EmbccError(f"{where} has no {name} tensors", "the checkpoint is incomplete or of another model; re-download it")
    if "logit_scale" not in raw:
        raise EmbccError(f"{where} is missing tensor logit_scale", "the checkpoint is incomplete; re-download it")
    if raw["logit_scale"].numel() != 1:
        raise EmbccError(f"{where}: logit_scale has shape {list(raw['logit_scale'].shape)}, not a scalar", "re-download the checkpoint")
    return text, vision, float(raw["logit_scale"].float().reshape(()))


def _text_config(renamed: dict[str, torch.Tensor], settings: dict, *, where: Path) -> JinaEmbeddingsV3Config:
    """Widths from the tensors (they are not in config.json); heads, eps, theta ... from the kwargs or v3's file."""
    emb = renamed.get("embeddings.word_embeddings.weight")
    fc1 = renamed.get("layers.0.mlp.fc1.weight")
    if emb is None or emb.ndim != 2 or fc1 is None or fc1.ndim != 2:
        missing = "word_embeddings" if emb is None or emb.ndim != 2 else "encoder.layers.0.mlp.fc1"
        raise EmbccError(f"{where}: the text tower lacks {missing} (or it is not a matrix)", "re-download the checkpoint")
    vocab, hidden = emb.shape
    layers = 1 + max(int(m.group(1)) for k in renamed if (m := re.match(r"layers\.(\d+)\.", k)))
    types = renamed.get("embeddings.token_type_embeddings.weight")
    heads = settings["num_attention_heads"]
    if not isinstance(heads, int) or heads < 1 or hidden % heads or (hidden // heads) % 2:
        raise EmbccError(f"{where}: {heads} attention heads do not divide the text width {hidden} into even head sizes",
                         "set text_config.hf_model_config_kwargs.num_attention_heads to the tower's head count")
    try:
        return JinaEmbeddingsV3Config(
            vocab_size=int(vocab), hidden_size=int(hidden), num_hidden_layers=layers, num_attention_heads=heads,
            intermediate_size=int(fc1.shape[0]), hidden_act=settings["hidden_act"],
            max_position_embeddings=int(settings["max_position_embeddings"]),
            type_vocab_size=int(types.shape[0]) if types is not None else 1,
            layer_norm_eps=float(settings["layer_norm_eps"]), pad_token_id=int(settings["pad_token_id"]),
            bos_token_id=int(settings["bos_token_id"]), eos_token_id=int(settings["eos_token_id"]),
            rope_parameters={"rope_type": "default", "rope_theta": float(settings["rotary_emb_base"])},
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        )
    except (TypeError, ValueError) as e:
        raise EmbccError(f"{where}: text_config.hf_model_config_kwargs has an unusable value ({e})",
                         "pass the checkpoint's own config.json") from e


def _preprocessor(path: Path, vcfg: eva02.Eva02Config) -> dict:
    import json

    file = path / "preprocessor_config.json"
    if not file.is_file():
        raise EmbccError(f"{path} has no preprocessor_config.json", "copy it from the published model (it sets the image transform)")
    try:
        pre = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise EmbccError(f"{file} is not valid JSON ({e.msg} at line {e.lineno})", "repair or re-download it") from e
    s = image_settings(pre)
    if s.crop != (vcfg.image_size, vcfg.image_size):
        raise EmbccError(f"{file} makes {s.crop[0]}x{s.crop[1]} images but the vision tower takes {vcfg.image_size}",
                         "use the checkpoint's own preprocessor_config.json")
    return pre
