"""jina-clip-v2's vision tower (EVA02-L/14 as Jina publishes it), export side: a float32 torch module.

It loads the checkpoint's `vision_model.*` tensors with the prefix stripped, under their own names:
`patch_embed.proj` (Conv2d, bias), `cls_token` [1, 1, W], `pos_embed` [1, 1 + G*G, W]; per block
`blocks.{i}.norm1`, `attn.q_proj/k_proj/v_proj` (no bias) with `attn.q_bias`/`attn.v_bias` (k has no bias),
`attn.inner_attn_ln`, `attn.proj`, `norm2`, `mlp.w1/w2` (SwiGLU gate/value), `mlp.ffn_ln`, `mlp.w3`; final `norm`.
No RoPE buffers are stored: the table is rebuilt here.

The math (Jina's eva_model.py / rope_embeddings.py, eval mode, as configured by `vision_config`: `subln`,
`naive_swiglu`, `rope_embeddings`, `intp_freq` true, `post_norm` false, no layer scale, no head projection):
  x = [cls; patch_embed(pixels)] + pos_embed
  per block (pre-norm, LayerNorm eps 1e-6):
    h = norm1(x); q = h Wq^T + q_bias; k = h Wk^T; v = h Wv^T + v_bias   (heads of `head_width`)
    q, k = RoPE(q), RoPE(k) on the patch tokens only (CLS unrotated)
    x += proj(inner_attn_ln(softmax(q k^T / sqrt(head_width)) v))
    h = norm2(x); x += w3(ffn_ln(silu(w1 h) * w2 h))
  output = norm(x)[:, 0]   (CLS; the image embedding before L2)
RoPE: per axis, head_width/2 dims: freqs 1/10000^(arange(0, d, 2)/d) with d = head_width/2, positions
arange(G)/G * pt_hw_seq_len (the G x G grid interpolated to the 16x16 pretraining grid), each freq repeated twice
(interleaved); the head dim is [row angles | column angles], token order row-major, and the rotation acts on
ADJACENT pairs (x[2i], x[2i+1]) -> (x[2i] cos - x[2i+1] sin, x[2i+1] cos + x[2i] sin).
The table is computed in float32 by the same operations as Jina's, so it is the same table bit for bit; CLS gets
an identity row (cos 1, sin 0), which leaves it exactly unrotated without slicing the sequence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from embcc.core.errors import EmbccError

LN_EPS = 1e-6  # Jina's _build_vision_tower: partial(LayerNorm, eps=1e-6)
ROPE_THETA = 10000.0  # VisionRotaryEmbeddingFast default (freqs_for='lang')
# vision_config switches whose published value is the only one this module implements
REQUIRED = {"subln": True, "naive_swiglu": True, "rope_embeddings": True, "post_norm": False}
# JinaCLIPVisionConfig's defaults: what Jina's code builds when config.json leaves a key out
JINA_DEFAULTS = {
    "embed_dim": 768, "width": 768, "image_size": 224, "patch_size": 16, "layers": 12, "head_width": 64,
    "mlp_ratio": 4.0, "ls_init_value": None, "qkv_bias": True, "post_norm": False, "rope_embeddings": False,
    "pt_hw_seq_len": 16, "intp_freq": False, "naive_swiglu": False, "subln": False, "proj_type": None,
}


@dataclass(frozen=True)
class Eva02Config:
    width: int
    layers: int
    head_width: int
    image_size: int
    patch_size: int
    mlp_ratio: float
    qkv_bias: bool = True
    pt_hw_seq_len: int = 16
    intp_freq: bool = True

    @property
    def heads(self) -> int:
        return self.width // self.head_width

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size  # PatchEmbed's Conv2d drops the remainder (512 = 36 * 14 + 8)

    @property
    def mlp_hidden(self) -> int:
        return int(self.width * self.mlp_ratio)  # as Block: int(dim * mlp_ratio); 1024 * 2.6667 -> 2730

    @classmethod
    def from_vision_config(cls, vc: dict, *, where: str | Path = "config.json") -> Eva02Config:
        """Read config.json's `vision_config` (JinaCLIPVisionConfig keys); refuse what this module does not do."""
        if not isinstance(vc, dict):
            raise EmbccError(f"{where} has no vision_config object", "pass a jina-clip-v2 checkpoint as published")
        vc = {**JINA_DEFAULTS, **vc}
        for key, want in REQUIRED.items():
            if bool(vc[key]) != want:
                raise EmbccError(f"{where}: vision_config.{key} is {vc.get(key)!r}; jina-clip-v2 publishes {want}",
                                 "embcc implements the published EVA02 variant only")
        if vc.get("ls_init_value") not in (None, 0, 0.0):
            raise EmbccError(f"{where}: vision_config.ls_init_value is {vc['ls_init_value']} (layer scale)",
                             "embcc implements the published EVA02 variant (no layer scale) only")
        if vc.get("proj_type") is not None:
            raise EmbccError(f"{where}: vision_config.proj_type is {vc['proj_type']!r}",
                             "embcc implements the published EVA02 variant (no head projection) only")
        try:
            cfg = cls(width=int(vc["width"]), layers=int(vc["layers"]), head_width=int(vc["head_width"]),
                      image_size=int(vc["image_size"]), patch_size=int(vc["patch_size"]),
                      mlp_ratio=float(vc["mlp_ratio"]), qkv_bias=bool(vc["qkv_bias"]),
                      pt_hw_seq_len=int(vc["pt_hw_seq_len"]), intp_freq=bool(vc["intp_freq"]))
            embed_dim = int(vc["embed_dim"])
        except (TypeError, ValueError) as e:
            raise EmbccError(f"{where}: vision_config has a non-numeric size ({e})", "pass the checkpoint's own config.json") from e
        problems = (  # checked in order, each only once the ones before it hold
            lambda: cfg.width > 0 and cfg.head_width > 0 and cfg.width % cfg.head_width == 0
            or f"width {cfg.width} is not a positive multiple of head_width {cfg.head_width}",
            lambda: cfg.head_width % 4 == 0
            or f"head_width {cfg.head_width} is not a multiple of 4 (2D RoPE rotates pairs on two axes)",
            lambda: 0 < cfg.patch_size <= cfg.image_size  # 512 / 14: a 36 x 36 grid, the last 8 pixels unused
            or f"patch_size {cfg.patch_size} does not fit image_size {cfg.image_size}",
            lambda: cfg.layers > 0 and cfg.mlp_hidden > 0
            or f"layers {cfg.layers} and mlp_ratio {cfg.mlp_ratio} give an empty tower",
            lambda: embed_dim == cfg.width or f"embed_dim {embed_dim} differs from width {cfg.width} (no projection)",
            lambda: cfg.intp_freq or cfg.grid == cfg.pt_hw_seq_len
            or f"intp_freq is false but the patch grid {cfg.grid} is not pt_hw_seq_len {cfg.pt_hw_seq_len}",
        )
        for check in problems:
            verdict = check()
            if verdict is not True:
                raise EmbccError(f"{where}: vision_config {verdict}", "pass the checkpoint's own config.json")
        return cfg


def rope_table(cfg: Eva02Config) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [G*G, head_width] float32 for the patch tokens, by VisionRotaryEmbeddingFast's operations."""
    d = cfg.head_width // 2
    freqs = 1.0 / (ROPE_THETA ** (torch.arange(0, d, 2)[: d // 2].float() / d))
    ft = cfg.grid if cfg.intp_freq else cfg.pt_hw_seq_len
    t = torch.arange(ft) / ft * cfg.pt_hw_seq_len
    ang = (t[:, None] * freqs[None, :]).repeat_interleave(2, dim=-1)  # [G, d]: f0 f0 f1 f1 ...
    grid = torch.cat([ang[:, None, :].expand(ft, ft, d), ang[None, :, :].expand(ft, ft, d)], dim=-1)  # [rows | cols]
    grid = grid.reshape(ft * ft, 2 * d)
    return grid.cos(), grid.sin()


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3 ...) -> (-x1, x0, -x3, x2 ...): the rotation partner of each adjacent pair."""
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)


class PatchEmbed(nn.Module):
    def __init__(self, cfg: Eva02Config):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.width, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, G*G, W], row-major over the grid


class Attention(nn.Module):
    def __init__(self, cfg: Eva02Config):
        super().__init__()
        w = cfg.width
        self.heads = cfg.heads
        self.q_proj = nn.Linear(w, w, bias=False)
        self.k_proj = nn.Linear(w, w, bias=False)
        self.v_proj = nn.Linear(w, w, bias=False)
        if cfg.qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(w))
            self.v_bias = nn.Parameter(torch.zeros(w))
        else:
            self.q_bias = self.v_bias = None
        self.inner_attn_ln = nn.LayerNorm(w, eps=LN_EPS)
        self.proj = nn.Linear(w, w)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # [B, H, N, Dh]

        q = heads(F.linear(x, self.q_proj.weight, self.q_bias))
        k = heads(F.linear(x, self.k_proj.weight))
        v = heads(F.linear(x, self.v_proj.weight, self.v_bias))
        q = q * cos + rotate_pairs(q) * sin
        k = k * cos + rotate_pairs(k) * sin
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(head_width), as Jina's qk_scale=None
        return self.proj(self.inner_attn_ln(out.transpose(1, 2).flatten(2)))


class SwiGLU(nn.Module):
    def __init__(self, cfg: Eva02Config):
        super().__init__()
        self.w1 = nn.Linear(cfg.width, cfg.mlp_hidden)
        self.w2 = nn.Linear(cfg.width, cfg.mlp_hidden)
        self.ffn_ln = nn.LayerNorm(cfg.mlp_hidden, eps=LN_EPS)
        self.w3 = nn.Linear(cfg.mlp_hidden, cfg.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(self.ffn_ln(F.silu(self.w1(x)) * self.w2(x)))


class Block(nn.Module):
    def __init__(self, cfg: Eva02Config):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=LN_EPS)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.width, eps=LN_EPS)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


class Eva02VisionTower(nn.Module):
    """forward(pixel_values [B, 3, S, S] float32) -> image embedding [B, width] (CLS after norm, before L2)."""

    def __init__(self, cfg: Eva02Config):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.grid * cfg.grid + 1, cfg.width))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.width, eps=LN_EPS)
        cos, sin = rope_table(cfg)
        one, zero = torch.ones(1, cfg.head_width), torch.zeros(1, cfg.head_width)
        self.register_buffer("rope_cos", torch.cat([one, cos]), persistent=False)  # [1 + G*G, Dh]; row 0: CLS
        self.register_buffer("rope_sin", torch.cat([zero, sin]), persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixel_values)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x, self.rope_cos, self.rope_sin)
        return self.norm(x)[:, 0]


def expected_shapes(cfg: Eva02Config) -> dict[str, torch.Size]:
    """The state-dict names and shapes a checkpoint's `vision_model.*` tensors must have (prefix stripped)."""
    with torch.device("meta"):
        return {k: v.shape for k, v in Eva02VisionTower(cfg).state_dict().items()}


def build(cfg: Eva02Config, weights: dict[str, torch.Tensor]) -> Eva02VisionTower:
    """A float32 eval-mode tower holding `weights` (names as expected_shapes; strict)."""
    tower = Eva02VisionTower(cfg)
    tower.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    return tower.float().eval().requires_grad_(False)


def num_params(cfg: Eva02Config) -> int:
    return sum(math.prod(s) for s in expected_shapes(cfg).values())
