"""The one image preprocessing step: every runtime, calibration and the reference call these two functions.

`load_images` turns paths, PIL images and uint8 arrays into RGB PIL images (EXIF orientation applied);
`preprocess` turns them into the float32 [B, 3, H, W] pixel_values a CLIP vision tower takes, as its
checkpoint's preprocessor_config.json asks.

jina-clip-v2's processor (JinaCLIPImageProcessor, built on open_clip's `image_transform(is_train=False)`)
does, per image: torchvision `Resize(size)` on the PIL image (shortest edge to `size`, the long edge
`int(size * long / short)`, PIL bicubic), torchvision `CenterCrop(size)` (offsets `int(round((h - size) / 2))`),
RGB, `ToTensor` (uint8 / 255 in float32), `Normalize(mean, std)` in float32. This module repeats those steps
with Pillow and numpy, so the result is the same float32 array without torchvision (whose registry wheels do not
load with embcc's CPU torch). Its preprocessor_config.json uses the processor's own keys (`size` an int,
`mean`, `std`, `resize_mode`, `interpolation`, `fill_color`); transformers' CLIPImageProcessor keys
(`size: {"shortest_edge"}`, `crop_size`, `image_mean`, `image_std`, `resample`) are read too.

One difference from Jina's `encode_image`, on purpose: EXIF orientation is applied (`ImageOps.exif_transpose`,
as transformers' `load_image` does); Jina's code opens files without it, so a phone photo stored sideways is
embedded sideways there.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from embcc.core.errors import EmbccError

ImageInput = str | Path | Image.Image | np.ndarray

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PROCESSOR_TYPES = ("JinaCLIPImageProcessor", "CLIPImageProcessor", "CLIPImageProcessorFast")
RESAMPLE_NAMES = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "random": Image.Resampling.BICUBIC,  # open_clip: 'random' is a training option; inference uses bicubic
}


# ---- loading --------------------------------------------------------------------------------------------------


def load_images(images: Sequence[ImageInput]) -> list[Image.Image]:
    """RGB PIL images from file paths, `data:image/...;base64,` strings, PIL images or uint8 arrays.

    Arrays are HxW (grayscale), HxWx3 (RGB) or HxWx4 (RGBA), dtype uint8. EXIF orientation is applied, then
    every mode (grayscale, RGBA, palette, CMYK ...) is converted to RGB as PIL's `convert("RGB")` does
    (alpha dropped, not composited). An unreadable or corrupt image is an EmbccError naming it.
    """
    if isinstance(images, (str, Path, Image.Image, np.ndarray)):
        raise EmbccError("load_images takes a list of images, not a single image", "wrap it in a list: [image]")
    return [_load_one(img, i) for i, img in enumerate(images)]


def _load_one(img: ImageInput, index: int) -> Image.Image:
    if isinstance(img, Image.Image):
        return _to_rgb(img, f"image {index} ({img.mode} {img.width}x{img.height})")
    if isinstance(img, np.ndarray):
        return _to_rgb(_from_array(img, index), f"image {index} (array)")
    if isinstance(img, str) and img.startswith("data:"):
        return _open(io.BytesIO(_data_uri(img, index)), f"image {index} (data URI)")
    if isinstance(img, str) and img.startswith(("http://", "https://")):
        raise EmbccError(f"image {index} is a URL ({img[:60]})", "embcc reads no network; download it and pass the file path")
    if isinstance(img, (str, Path)):
        path = Path(img)
        if not path.is_file():
            raise EmbccError(f"image file {path} does not exist", "pass the path of an image file")
        return _open(path, f"image file {path}")
    raise EmbccError(f"image {index} is a {type(img).__name__}", "pass file paths, PIL images or uint8 numpy arrays")


def _open(source: Path | io.BytesIO, name: str) -> Image.Image:
    """Decode now (a truncated or corrupt file fails here, not inside a batch) and return an RGB copy, so no
    file handle stays open (multi-frame files keep theirs until closed: the first frame is used)."""
    try:
        with Image.open(source) as img:
            img.load()
            return _to_rgb(img, name)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise EmbccError(f"{name} is not a readable image ({reason})", "re-encode it as PNG or JPEG") from e


def _to_rgb(img: Image.Image, name: str) -> Image.Image:
    try:
        shown = ImageOps.exif_transpose(img)  # a new image (a copy when there is nothing to turn)
        shown = img.copy() if shown is None or shown is img else shown
        return shown if shown.mode == "RGB" else shown.convert("RGB")
    except (OSError, ValueError) as e:
        raise EmbccError(f"{name} cannot be converted to RGB ({e})", "re-encode it as an 8-bit RGB PNG or JPEG") from e


def _from_array(arr: np.ndarray, index: int) -> Image.Image:
    if arr.dtype != np.uint8:
        raise EmbccError(f"image {index} is a {arr.dtype} array", "pass uint8 pixels (0-255), e.g. arr.astype(np.uint8)")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise EmbccError(f"image {index} is an array of shape {list(arr.shape)}",
                         "pass HxW (grayscale), HxWx3 (RGB) or HxWx4 (RGBA) uint8 arrays")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise EmbccError(f"image {index} is empty (shape {list(arr.shape)})", "pass an image with at least one pixel")
    return Image.fromarray(np.ascontiguousarray(arr))


def _data_uri(uri: str, index: int) -> bytes:
    header, _, data = uri.partition(",")
    if not header.startswith("data:image/") or not header.endswith(";base64") or not data:
        raise EmbccError(f"image {index} is a data URI that is not base64 image data", "use data:image/<type>;base64,<data>")
    try:
        return base64.b64decode(data, validate=True)
    except ValueError as e:
        raise EmbccError(f"image {index} is a data URI with invalid base64 ({e})", "re-encode the image data") from e


# ---- preprocessing --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSettings:
    """What preprocessor_config.json asks for, in one form."""

    size: int  # resize target: the shortest (or longest) edge, or the square side for 'squash'
    crop: tuple[int, int]  # (height, width) of the output
    resize_mode: str  # shortest | longest | squash
    resample: Image.Resampling
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fill: int  # padding value where 'longest' leaves a border
    rescale: float  # 1/255 unless the config says otherwise


def image_settings(config: dict) -> ImageSettings:
    """Read preprocessor_config.json (JinaCLIPImageProcessor or CLIPImageProcessor keys) into ImageSettings."""
    kind = config.get("image_processor_type", "JinaCLIPImageProcessor")
    if kind not in PROCESSOR_TYPES:
        raise EmbccError(f"preprocessor_config.json names image processor {kind!r}",
                         f"embcc reads {', '.join(PROCESSOR_TYPES)}")
    resize_mode = config.get("resize_mode") or "shortest"
    size = config.get("size")
    if isinstance(size, dict):
        if "shortest_edge" in size:
            size = size["shortest_edge"]
        elif "height" in size and "width" in size and size["height"] == size["width"]:
            size, resize_mode = size["height"], "squash"
        else:
            raise EmbccError(f"preprocessor_config.json has size {size}", "use an int, {'shortest_edge': N} or a square {'height', 'width'}")
    elif isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]:
        size = size[0]
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise EmbccError(f"preprocessor_config.json has size {size!r}", "set size to the model's image size, e.g. 512")
    if resize_mode not in ("shortest", "longest", "squash"):
        raise EmbccError(f"preprocessor_config.json has resize_mode {resize_mode!r}", "use shortest, longest or squash")
    crop = config.get("crop_size", size) if config.get("do_center_crop", True) else size
    if isinstance(crop, dict):
        crop = (crop.get("height"), crop.get("width"))
    elif isinstance(crop, int):
        crop = (crop, crop)
    if not (isinstance(crop, (tuple, list)) and len(crop) == 2 and all(isinstance(c, int) and c > 0 for c in crop)):
        raise EmbccError(f"preprocessor_config.json has crop_size {config.get('crop_size')!r}", "use an int or {'height', 'width'}")
    return ImageSettings(
        size=size, crop=(int(crop[0]), int(crop[1])), resize_mode=resize_mode, resample=_resample(config),
        mean=_triple(config, ("mean", "image_mean"), CLIP_MEAN), std=_triple(config, ("std", "image_std"), CLIP_STD),
        fill=int(config.get("fill_color", 0) or 0),
        rescale=float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1.0,
    )


def _resample(config: dict) -> Image.Resampling:
    value = config.get("interpolation", config.get("resample", "bicubic"))
    if isinstance(value, str) and value.lower() in RESAMPLE_NAMES:
        return RESAMPLE_NAMES[value.lower()]
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return Image.Resampling(value)
        except ValueError:
            pass
    raise EmbccError(f"preprocessor_config.json has interpolation {value!r}", "use bicubic or bilinear")


def _triple(config: dict, keys: tuple[str, str], default: tuple[float, float, float]) -> tuple[float, float, float]:
    value = next((config[k] for k in keys if config.get(k) is not None), default)
    if isinstance(value, (int, float)):
        value = (value,) * 3
    if len(value) != 3 or (keys[1] == "image_std" and any(float(v) == 0 for v in value)):
        raise EmbccError(f"preprocessor_config.json has {keys[0]} {value!r}", "give three per-channel values (std non-zero)")
    return tuple(float(v) for v in value)  # type: ignore[return-value]


def preprocess(images: Sequence[ImageInput], config: dict | ImageSettings) -> np.ndarray:
    """pixel_values float32 [B, 3, H, W] (H, W = the crop size) for `images`, as preprocessor_config.json asks."""
    s = config if isinstance(config, ImageSettings) else image_settings(config)
    pil = load_images(images)
    out = np.empty((len(pil), 3, s.crop[0], s.crop[1]), dtype=np.float32)
    mean = np.asarray(s.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(s.std, dtype=np.float32)[:, None, None]
    for i, img in enumerate(pil):
        arr = np.asarray(_crop(_resize(img, s), s), dtype=np.uint8)
        x = arr.transpose(2, 0, 1).astype(np.float32)
        x = x / np.float32(255) if s.rescale == 1 / 255 else x * np.float32(s.rescale)
        out[i] = (x - mean) / std
    return out


def _resize(img: Image.Image, s: ImageSettings) -> Image.Image:
    w, h = img.size
    if s.resize_mode == "squash":
        size = (s.crop[1], s.crop[0])
    elif s.resize_mode == "shortest":  # torchvision Resize(int): short edge -> size, long edge truncated
        short, long = min(w, h), max(w, h)
        new_short, new_long = s.size, int(s.size * long / short)
        size = (new_short, new_long) if w <= h else (new_long, new_short)
    else:  # longest: open_clip's ResizeKeepRatio(longest=1), each edge rounded
        ratio = max(h / s.crop[0], w / s.crop[1])
        size = (round(w / ratio), round(h / ratio))
    return img if size == (w, h) else img.resize(size, s.resample)


def _crop(img: Image.Image, s: ImageSettings) -> Image.Image:
    """torchvision's center crop (and open_clip's CenterCropOrPad: pad with `fill` where the image is smaller)."""
    ch, cw = s.crop
    w, h = img.size
    if cw > w or ch > h:
        left, top = (cw - w) // 2 if cw > w else 0, (ch - h) // 2 if ch > h else 0
        canvas = Image.new("RGB", (max(w, cw), max(h, ch)), (s.fill,) * 3)
        canvas.paste(img, (left, top))
        img, (w, h) = canvas, canvas.size
    if (w, h) == (cw, ch):
        return img
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    return img.crop((left, top, left + cw, top + ch))
