"""Reference for jina-clip-v2's vision tower: Jina's EVA02 forward pass, spelled out from the published code.

Written apart from embcc's export path (it imports nothing from embcc.families, export or runtimes): the
weights are read from the checkpoint's safetensors under their published `vision_model.*` names and the forward
follows Jina's `eva_model.py` (EVAVisionTransformer as `_build_vision_tower` configures it: `use_mean_pooling`
False, LayerNorm eps 1e-6, head Identity) and `rope_embeddings.py` (VisionRotaryEmbeddingFast) step by step, in
eval mode (no patch dropout, no drop path) with the non-xFormers attention branch:

  x = cat(cls_token, patch_embed.proj(pixels).flatten(2).transpose(1, 2)) + pos_embed
  block:  q = linear(norm1(x), q_proj.weight, q_bias); k = linear(., k_proj.weight); v = linear(., v_proj.weight, v_bias)
          q[:, :, 1:], k[:, :, 1:] = rope(...)            # patch tokens only: the CLS token is not rotated
          x = x + proj(inner_attn_ln(softmax((q * scale) @ k^T) @ v))
          x = x + w3(ffn_ln(silu(w1(norm2(x))) * w2(norm2(x))))
  image embedding = norm(x)[:, 0]; Jina's encode_image then truncates (Matryoshka) and L2-normalises.

No maintained library can stand in: timm's `eva02_large_patch14_clip_224` holds the same architecture, but timm
imports torchvision, whose registry wheels are built against the CUDA torch and fail to import beside embcc's
CPU torch 2.13 (`operator torchvision::nms does not exist`, measured with torchvision 0.28.0).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open

from embcc.core.errors import EmbccError
from embcc.core.images import ImageInput, image_settings, preprocess

PREFIX = "vision_model."
EPS = 1e-6
# configuration_clip.JinaCLIPVisionConfig.__init__ defaults (used where config.json leaves a key out)
VISION_DEFAULTS = {
    "embed_dim": 768, "width": 768, "image_size": 224, "patch_size": 16, "layers": 12, "head_width": 64,
    "mlp_ratio": 4.0, "ls_init_value": None, "qkv_bias": True, "post_norm": False, "rope_embeddings": False,
    "pt_hw_seq_len": 16, "intp_freq": False, "naive_swiglu": False, "subln": False, "proj_type": None,
}


def _rope_tables(head_dim: int, grid: int, pt_seq_len: int, intp_freq: bool, theta: float = 10000) -> tuple[torch.Tensor, torch.Tensor]:
    """VisionRotaryEmbeddingFast(dim=head_dim // 2, pt_seq_len, ft_seq_len=grid if intp_freq else None):
    freqs_cos / freqs_sin [grid * grid, head_dim], float32, by its own operations."""
    dim = head_dim // 2
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: (dim // 2)].float() / dim))
    ft_seq_len = grid if intp_freq else pt_seq_len
    t = torch.arange(ft_seq_len) / ft_seq_len * pt_seq_len
    freqs = torch.einsum("..., f -> ... f", t, freqs)
    freqs = torch.repeat_interleave(freqs, 2, dim=-1)  # einops '... n -> ... (n r)', r=2
    rows = freqs[:, None, :].expand(ft_seq_len, ft_seq_len, dim)
    cols = freqs[None, :, :].expand(ft_seq_len, ft_seq_len, dim)
    freqs = torch.cat((rows, cols), dim=-1)  # broadcast((freqs[:, None, :], freqs[None, :, :]), dim=-1)
    return freqs.cos().view(-1, freqs.shape[-1]), freqs.sin().view(-1, freqs.shape[-1])


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    """rope_embeddings.rotate_half: '... (d r) -> ... d r' with r=2, then (-x2, x1): adjacent pairs."""
    x = x.reshape(*x.shape[:-1], -1, 2)
    x1, x2 = x.unbind(dim=-1)
    return torch.stack((-x2, x1), dim=-1).reshape(*x.shape[:-2], -1)


class ClipVisionReference:
    """Jina's EVA02 vision tower in float32 (or float64, for checks) over the published tensors."""

    def __init__(self, vision_config: dict, tensors: dict[str, torch.Tensor], *, dtype: torch.dtype = torch.float32,
                 preprocessor: dict | None = None, matryoshka_dims: Sequence[int] = ()):
        vc = {**VISION_DEFAULTS, **vision_config}
        self.dtype = dtype
        try:
            self.width, self.layers, self.head_width = int(vc["width"]), int(vc["layers"]), int(vc["head_width"])
            self.image_size, self.patch_size = int(vc["image_size"]), int(vc["patch_size"])
        except (TypeError, ValueError) as e:
            raise EmbccError(f"vision_config has a non-numeric size ({e})", "pass the checkpoint's own config.json") from e
        if self.head_width <= 0 or self.width % self.head_width or self.patch_size <= 0:
            raise EmbccError(f"vision_config: width {self.width} / head_width {self.head_width} / patch_size "
                             f"{self.patch_size} do not make a tower", "pass the checkpoint's own config.json")
        self.heads = self.width // self.head_width
        self.scale = self.head_width ** -0.5
        for key, want in (("subln", True), ("naive_swiglu", True), ("rope_embeddings", True), ("post_norm", False)):
            if bool(vc[key]) != want:
                raise EmbccError(f"vision_config.{key} is {vc.get(key)!r}; the reference implements jina-clip-v2's {want}",
                                 "pass a jina-clip-v2 checkpoint")
        if vc["ls_init_value"] or vc["proj_type"] is not None or int(vc["embed_dim"]) != int(vc["width"]):
            raise EmbccError("vision_config asks for layer scale or a head projection, which jina-clip-v2 does not use",
                             "pass a jina-clip-v2 checkpoint")
        self.w = {k[len(PREFIX):]: v.to(dtype) for k, v in tensors.items() if k.startswith(PREFIX)}
        need = ["patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed", "norm.weight", "norm.bias"]
        for i in range(self.layers):
            b = f"blocks.{i}."
            need += [b + n for n in ("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias", "attn.q_proj.weight",
                                     "attn.k_proj.weight", "attn.v_proj.weight", "attn.inner_attn_ln.weight",
                                     "attn.inner_attn_ln.bias", "attn.proj.weight", "attn.proj.bias",
                                     "mlp.w1.weight", "mlp.w1.bias", "mlp.w2.weight", "mlp.w2.bias",
                                     "mlp.ffn_ln.weight", "mlp.ffn_ln.bias", "mlp.w3.weight", "mlp.w3.bias")]
            if vc["qkv_bias"]:
                need += [b + "attn.q_bias", b + "attn.v_bias"]
        missing = [k for k in need if k not in self.w]
        if missing:
            raise EmbccError(f"the checkpoint lacks {PREFIX}{missing[0]} ({len(missing)} missing)", "re-download it")
        self.grid = self.image_size // self.patch_size
        cos, sin = _rope_tables(self.head_width, self.grid, int(vc["pt_hw_seq_len"]), bool(vc["intp_freq"]))
        if cos.shape[0] != self.grid * self.grid:
            raise EmbccError(f"vision_config: the RoPE grid {int(cos.shape[0] ** 0.5)} does not match the patch grid {self.grid}",
                             "set intp_freq true, as jina-clip-v2 publishes it")
        self.freqs_cos, self.freqs_sin = cos.to(dtype), sin.to(dtype)
        self.preprocessor = preprocessor
        self.matryoshka_dims = list(matryoshka_dims)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, dtype: torch.dtype = torch.float32) -> ClipVisionReference:
        """Read config.json, preprocessor_config.json and the `vision_model.*` tensors of a checkpoint directory."""
        path = Path(path)
        try:
            config = json.loads((path / "config.json").read_text())
            pre_file = path / "preprocessor_config.json"
            preprocessor = json.loads(pre_file.read_text()) if pre_file.is_file() else None
        except (OSError, json.JSONDecodeError) as e:
            raise EmbccError(f"{path}: cannot read its config files ({e})", "pass a jina-clip-v2 checkpoint directory") from e
        if "vision_config" not in config:
            raise EmbccError(f"{path}/config.json has no vision_config", "pass a jina-clip-v2 checkpoint directory")
        files = [path / "model.safetensors"]
        index = path / "model.safetensors.index.json"
        if not files[0].is_file() and index.is_file():
            files = [path / f for f in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
        tensors = {}
        for f in files:
            if not f.is_file():
                raise EmbccError(f"{path} lacks {f.name}", "copy every weight file of the checkpoint")
            with safe_open(str(f), framework="pt") as sf:
                for k in sf.keys():
                    if k.startswith(PREFIX):
                        tensors[k] = sf.get_tensor(k)
        return cls(config["vision_config"], tensors, dtype=dtype, preprocessor=preprocessor,
                   matryoshka_dims=config.get("matryoshka_dimensions") or [])

    def _ln(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), self.w[name + ".weight"], self.w[name + ".bias"], EPS)

    def _rope(self, t: torch.Tensor) -> torch.Tensor:
        return t * self.freqs_cos + _rotate_half(t) * self.freqs_sin

    def _attention(self, x: torch.Tensor, p: str) -> torch.Tensor:
        b, n, _ = x.shape
        w = self.w
        q = F.linear(x, w[p + "q_proj.weight"], w.get(p + "q_bias"))
        k = F.linear(x, w[p + "k_proj.weight"], None)
        v = F.linear(x, w[p + "v_proj.weight"], w.get(p + "v_bias"))
        q = q.reshape(b, n, self.heads, -1).permute(0, 2, 1, 3)  # B, heads, N, head_width
        k = k.reshape(b, n, self.heads, -1).permute(0, 2, 1, 3)
        v = v.reshape(b, n, self.heads, -1).permute(0, 2, 1, 3)
        q = torch.cat((q[:, :, :1, :], self._rope(q[:, :, 1:, :])), -2)
        k = torch.cat((k[:, :, :1, :], self._rope(k[:, :, 1:, :])), -2)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(b, n, -1)
        return F.linear(self._ln(x, p + "inner_attn_ln"), w[p + "proj.weight"], w[p + "proj.bias"])

    def _mlp(self, x: torch.Tensor, p: str) -> torch.Tensor:
        w = self.w
        hidden = F.silu(F.linear(x, w[p + "w1.weight"], w[p + "w1.bias"])) * F.linear(x, w[p + "w2.weight"], w[p + "w2.bias"])
        return F.linear(self._ln(hidden, p + "ffn_ln"), w[p + "w3.weight"], w[p + "w3.bias"])

    @torch.no_grad()
    def embed(self, pixel_values: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Image embeddings [B, width] before L2 (get_image_features: visual_projection is Identity)."""
        x = torch.as_tensor(pixel_values).to(self.dtype)
        if tuple(x.shape[1:]) != (3, self.image_size, self.image_size):
            raise EmbccError(f"pixel_values have shape {list(x.shape)}; the tower takes [B, 3, {self.image_size}, {self.image_size}]",
                             "preprocess the images with the checkpoint's preprocessor_config.json")
        w = self.w
        x = F.conv2d(x, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], stride=self.patch_size)
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat((w["cls_token"].expand(x.shape[0], -1, -1), x), dim=1) + w["pos_embed"]
        for i in range(self.layers):
            p = f"blocks.{i}."
            x = x + self._attention(self._ln(x, p + "norm1"), p + "attn.")
            x = x + self._mlp(self._ln(x, p + "norm2"), p + "mlp.")
        return self._ln(x, "norm")[:, 0]

    def encode(self, images: Sequence[ImageInput], *, dim: int | None = None, normalize: bool = True,
               batch_size: int = 8) -> np.ndarray:
        """What Jina's encode_image returns: embeddings, truncated to `dim`, then L2-normalised."""
        if self.preprocessor is None:
            raise EmbccError("the checkpoint has no preprocessor_config.json", "copy it from the published model")
        if dim is not None and self.matryoshka_dims and dim not in self.matryoshka_dims:
            raise EmbccError(f"dim {dim} is not one of the model's Matryoshka dimensions {self.matryoshka_dims}",
                             "pass one of them or leave dim unset")
        settings = image_settings(self.preprocessor)
        out = []
        for i in range(0, len(images), batch_size):
            e = self.embed(preprocess(images[i : i + batch_size], settings))
            e = e[:, :dim] if dim else e
            out.append(F.normalize(e, p=2, dim=1) if normalize else e)
        return torch.cat(out).float().numpy() if out else np.zeros((0, dim or self.width), dtype=np.float32)
