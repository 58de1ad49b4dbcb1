"""jina-embeddings-v4's image graph for ONNX: Qwen2.5-VL's vision encoder, the splice of its visual tokens into
Jina's image prompt, and the decoder, in one traceable module.

transformers' vision forward cannot be traced: its window attention splits the patches by `cu_seqlens` values
(`.tolist()`) and reorders them by indices computed from the grid in Python loops. Public Qwen2.5-VL exports take
those as graph inputs; so does this graph, computed by the runtime with transformers' own helpers
(`transformers.vision_utils`), and every attention segment becomes a boolean mask over the patches (patches attend
within their window, or within their image in the full-attention blocks). Inputs (patches in window order):

- pixel_values [N, C*T*P*P] float: the Qwen2-VL processor's patches, reordered by the window index
- vision_positions [N, 2] int64: each patch's (row, column) for the 2-D vision RoPE, same order
- window_segments, image_segments [N] int64: each patch's window / image number, same order
- restore [N / merge^2] int64: argsort of the window index (merged tokens back to raster order)
- input_ids, attention_mask, pool_mask [B, L] int64; position_ids [3, B, L] int64 (M-RoPE); [task_id]

Outputs as the text graph's: text_embeds, sentence_embedding (L2 mean over pool_mask), multi_vector_embeddings.
The submodules are transformers' own (patch embed, norms, qkv/proj, MLP, merger, rotary, apply_rotary_pos_emb_vision);
only the attention over the segment masks is written here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from embcc.core.contract import GraphContract
from embcc.families.jina_v4_layout import V4Checkpoint
from embcc.families.jina_v4_model import OUTPUTS, V4TextGraph

INPUTS = ["pixel_values", "vision_positions", "window_segments", "image_segments", "restore",
          "input_ids", "attention_mask", "position_ids", "pool_mask"]


class V4ImageGraph(nn.Module):
    def __init__(self, visual: nn.Module, text: V4TextGraph, image_token_id: int):
        super().__init__()
        self.visual = visual
        self.text = text
        self.image_token_id = int(image_token_id)

    @property
    def keeps_adapters(self) -> bool:
        return self.text.keeps_adapters

    def encode(self, pixel_values: torch.Tensor, vision_positions: torch.Tensor, window_segments: torch.Tensor,
               image_segments: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        """Merged visual tokens [N / merge^2, hidden] in raster order, as transformers' pooler_output."""
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision

        v = self.visual
        h = v.patch_embed(pixel_values.float())
        cos, sin = v.rotary_pos_emb(h, vision_positions)
        windows = (window_segments[:, None] == window_segments[None, :])[None, None]
        images = (image_segments[:, None] == image_segments[None, :])[None, None]
        n = h.shape[0]
        for i, blk in enumerate(v.blocks):
            attn = blk.attn
            q, k, val = attn.qkv(blk.norm1(h)).reshape(n, 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
            q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
            out = nn.functional.scaled_dot_product_attention(
                q.transpose(0, 1)[None], k.transpose(0, 1)[None], val.transpose(0, 1)[None],
                attn_mask=images if i in v.fullatt_block_indexes else windows)
            h = h + attn.proj(out[0].transpose(0, 1).reshape(n, -1))
            h = h + blk.mlp(blk.norm2(h))
        return v.merger(h)[restore]

    def forward(self, pixel_values: torch.Tensor, vision_positions: torch.Tensor, window_segments: torch.Tensor,
                image_segments: torch.Tensor, restore: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor, position_ids: torch.Tensor, pool_mask: torch.Tensor,
                task_id: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        visual = self.encode(pixel_values, vision_positions, window_segments, image_segments, restore)
        embeds = self.text.model.language_model.embed_tokens(input_ids)
        slots = input_ids == self.image_token_id
        # the k-th <|image_pad|> of the batch (row-major) takes the k-th visual token, as masked_scatter does
        index = (slots.reshape(-1).to(torch.long).cumsum(0) - 1).clamp(min=0).reshape(slots.shape)
        embeds = torch.where(slots.unsqueeze(-1), visual[index].to(embeds.dtype), embeds)
        return self.text.decode(embeds, attention_mask, position_ids, pool_mask, task_id)


def build_image_graph(ckpt: V4Checkpoint, text: V4TextGraph) -> V4ImageGraph:
    """The image graph over `text` (the decoder with the task merged, or every adapter kept) and the checkpoint's
    vision tower (no adapters: Jina's exclude the vision tower)."""
    from embcc.families.jina_v4_model import build_vision_encoder

    return V4ImageGraph(build_vision_encoder(ckpt).visual, text, ckpt.image_token_id).eval()


def example_feeds(ckpt: V4Checkpoint, facts: dict[str, Any]) -> dict[str, Any]:
    """Runtime feeds for two generated images of different sizes (the trace's example inputs)."""
    from tokenizers import Tokenizer

    from embcc.core import vl_images
    from embcc.core.probe_images import probe_images

    tokenizer = Tokenizer.from_file(str(ckpt.path / "tokenizer.json"))
    pad = tokenizer.token_to_id("<|endoftext|>") or 0
    pixels, grid = vl_images.patches(probe_images()[:2], facts)
    return vl_images.image_feeds(pixels, grid, tokenizer, pad, facts)


def contract(graph: V4ImageGraph, feeds: dict[str, Any]) -> GraphContract:
    """The image graph's ONNX contract from one set of runtime feeds (numpy), every axis dynamic."""
    patches, tokens = ("patches", 16, 1 << 20), ("visual_tokens", 4, 1 << 18)
    batch, seq = ("batch", 1, 1024), ("sequence", 2, 131072)
    inputs = {k: torch.from_numpy(feeds[k]) for k in INPUTS}
    dynamic: dict = {"pixel_values": {0: patches}, "vision_positions": {0: patches}, "window_segments": {0: patches},
                     "image_segments": {0: patches}, "restore": {0: tokens}, "input_ids": {0: batch, 1: seq},
                     "attention_mask": {0: batch, 1: seq}, "position_ids": {1: batch, 2: seq},
                     "pool_mask": {0: batch, 1: seq}}
    if graph.keeps_adapters:
        inputs["task_id"] = torch.zeros(1, dtype=torch.long)
        dynamic["task_id"] = None
    return GraphContract(inputs, list(OUTPUTS), dynamic, ("task_id",) if graph.keeps_adapters else ())


__all__ = ["INPUTS", "V4ImageGraph", "build_image_graph", "contract", "example_feeds"]
