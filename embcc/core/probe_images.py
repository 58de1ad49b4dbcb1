"""Generated probe images for verify and calibration: deterministic, nothing downloaded.

`probe_images(n)` covers what preprocessing and the vision tower must survive: smooth gradients, hard-edged
shapes, rendered text (PIL's default font), noise, a 7x5 thumbnail, a 2000x1500 photo-sized image, tall and wide
frames, and the modes users hand in (grayscale L, RGBA with transparency, palette P, 1-bit, CMYK, and a JPEG
whose EXIF orientation says "rotate"). `caption_pairs()` is a small matched caption/image set for a
cross-modal retrieval check ("a red circle" with an image of a red circle ...).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLORS = {
    "red": (220, 30, 30), "green": (30, 170, 60), "blue": (30, 60, 210), "yellow": (240, 210, 20),
    "black": (0, 0, 0), "white": (255, 255, 255), "orange": (245, 130, 20), "purple": (130, 40, 170),
}


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(20261201 + seed)


def _gradient(w: int, h: int, seed: int) -> Image.Image:
    r = _rng(seed)
    c0, c1 = r.integers(0, 256, 3), r.integers(0, 256, 3)
    t = np.linspace(0.0, 1.0, w)[None, :, None] if seed % 2 == 0 else np.linspace(0.0, 1.0, h)[:, None, None]
    arr = c0 * (1 - t) + c1 * t
    return Image.fromarray(np.broadcast_to(arr, (h, w, 3)).round().astype(np.uint8))


def _radial(w: int, h: int, seed: int) -> Image.Image:
    y, x = np.mgrid[0:h, 0:w]
    d = np.hypot(x - w / 2, y - h / 2) / np.hypot(w / 2, h / 2)
    c = _rng(seed).integers(0, 256, 3)
    return Image.fromarray((c[None, None, :] * (1 - d[..., None]) + 255 * d[..., None]).astype(np.uint8))


def _shape(kind: str, color: str, w: int = 320, h: int = 320, bg: str = "white") -> Image.Image:
    img = Image.new("RGB", (w, h), COLORS[bg])
    d = ImageDraw.Draw(img)
    box = (w * 0.2, h * 0.2, w * 0.8, h * 0.8)
    fill = COLORS[color]
    if kind == "circle":
        d.ellipse(box, fill=fill)
    elif kind == "square":
        side = min(w, h) * 0.6
        d.rectangle((w / 2 - side / 2, h / 2 - side / 2, w / 2 + side / 2, h / 2 + side / 2), fill=fill)
    elif kind == "triangle":
        d.polygon([(w / 2, h * 0.15), (w * 0.85, h * 0.85), (w * 0.15, h * 0.85)], fill=fill)
    elif kind == "star":
        cx, cy, ro, ri = w / 2, h / 2, min(w, h) * 0.4, min(w, h) * 0.16
        pts = [(cx + (ro if k % 2 == 0 else ri) * np.sin(k * np.pi / 5), cy - (ro if k % 2 == 0 else ri) * np.cos(k * np.pi / 5))
               for k in range(10)]
        d.polygon(pts, fill=fill)
    elif kind == "stripes":
        for x0 in range(0, w, 40):
            d.rectangle((x0, 0, x0 + 19, h), fill=fill)
    elif kind == "checkerboard":
        for i in range(0, w, 40):
            for j in range(0, h, 40):
                if (i // 40 + j // 40) % 2 == 0:
                    d.rectangle((i, j, i + 39, j + 39), fill=fill)
    else:
        raise ValueError(kind)
    return img


def _text(words: str, w: int = 480, h: int = 200, color: str = "black", bg: str = "white") -> Image.Image:
    img = Image.new("RGB", (w, h), COLORS[bg])
    d = ImageDraw.Draw(img)
    try:
        font: ImageFont.ImageFont | ImageFont.FreeTypeFont = ImageFont.load_default(size=h // 4)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    d.text((w // 12, h // 3), words, fill=COLORS[color], font=font)
    return img


def _noise(w: int, h: int, seed: int) -> Image.Image:
    return Image.fromarray(_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _exif_rotated() -> Image.Image:
    """A JPEG stored landscape whose EXIF Orientation (6) says: rotate 90 degrees clockwise to display."""
    base = _shape("triangle", "blue", 240, 160)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    base.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    buf.seek(0)
    img = Image.open(buf)
    img.load()
    return img


def _rgba() -> Image.Image:
    img = Image.new("RGBA", (300, 220), (0, 0, 0, 0))
    ImageDraw.Draw(img).ellipse((40, 30, 260, 190), fill=(*COLORS["orange"], 255))
    return img


def _palette() -> Image.Image:
    return _shape("stripes", "purple", 256, 256).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)


_PROBES: list[Callable[[], Image.Image]] = [
    lambda: _gradient(320, 240, 0),
    lambda: _shape("circle", "red"),
    lambda: _text("Hello, world! 123"),
    lambda: _noise(256, 256, 1),
    lambda: _noise(7, 5, 2),  # tiny: upscaled ~100x
    lambda: _gradient(2000, 1500, 3),  # photo-sized: downscaled
    lambda: _shape("square", "blue", 180, 600),  # tall
    lambda: _shape("stripes", "black", 900, 200),  # wide
    lambda: _radial(300, 300, 4).convert("L"),  # grayscale
    _rgba,
    _palette,
    lambda: _shape("checkerboard", "black", 320, 320).convert("1"),  # 1-bit
    lambda: _shape("star", "yellow", 300, 300, bg="blue").convert("CMYK"),
    _exif_rotated,
    lambda: _shape("triangle", "green"),
    lambda: _text("Multilingual: Grüße, ça va, 123", 640, 160, color="white", bg="black"),
    lambda: _radial(512, 512, 5),
    lambda: _noise(64, 48, 6),
    lambda: _shape("circle", "yellow", 512, 384, bg="black"),
    lambda: _gradient(511, 513, 7),  # odd sizes around a 512 crop
    lambda: _shape("star", "red", 224, 224),
    lambda: Image.new("RGB", (128, 128), COLORS["white"]),  # flat
    lambda: Image.new("RGB", (1, 1), (120, 60, 200)),  # a single pixel
    lambda: _text("a b c d e f g h i j", 300, 300),
]


def probe_images(n: int = 24) -> list[Image.Image]:
    """`n` deterministic probe images (the fixed set first; beyond it, seeded noise/gradient variants)."""
    out = [make() for make in _PROBES[:n]]
    for i in range(len(out), n):
        w, h = 64 + 37 * (i % 9), 64 + 29 * (i % 7)
        out.append(_noise(w, h, 100 + i) if i % 2 else _gradient(w, h, 100 + i))
    return out


def caption_pairs() -> list[tuple[str, Image.Image]]:
    """Matched (caption, image) pairs: a model that works ranks each caption's own image first."""
    return [
        ("a red circle", _shape("circle", "red")),
        ("a blue square", _shape("square", "blue")),
        ("a green triangle", _shape("triangle", "green")),
        ("a yellow star on a blue background", _shape("star", "yellow", bg="blue")),
        ("black and white vertical stripes", _shape("stripes", "black")),
        ("a black and white checkerboard", _shape("checkerboard", "black")),
        ("the word HELLO written in black letters", _text("HELLO")),
        ("an orange circle on a black background", _shape("circle", "orange", bg="black")),
    ]
