"""Inputs of a Qwen2.5-VL-style image graph (jina-embeddings-v4's `vision` part), from the facts its embcc.json
records (`image`: kind "qwen2-vl", the processor settings, vision geometry, prompt, token ids).

Shared by the runtime that feeds the graph and the family that traces it (its example inputs are built the same
way). The steps are transformers' own where it has them: the Qwen2-VL image processor (smart resize, patches),
`transformers.vision_utils` for the window index, the 2-D vision positions and the attention segments. The
M-RoPE text/image positions (`rope_index`) are written here in numpy, as Qwen2_5_VLModel.get_rope_index computes
them for one still image per row; tests/test_v4_image_graph.py holds it to transformers' function.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from embcc.core.errors import EmbccError


def processor(facts: dict[str, Any]):
    """transformers' Qwen2-VL image processor (the PIL one: no torchvision) with the checkpoint's settings."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(**facts.get("processor", {}))


def patches(images: Sequence[Any], facts: dict[str, Any], proc=None) -> tuple[np.ndarray, np.ndarray]:
    """(pixel patches [N, C*T*P*P] float32, image_grid_thw [I, 3] int64) of RGB PIL images."""
    proc = proc or processor(facts)
    out = proc(images=[im.convert("RGB") for im in images], return_tensors="np")
    return np.asarray(out["pixel_values"], np.float32), np.asarray(out["image_grid_thw"], np.int64)


def vision_inputs(pixel_values: np.ndarray, grid_thw: np.ndarray, facts: dict[str, Any]) -> dict[str, np.ndarray]:
    """The vision encoder's inputs: patches and their 2-D positions in window order, each patch's window and
    image number (the attention segments), and the permutation that restores raster order after merging."""
    import torch
    from transformers.vision_utils import (
        get_vision_cu_seqlens,
        get_vision_position_ids,
        get_vision_window_index,
    )

    grid = torch.from_numpy(np.asarray(grid_thw, np.int64))
    merge = int(facts["spatial_merge_size"])
    unit = merge * merge
    index, cu_windows = get_vision_window_index(grid, merge, int(facts["window_size"]), int(facts["patch_size"]))
    index = index.numpy()
    positions = get_vision_position_ids(grid, merge).numpy()
    n = pixel_values.shape[0]
    if n != positions.shape[0] or n % unit:
        raise EmbccError(f"{n} pixel patches do not fit image grids {grid_thw.tolist()}",
                         "build pixel_values and image_grid_thw with the same processor call")

    def reorder(x: np.ndarray) -> np.ndarray:
        return x.reshape(n // unit, unit, -1)[index].reshape(n, -1)

    seq = np.arange(n)
    windows = np.searchsorted(np.asarray(cu_windows)[1:], seq, side="right")
    images = np.searchsorted(get_vision_cu_seqlens(grid).numpy()[1:], seq, side="right")
    return {"pixel_values": reorder(np.asarray(pixel_values, np.float32)),
            "vision_positions": reorder(positions).astype(np.int64),
            "window_segments": windows.astype(np.int64), "image_segments": images.astype(np.int64),
            "restore": np.argsort(index, kind="stable").astype(np.int64)}


def prompt_ids(grid_thw: np.ndarray, tokenizer, pad_id: int, facts: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded input_ids / attention_mask [I, L]: Jina's image prompt per image, <|image_pad|> repeated once
    per merged visual token (the processor's rule)."""
    merge = int(facts["spatial_merge_size"]) ** 2
    rows = []
    for g in np.asarray(grid_thw):
        prompt = facts["prompt"].replace("<|image_pad|>", "<|image_pad|>" * (int(np.prod(g)) // merge))
        rows.append(tokenizer.encode(prompt, add_special_tokens=False).ids)
    longest = max(map(len, rows))
    ids = np.full((len(rows), longest), pad_id, np.int64)
    mask = np.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
        mask[i, :len(r)] = 1
    if int((ids == facts["image_token_id"]).sum()) != int(np.prod(grid_thw, axis=1).sum()) // merge:
        raise EmbccError("the tokenizer does not keep <|image_pad|> as one token",
                         "use the tokenizer.json published with the model")
    return ids, mask


def rope_index(input_ids: np.ndarray, attention_mask: np.ndarray, grid_thw: np.ndarray,
               facts: dict[str, Any]) -> np.ndarray:
    """M-RoPE positions [3, B, L]: text tokens count on in all three sections; a run of image tokens takes
    (t, row, column) of the merged grid offset by the position before it; the text after continues from the
    largest position + 1; padding stays 0 (Qwen2_5_VLModel.get_rope_index for still images)."""
    merge = int(facts["spatial_merge_size"])
    image = int(facts["image_token_id"])
    out = np.zeros((3, *input_ids.shape), np.int64)
    grids = iter(np.asarray(grid_thw))
    for b in range(input_ids.shape[0]):
        keep = attention_mask[b].astype(bool)
        ids = input_ids[b][keep]
        pos: list[np.ndarray] = []
        current, i = 0, 0
        while i < len(ids):
            j = i
            while j < len(ids) and (ids[j] == image) == (ids[i] == image):
                j += 1
            if ids[i] != image:
                pos.append(np.arange(j - i)[None].repeat(3, 0) + current)
                current += j - i
            else:
                t, h, w = (int(x) for x in next(grids))
                h, w = h // merge, w // merge
                tt, hh, ww = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
                pos.append(np.stack([tt, hh, ww]).reshape(3, -1) + current)
                current += max(h, w)
            i = j
        out[:, b, keep] = np.concatenate(pos, axis=1)
    return out


def vision_span(input_ids: np.ndarray, facts: dict[str, Any]) -> np.ndarray:
    """Jina's image pooling mask [B, L] int64: vision_start..vision_end inclusive, one image per row."""
    pos = np.arange(input_ids.shape[1])[None]
    start = (input_ids == facts["vision_start_token_id"]).argmax(1)[:, None]
    end = (input_ids == facts["vision_end_token_id"]).argmax(1)[:, None]
    return ((pos >= start) & (pos <= end)).astype(np.int64)


def image_feeds(pixel_values: np.ndarray, grid_thw: np.ndarray, tokenizer, pad_id: int,
                facts: dict[str, Any]) -> dict[str, np.ndarray]:
    """Every input of the image graph (but task_id) for the images of one processor call."""
    ids, mask = prompt_ids(grid_thw, tokenizer, pad_id, facts)
    return {**vision_inputs(pixel_values, grid_thw, facts), "input_ids": ids, "attention_mask": mask,
            "position_ids": rope_index(ids, mask, grid_thw, facts), "pool_mask": vision_span(ids, facts)}


__all__ = ["image_feeds", "patches", "processor", "prompt_ids", "rope_index", "vision_inputs", "vision_span"]
