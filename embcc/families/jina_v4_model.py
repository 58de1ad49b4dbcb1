"""jina-embeddings-v4 on the export side: torch modules built from a V4Checkpoint (families/jina_v4_layout.py).

Split as public Qwen2.5-VL exports split it (a vision encoder, token embeddings, a decoder that takes embeddings
and 3-D positions), each part transformers' own module:

- `V4TextGraph` (text inputs): Qwen2_5_VLTextModel + the multi-vector projector; forward(input_ids,
  attention_mask[, task_id]) -> (token states, single vector, multi-vector) from ONE forward pass. Text positions
  are M-RoPE with all three sections equal to the 1-D position (cumsum of the mask, so left and right padding
  agree). The task's adapter is merged, or all adapters are kept behind task_id (core.lora.keep_adapters).
  Traceable by torch.onnx.export(dynamo=True) with dynamic batch and sequence.
- `V4DecoderGraph`: the same decoder over given embeddings, attention mask, positions [3, B, L] and pooling mask
  (the image path's decoder; also traceable).
- `V4VisionEncoder`: Qwen2_5_VisionTransformerPretrainedModel: pixel patches [N, 3*2*14*14] + image_grid_thw
  [I, 3] -> merged visual tokens [N / merge^2, hidden] (eager; its window attention is data-dependent).
- `V4ImageEmbedder`: the image path glue: Jina's image prompt with <|image_pad|> repeated per visual token,
  visual tokens spliced at the image_pad positions, 3-D positions from transformers' own
  Qwen2_5_VLModel.get_rope_index, single vector = mean over vision_start..vision_end inclusive.

Outputs follow Jina's code: single = L2(mean of the last hidden state over the pooling mask); multi =
L2(projector(state)) per token, times the attention mask.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from embcc.core.contract import GraphContract, text_contract
from embcc.core.errors import EmbccError
from embcc.core.gguf_facts import GgufFacts
from embcc.core.lora import TaskSelector, keep_adapters, merged_weights
from embcc.core.weights import shape_of
from embcc.core.weights import stream as stream_module
from embcc.families.jina_v4_layout import PROJECTOR, V4Checkpoint, image_facts

OUTPUTS = ["text_embeds", "sentence_embedding", "multi_vector_embeddings"]
_LM = "model.language_model."


# ---- configs ----------------------------------------------------------------------------------------------------


def text_config(ckpt: V4Checkpoint, *, rope_theta: float | None = None, mrope_section: Sequence[int] | None = None):
    """The checkpoint's Qwen2_5_VLTextConfig, float32 / sdpa, RoPE from the checkpoint's facts (or overrides)."""
    cfg = copy.deepcopy(ckpt.qwen_config.text_config)
    cfg.rope_parameters = {"rope_type": "default", "rope_theta": float(rope_theta or ckpt.rope_theta),
                           "mrope_section": list(mrope_section or ckpt.mrope_section)}
    cfg._attn_implementation = "sdpa"
    cfg.use_cache = False
    return cfg


def _build(cls: type, cfg: Any, weights: dict[str, torch.Tensor] | None, buffers: dict[str, type]) -> nn.Module:
    """A transformers module holding `weights` (assigned, not copied): built on the meta device, its
    non-persistent buffers (RoPE tables) rebuilt on the CPU. `weights` None: the parameters stay on the meta
    device (a streamed export writes them from the files)."""
    with torch.device("meta"):
        module = cls(cfg)
    if weights is not None:
        module.load_state_dict(weights, strict=True, assign=True)
    for name, rope_cls in buffers.items():
        setattr(module, name, rope_cls(cfg))
    return module.float().eval()


def language_model(ckpt: V4Checkpoint, weights: dict[str, torch.Tensor] | None = None, *, meta: bool = False,
                   **rope: Any) -> nn.Module:
    """transformers' Qwen2_5_VLTextModel with the checkpoint's (or the given, native-named) weights; `meta`: none
    read (the parameters on the meta device)."""
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
        Qwen2_5_VLRotaryEmbedding,
        Qwen2_5_VLTextModel,
    )

    weights = ckpt.weights if weights is None else weights
    lm = None if meta else {k[len(_LM):]: weights[k] for k in weights if k.startswith(_LM)}  # keys first: nothing else read
    return _build(Qwen2_5_VLTextModel, text_config(ckpt, **rope), lm, {"rotary_emb": Qwen2_5_VLRotaryEmbedding})


# fp32 bytes of the language model above which its ONNX graph is traced on the meta device and its weights are
# written from the files one tensor at a time (full size: 12.4 GB, more than the machine may hold twice)
STREAM_BYTES = 2 << 30


def language_model_bytes(weights: Any) -> int:
    """The language model's size at fp32, from the tensors' shapes (nothing read)."""
    return 4 * sum(math.prod(shape_of(weights, k)) for k in weights if k.startswith(_LM))


# ---- the decoder and the text graph -----------------------------------------------------------------------------


def text_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """M-RoPE positions [3, B, L] of a text-only input: each section the 1-D position of a real token."""
    pos = (attention_mask.to(torch.long).cumsum(-1) - 1).clamp(min=0)
    return pos.unsqueeze(0).expand(3, -1, -1)


class _Inner(nn.Module):
    """Holds the language model as `language_model`, so module names match the checkpoint's
    (`model.language_model.layers...`) and the LoraSet's."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.language_model = lm


class V4TextGraph(nn.Module):
    def __init__(self, lm: nn.Module, projector: nn.Linear, selector: TaskSelector | None = None):
        super().__init__()
        self.model = _Inner(lm)
        self.multi_vector_projector = projector
        self.selector = selector

    @property
    def keeps_adapters(self) -> bool:
        return self.selector is not None

    def decode(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
               pool_mask: torch.Tensor, task_id: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.selector is not None:
            self.selector.task_id = task_id
        states = self.model.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                           position_ids=position_ids, use_cache=False).last_hidden_state
        p = pool_mask.to(states.dtype).unsqueeze(-1)
        single = nn.functional.normalize((states * p).sum(1) / p.sum(1).clamp(min=1.0), p=2.0, dim=-1)
        multi = nn.functional.normalize(self.multi_vector_projector(states), p=2.0, dim=-1)
        return states, single, multi * attention_mask.to(states.dtype).unsqueeze(-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, task_id: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        embeds = self.model.language_model.embed_tokens(input_ids)
        return self.decode(embeds, attention_mask, text_positions(attention_mask), attention_mask, task_id)


class V4DecoderGraph(nn.Module):
    """The decoder over embeddings (the image path's graph): forward(inputs_embeds, attention_mask, position_ids,
    pool_mask[, task_id]) -> (states, single, multi)."""

    def __init__(self, text: V4TextGraph):
        super().__init__()
        self.text = text

    @property
    def keeps_adapters(self) -> bool:
        return self.text.keeps_adapters

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                pool_mask: torch.Tensor, task_id: torch.Tensor | None = None):
        return self.text.decode(inputs_embeds, attention_mask, position_ids, pool_mask, task_id)


def build_text_graph(ckpt: V4Checkpoint, *, task: str | None = None, keep: bool = False,
                     rope_theta: float | None = None, mrope_section: Sequence[int] | None = None,
                     stream: bool = False) -> V4TextGraph:
    """The text graph with `task`'s adapter merged (language model and projector), every adapter kept behind
    task_id (`keep`), or no adapter (neither). `stream`: the language model and projector stay on the meta
    device and `graph.stream_weights(name)` reads each from `ckpt.weights` when a streamed ONNX export writes it
    (embcc.core.weights.stream)."""
    if keep and task is not None:
        raise EmbccError("a graph keeps every adapter or merges one task, not both", "pass task= or keep=True")
    weights = ckpt.weights
    if task is not None:
        if task not in ckpt.tasks:
            raise EmbccError(f"unknown task {task!r} for jina-embeddings-v4", f"choose one of: {', '.join(ckpt.tasks)}")
        weights = merged_weights(weights, ckpt.lora, task)
    lm = language_model(ckpt, weights, meta=stream, rope_theta=rope_theta, mrope_section=mrope_section)
    out_f, in_f = shape_of(weights, f"{PROJECTOR}.weight")
    with torch.device("meta"):
        projector = nn.Linear(in_f, out_f)
    if not stream:
        projector.load_state_dict({"weight": weights[f"{PROJECTOR}.weight"], "bias": weights[f"{PROJECTOR}.bias"]},
                                  assign=True)
    graph = V4TextGraph(lm, projector.float())
    if keep:
        graph.selector = keep_adapters(graph, ckpt.lora)
    if stream:  # kept adapters wrap a Linear as `.base`: its weight is the checkpoint's `<module>.weight`
        stream_module(graph, lambda name: weights[name.replace(".base.", ".")])
    return graph.eval()


# ---- the vision encoder and the image path ----------------------------------------------------------------------


class V4VisionEncoder(nn.Module):
    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual

    @property
    def merge_size(self) -> int:
        return int(self.visual.spatial_merge_size)

    def forward(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> torch.Tensor:
        """Pixel patches [N, C*T*P*P] (the Qwen2-VL processor's layout) -> merged visual tokens [N/m^2, hidden]."""
        return self.visual(pixel_values.float(), grid_thw=image_grid_thw).pooler_output


def build_vision_encoder(ckpt: V4Checkpoint) -> V4VisionEncoder:
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
        Qwen2_5_VisionTransformerPretrainedModel,
        Qwen2_5_VLVisionRotaryEmbedding,
    )

    cfg = copy.deepcopy(ckpt.qwen_config.vision_config)
    cfg._attn_implementation = "sdpa"
    visual = _build(Qwen2_5_VisionTransformerPretrainedModel, cfg, ckpt.visual_weights(),
                    {"rotary_pos_emb": Qwen2_5_VLVisionRotaryEmbedding})
    return V4VisionEncoder(visual)


def vision_span(input_ids: torch.Tensor, start_id: int, end_id: int) -> torch.Tensor:
    """Jina's image pooling mask: vision_start..vision_end inclusive (one image per row)."""
    pos = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    start = (input_ids == start_id).to(torch.long).argmax(1, keepdim=True)
    end = (input_ids == end_id).to(torch.long).argmax(1, keepdim=True)
    return (pos >= start) & (pos <= end)


class V4ImageEmbedder:
    """Images through the vision encoder and the decoder: tokenise the prompt, splice, 3-D positions, pool."""

    def __init__(self, ckpt: V4Checkpoint, vision: V4VisionEncoder, text: V4TextGraph):
        from tokenizers import Tokenizer
        from transformers import Qwen2_5_VLModel

        self.ckpt, self.vision, self.text = ckpt, vision, text
        self.tokenizer = Tokenizer.from_file(str(Path(ckpt.path) / "tokenizer.json"))
        pad = self.tokenizer.token_to_id("<|endoftext|>")
        self.pad_id = 0 if pad is None else pad
        with torch.device("meta"):  # only its get_rope_index (config arithmetic) is used
            self._rope_index_model = Qwen2_5_VLModel(ckpt.qwen_config)

    def prompt_ids(self, image_grid_thw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded input_ids and attention_mask, one image prompt per grid row (embcc.core.vl_images, as
        the runtime builds them for the ONNX image graph)."""
        from embcc.core import vl_images

        ids, mask = vl_images.prompt_ids(image_grid_thw.numpy(), self.tokenizer, self.pad_id, image_facts(self.ckpt))
        return torch.from_numpy(ids), torch.from_numpy(mask)

    def positions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  image_grid_thw: torch.Tensor) -> torch.Tensor:
        """M-RoPE 3-D positions [3, B, L] by transformers' own Qwen2_5_VLModel.get_rope_index."""
        mm = (input_ids == self.ckpt.image_token_id).to(torch.int32)
        pos, _ = self._rope_index_model.get_rope_index(input_ids, mm, image_grid_thw=image_grid_thw,
                                                       attention_mask=attention_mask)
        return pos

    def __call__(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor,
                 task_id: torch.Tensor | None = None, input_ids: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if input_ids is None:
            input_ids, attention_mask = self.prompt_ids(image_grid_thw)
        assert attention_mask is not None
        with torch.no_grad():
            visual = self.vision(pixel_values, image_grid_thw)
            embeds = self.text.model.language_model.embed_tokens(input_ids)
            slots = (input_ids == self.ckpt.image_token_id).unsqueeze(-1)
            if int(slots.sum()) != visual.shape[0]:
                raise EmbccError(f"{int(slots.sum())} <|image_pad|> tokens for {visual.shape[0]} visual tokens",
                                 "build the prompt with prompt_ids() from the same image_grid_thw")
            embeds = embeds.masked_scatter(slots, visual.to(embeds.dtype))
            pos = self.positions(input_ids, attention_mask, image_grid_thw)
            pool = vision_span(input_ids, self.ckpt.vision_start_token_id, self.ckpt.vision_end_token_id)
            return self.text.decode(embeds, attention_mask, pos, pool, task_id)


# ---- ONNX ---------------------------------------------------------------------------------------------------------


def contract(graph: V4TextGraph | V4DecoderGraph) -> GraphContract:
    """The ONNX contract of a text or decoder graph, batch and sequence dynamic.

    Text graph inputs: input_ids, attention_mask (int64 [B, L]) [, task_id]; decoder graph inputs:
    inputs_embeds [B, L, H], attention_mask, position_ids (int64 [3, B, L]), pool_mask [, task_id]. Outputs:
    text_embeds [B, L, H], sentence_embedding [B, H] (L2), multi_vector_embeddings [B, L, 128] (L2, x mask)."""
    if not isinstance(graph, V4DecoderGraph):
        return text_contract(graph.keeps_adapters, outputs=tuple(OUTPUTS))
    batch, seq = ("batch", 1, 1024), ("sequence", 2, 131072)
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[1, 8:] = 0
    hidden = graph.text.model.language_model.config.hidden_size
    pool = mask.clone()  # a distinct tensor: the exporter would otherwise fold the two inputs into one
    pool[0, :3] = 0
    inputs = {"inputs_embeds": torch.randn(2, 16, hidden), "attention_mask": mask,
              "position_ids": text_positions(mask).contiguous(), "pool_mask": pool}
    dynamic: dict = {"inputs_embeds": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq},
                     "position_ids": {1: batch, 2: seq}, "pool_mask": {0: batch, 1: seq}}
    if graph.keeps_adapters:
        inputs["task_id"] = torch.zeros(1, dtype=torch.long)
        dynamic["task_id"] = None
    return GraphContract(inputs, list(OUTPUTS), dynamic, ("task_id",) if graph.keeps_adapters else ())


# ---- GGUF (llama.cpp `qwen2vl`, text only, merged per task, as Jina publishes) ----------------------------------


def _text(config: dict) -> dict:
    """The text keys of a published config: `text_config` if present (transformers reads it first), else flat."""
    return config["text_config"] if isinstance(config.get("text_config"), dict) else config


def _head_dim(config: dict) -> int:
    t = _text(config)
    return int(t["hidden_size"]) // int(t["num_attention_heads"])


def _mrope_sections(config: dict) -> list[int]:
    """llama.cpp's `rope.dimension_sections`: the three M-RoPE sections padded to four with zeros (its converter)."""
    t = _text(config)
    rope = t.get("rope_scaling") or t.get("rope_parameters") or config.get("rope_scaling") or {}
    section = list(rope["mrope_section"])
    return section + [0] * (4 - len(section))


def _cfg(key: str, cast: type = int):
    def read(config: dict) -> Any:
        t = _text(config)
        if t.get(key) is None:
            raise KeyError(key)
        return cast(t[key])
    return read


GGUF_FACTS = GgufFacts(
    arch="qwen2vl", causal=True, tokenizer="gpt2", pre_tokenizer="qwen2",
    hparams={
        "block_count": _cfg("num_hidden_layers"), "embedding_length": _cfg("hidden_size"),
        "feed_forward_length": _cfg("intermediate_size"), "attention.head_count": _cfg("num_attention_heads"),
        "attention.head_count_kv": _cfg("num_key_value_heads"),
        "attention.layer_norm_rms_epsilon": _cfg("rms_norm_eps", float),
        "rope.dimension_count": _head_dim, "rope.dimension_sections": _mrope_sections,
    },
    # gguf-py's qwen2vl map knows the OLD names (model.layers...), not transformers 5's native
    # model.language_model.* ones the reader produces: every text tensor is declared here
    extra_tensors={
        "token_embd.weight": f"{_LM}embed_tokens.weight",
        "output_norm.weight": f"{_LM}norm.weight",
        "blk.{bid}.attn_norm.weight": f"{_LM}layers.{{bid}}.input_layernorm.weight",
        "blk.{bid}.attn_q.weight": f"{_LM}layers.{{bid}}.self_attn.q_proj.weight",
        "blk.{bid}.attn_q.bias": f"{_LM}layers.{{bid}}.self_attn.q_proj.bias",
        "blk.{bid}.attn_k.weight": f"{_LM}layers.{{bid}}.self_attn.k_proj.weight",
        "blk.{bid}.attn_k.bias": f"{_LM}layers.{{bid}}.self_attn.k_proj.bias",
        "blk.{bid}.attn_v.weight": f"{_LM}layers.{{bid}}.self_attn.v_proj.weight",
        "blk.{bid}.attn_v.bias": f"{_LM}layers.{{bid}}.self_attn.v_proj.bias",
        "blk.{bid}.attn_output.weight": f"{_LM}layers.{{bid}}.self_attn.o_proj.weight",
        "blk.{bid}.ffn_norm.weight": f"{_LM}layers.{{bid}}.post_attention_layernorm.weight",
        "blk.{bid}.ffn_gate.weight": f"{_LM}layers.{{bid}}.mlp.gate_proj.weight",
        "blk.{bid}.ffn_up.weight": f"{_LM}layers.{{bid}}.mlp.up_proj.weight",
        "blk.{bid}.ffn_down.weight": f"{_LM}layers.{{bid}}.mlp.down_proj.weight",
    },
    # dropped as Jina's GGUFs drop them: the vision tower and the multi-vector projector (lm_head is tied)
    unused=("model.visual.", f"{PROJECTOR}.", "lm_head."),
)


__all__ = ["GGUF_FACTS", "OUTPUTS", "V4DecoderGraph", "V4ImageEmbedder", "V4TextGraph", "V4VisionEncoder", "contract",
           "build_text_graph", "build_vision_encoder", "language_model", "text_config",
           "text_positions", "vision_span"]
