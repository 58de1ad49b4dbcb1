"""jina-clip-v2 building blocks: image preprocessing, probe images, the EVA02 vision tower (export side and
reference), the fixture writer and the checkpoint reader. Fast: the tiny fixture only.

The vision towers are checked against `eva_f64` below, a float64 re-implementation written here from the
published key names and Jina's eva_model.py / rope_embeddings.py (RoPE table included); it shares no code with
embcc. Deliberately wrong RoPE variants of it must fail the same comparison.
"""

from __future__ import annotations

import base64
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

from embcc.core.errors import EmbccError
from embcc.core.images import CLIP_MEAN, CLIP_STD, image_settings, load_images, preprocess
from embcc.core.probe_images import caption_pairs, probe_images
from embcc.families import eva02
from embcc.families.jina_clip_v2_layout import detect, read
from embcc.fixtures import jina_clip_v2 as fixture
from embcc.reference.clip_vision import ClipVisionReference

BAR = 5e-6  # max abs diff between the float32 towers and the float64 re-implementation
JINA_PRE = {"image_processor_type": "JinaCLIPImageProcessor", "size": 56, "mean": list(CLIP_MEAN),
            "std": list(CLIP_STD), "resize_mode": "shortest", "interpolation": "bicubic", "fill_color": 0}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clip") / "jina-clip-v2"
    fixture.write("jina-clip-v2", out, size="tiny", seed=0)
    return out


@pytest.fixture(scope="module")
def pixels(ckpt: Path) -> torch.Tensor:
    pre = json.loads((ckpt / "preprocessor_config.json").read_text())
    return torch.from_numpy(preprocess(probe_images(), pre))


def normalized(rgb: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 -> CLIP-normalised float32 3xHxW, as ToTensor + Normalize."""
    x = rgb.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    return (x - np.asarray(CLIP_MEAN, np.float32)[:, None, None]) / np.asarray(CLIP_STD, np.float32)[:, None, None]


# ---- preprocessing ----------------------------------------------------------------------------------------------


def test_every_input_kind_gives_the_same_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 70, 3), dtype=np.uint8)
    img = Image.fromarray(rgb)
    img.save(tmp_path / "a.png")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    rgba = np.concatenate([rgb, np.full((40, 70, 1), 7, np.uint8)], axis=2)
    kinds = [tmp_path / "a.png", str(tmp_path / "a.png"), img, rgb, rgba, Image.fromarray(rgba), uri]
    out = preprocess(kinds, JINA_PRE)
    assert out.shape == (len(kinds), 3, 56, 56) and out.dtype == np.float32
    for i in range(1, len(kinds)):
        np.testing.assert_array_equal(out[i], out[0])
    assert [im.mode for im in load_images(kinds)] == ["RGB"] * len(kinds)


def test_grayscale_palette_and_modes_become_rgb() -> None:
    gray = np.arange(30 * 20, dtype=np.uint8).reshape(30, 20)
    x = preprocess([gray, Image.fromarray(gray), gray[:, :, None]], JINA_PRE)
    np.testing.assert_array_equal(x[0], x[1])
    np.testing.assert_array_equal(x[0], x[2])
    raw = x[0] * np.asarray(CLIP_STD, np.float32)[:, None, None] + np.asarray(CLIP_MEAN, np.float32)[:, None, None]
    np.testing.assert_allclose(raw[0], raw[1], atol=1e-6)  # R = G = B
    np.testing.assert_allclose(raw[1], raw[2], atol=1e-6)
    pal = Image.fromarray(np.random.default_rng(1).integers(0, 256, (33, 47, 3), dtype=np.uint8)).convert("P")
    np.testing.assert_array_equal(preprocess([pal], JINA_PRE), preprocess([pal.convert("RGB")], JINA_PRE))
    rgba = Image.new("RGBA", (30, 30), (200, 10, 50, 0))  # fully transparent: alpha dropped, colour kept
    flat = normalized(np.full((56, 56, 3), (200, 10, 50), np.uint8))
    np.testing.assert_allclose(preprocess([rgba], JINA_PRE)[0], flat, atol=1e-6)
    assert {im.mode for im in load_images(probe_images())} == {"RGB"}


def test_flat_colour_is_normalised_exactly() -> None:
    img = Image.new("RGB", (90, 61), (12, 130, 250))
    np.testing.assert_array_equal(preprocess([img], JINA_PRE)[0], normalized(np.full((56, 56, 3), (12, 130, 250), np.uint8)))


@pytest.mark.parametrize("size,resized,box", [
    ((7, 5), (78, 56), (11, 0, 67, 56)),  # shortest edge -> 56, long edge int(56 * 7 / 5) = 78 (truncated)
    ((5, 9), (56, 100), (0, 22, 56, 78)),  # tall: int(56 * 9 / 5) = 100
    ((113, 56), None, (28, 0, 84, 56)),  # no resize; offset round(57 / 2) = 28 (round half to even)
    ((2000, 1500), (74, 56), (9, 0, 65, 56)),
])
def test_resize_shortest_edge_then_centre_crop(size: tuple[int, int], resized: tuple[int, int] | None,
                                               box: tuple[int, int, int, int]) -> None:
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    step = img.resize(resized, Image.Resampling.BICUBIC) if resized else img
    expected = normalized(np.asarray(step.crop(box)))
    np.testing.assert_array_equal(preprocess([img], JINA_PRE)[0], expected)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 90, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    stored.save(tmp_path / "phone.jpg", format="JPEG", quality=95, exif=exif.tobytes())
    (shown,) = load_images([tmp_path / "phone.jpg"])
    decoded = Image.open(tmp_path / "phone.jpg")
    decoded.load()
    assert decoded.size == (90, 40) and shown.size == (40, 90)
    np.testing.assert_array_equal(np.asarray(shown), np.asarray(decoded.convert("RGB").transpose(Image.Transpose.ROTATE_270)))


def test_bad_images_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    good = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(good, format="JPEG")
    (tmp_path / "truncated.jpg").write_bytes(good.getvalue()[:200])
    cases = [
        ([tmp_path / "broken.png"], "broken.png"),
        ([tmp_path / "truncated.jpg"], "truncated.jpg"),
        ([tmp_path / "missing.png"], "missing.png"),
        ([np.zeros((4, 4, 3), np.float32)], "float32"),
        ([np.zeros((4, 4, 2), np.uint8)], "shape"),
        (["https://example.com/cat.jpg"], "URL"),
        (["data:image/png;base64,@@@"], "base64"),
        ([42], "int"),
    ]
    for images, named in cases:
        with pytest.raises(EmbccError) as e:
            preprocess(images, JINA_PRE)
        assert named in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(EmbccError):
        load_images(Image.new("RGB", (2, 2)))  # a bare image, not a list


def test_preprocessor_config_forms() -> None:
    hf = {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 56},
          "crop_size": {"height": 56, "width": 56}, "image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD),
          "resample": 3, "do_center_crop": True}
    assert image_settings(hf) == image_settings(JINA_PRE)
    imgs = probe_images(6)
    np.testing.assert_array_equal(preprocess(imgs, hf), preprocess(imgs, JINA_PRE))
    assert image_settings({**JINA_PRE, "interpolation": "bilinear"}).resample == Image.Resampling.BILINEAR
    squash = preprocess([Image.new("RGB", (90, 20), (9, 9, 9))], {**JINA_PRE, "resize_mode": "squash"})
    assert squash.shape == (1, 3, 56, 56)
    longest = preprocess([Image.new("RGB", (112, 28), (255, 255, 255))], {**JINA_PRE, "resize_mode": "longest"})
    assert np.allclose(longest[0, :, 28, :], normalized(np.full((1, 56, 3), 255, np.uint8))[:, 0])  # image band
    assert np.allclose(longest[0, :, 0, :], normalized(np.zeros((1, 56, 3), np.uint8))[:, 0])  # padded with fill 0
    for bad in ({"image_processor_type": "SiglipImageProcessor", "size": 56}, {"size": "big"},
                {"size": 56, "resize_mode": "fit"}, {"size": 56, "interpolation": "magic"}, {"size": 56, "std": [0, 1, 1]}):
        with pytest.raises(EmbccError):
            image_settings(bad)


def test_probe_images_are_deterministic_and_varied() -> None:
    a, b = probe_images(), probe_images()
    assert len(a) == 24 and len(probe_images(5)) == 5 and len(probe_images(40)) == 40
    assert all(x.mode == y.mode and x.size == y.size and np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
    assert {"L", "RGBA", "P", "RGB"} <= {im.mode for im in a}
    sizes = [im.size for im in a]
    assert (7, 5) in sizes and (2000, 1500) in sizes and any(w > 2 * h for w, h in sizes) and any(h > 2 * w for w, h in sizes)
    pairs = caption_pairs()
    assert len(pairs) >= 6 and len({c for c, _ in pairs}) == len(pairs)
    arrays = [np.asarray(im.convert("RGB")) for _, im in pairs]
    assert all(not np.array_equal(arrays[i], arrays[j]) for i in range(len(arrays)) for j in range(i))


# ---- an independent float64 EVA02 --------------------------------------------------------------------------------


def rope_f64(head_width: int, grid: int, pt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[grid*grid, head_width]: per axis head_width/2 dims, freqs 1/10000^(2i/(head_width/2)) each used twice,
    positions arange(grid)/grid*pt; row angles then column angles; tokens row-major."""
    d = head_width // 2
    inv = 1.0 / 10000.0 ** (np.arange(0, d, 2, dtype=np.float64) / d)
    one_axis = np.repeat(np.outer(np.arange(grid) / grid * pt, inv), 2, axis=1)  # [grid, d]
    token = np.arange(grid * grid)
    ang = np.concatenate([one_axis[token // grid], one_axis[token % grid]], axis=1)
    return torch.from_numpy(np.cos(ang)), torch.from_numpy(np.sin(ang))


def eva_f64(tensors: dict[str, torch.Tensor], vc: dict, pixels: torch.Tensor, *, pairs: str = "adjacent",
            cls_rotated: bool = False) -> torch.Tensor:
    w = {k.removeprefix("vision_model."): v.double() for k, v in tensors.items() if k.startswith("vision_model.")}
    width, hw, p = vc["width"], vc["head_width"], vc["patch_size"]
    heads, grid = width // hw, vc["image_size"] // p
    cos, sin = rope_f64(hw, grid, vc["pt_hw_seq_len"])

    def ln(x: torch.Tensor, name: str) -> torch.Tensor:
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-6) * w[name + ".weight"] + w[name + ".bias"]

    def partner(x: torch.Tensor) -> torch.Tensor:
        if pairs == "adjacent":
            even, odd = x[..., 0::2], x[..., 1::2]
            return torch.stack((-odd, even), dim=-1).reshape(x.shape)
        half = x.shape[-1] // 2  # the wrong, GPT-NeoX-style rotate-half
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    def rope(x: torch.Tensor) -> torch.Tensor:
        if cls_rotated:  # the wrong one: table applied from token 0, so CLS takes patch 0's row and all shift
            n = cos.shape[0]
            return torch.cat((x[:, :, :n] * cos + partner(x[:, :, :n]) * sin, x[:, :, n:]), dim=2)
        return torch.cat((x[:, :, :1], x[:, :, 1:] * cos + partner(x[:, :, 1:]) * sin), dim=2)

    x = pixels.double()[:, :, : grid * p, : grid * p]  # the convolution never sees the last (S mod p) pixels
    b = x.shape[0]
    x = x.reshape(b, 3, grid, p, grid, p).permute(0, 2, 4, 1, 3, 5).reshape(b, grid * grid, 3 * p * p)
    x = x @ w["patch_embed.proj.weight"].reshape(width, -1).T + w["patch_embed.proj.bias"]
    x = torch.cat([w["cls_token"].expand(b, 1, width), x], dim=1) + w["pos_embed"]
    for i in range(vc["layers"]):
        k_ = f"blocks.{i}."
        h = ln(x, k_ + "norm1")
        q = h @ w[k_ + "attn.q_proj.weight"].T + w[k_ + "attn.q_bias"]
        k = h @ w[k_ + "attn.k_proj.weight"].T
        v = h @ w[k_ + "attn.v_proj.weight"].T + w[k_ + "attn.v_bias"]
        q, k, v = (t.reshape(b, -1, heads, hw).transpose(1, 2) for t in (q, k, v))
        q, k = rope(q), rope(k)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hw), dim=-1)
        o = (att @ v).transpose(1, 2).reshape(b, -1, width)
        x = x + ln(o, k_ + "attn.inner_attn_ln") @ w[k_ + "attn.proj.weight"].T + w[k_ + "attn.proj.bias"]
        h = ln(x, k_ + "norm2")
        g = h @ w[k_ + "mlp.w1.weight"].T + w[k_ + "mlp.w1.bias"]
        u = h @ w[k_ + "mlp.w2.weight"].T + w[k_ + "mlp.w2.bias"]
        m = ln(g * torch.sigmoid(g) * u, k_ + "mlp.ffn_ln")
        x = x + m @ w[k_ + "mlp.w3.weight"].T + w[k_ + "mlp.w3.bias"]
    return ln(x, "norm")[:, 0]


@pytest.fixture(scope="module")
def f64(ckpt: Path, pixels: torch.Tensor) -> torch.Tensor:
    vc = json.loads((ckpt / "config.json").read_text())["vision_config"]
    return eva_f64(load_file(str(ckpt / "model.safetensors")), vc, pixels)


def test_export_tower_and_reference_match_float64(ckpt: Path, pixels: torch.Tensor, f64: torch.Tensor) -> None:
    tower = read(ckpt).vision_tower()
    ref = ClipVisionReference.from_checkpoint(ckpt)
    with torch.no_grad():
        ours = tower(pixels).double()
    theirs = ref.embed(pixels).double()
    assert ours.shape == (len(probe_images()), 64)
    assert (ours - f64).abs().max().item() <= BAR
    assert (theirs - f64).abs().max().item() <= BAR
    assert (ours - theirs).abs().max().item() <= BAR
    assert f64.std().item() > 0.1  # not a degenerate (constant) output


@pytest.mark.parametrize("wrong", [{"pairs": "half"}, {"cls_rotated": True}])
def test_wrong_rope_fails_the_comparison(ckpt: Path, pixels: torch.Tensor, f64: torch.Tensor, wrong: dict) -> None:
    vc = json.loads((ckpt / "config.json").read_text())["vision_config"]
    bad = eva_f64(load_file(str(ckpt / "model.safetensors")), vc, pixels, **wrong)
    assert (bad - f64).abs().max().item() > 100 * BAR
    with torch.no_grad():
        assert (read(ckpt).vision_tower()(pixels).double() - bad).abs().max().item() > 100 * BAR


def test_rope_tables_agree() -> None:
    from embcc.reference.clip_vision import _rope_tables

    for hw, grid in ((64, 36), (32, 4)):
        cfg = eva02.Eva02Config(width=2 * hw, layers=1, head_width=hw, image_size=grid * 14 + 8, patch_size=14, mlp_ratio=2.6667)
        cos, sin = eva02.rope_table(cfg)
        rcos, rsin = _rope_tables(hw, grid, 16, True)
        assert torch.equal(cos, rcos) and torch.equal(sin, rsin)  # both built by Jina's float32 operations
        c64, s64 = rope_f64(hw, grid, 16)
        assert (cos.double() - c64).abs().max() < 2e-6 and (sin.double() - s64).abs().max() < 2e-6
        assert cos.shape == (grid * grid, hw)


def test_reference_encode_truncates_then_normalises(ckpt: Path) -> None:
    ref = ClipVisionReference.from_checkpoint(ckpt)
    full = ref.encode(probe_images(5), normalize=False)
    short = ref.encode(probe_images(5), dim=32)
    np.testing.assert_allclose(np.linalg.norm(short, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(short, full[:, :32] / np.linalg.norm(full[:, :32], axis=1, keepdims=True), atol=1e-6)
    with pytest.raises(EmbccError):
        ref.encode(probe_images(1), dim=48)


def test_onnx_export_matches_torch_with_a_dynamic_batch(ckpt: Path, pixels: torch.Tensor, tmp_path: Path) -> None:
    import onnxruntime as ort

    from embcc.core.adapted import adapt
    from embcc.export.onnx import trace
    from embcc.families import load

    tower = read(ckpt).vision_tower()
    module, contract = load(ckpt).family.part_module(adapt(load(ckpt), task=None, lora=None, part="vision"), "vision")
    path = trace(module, contract, tmp_path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["pixel_values"]
    assert [o.name for o in sess.get_outputs()] == ["image_embeddings", "l2norm_image_embeddings"]
    for batch in (1, 5, len(pixels)):
        x = pixels[:batch]
        got = sess.run(None, {"pixel_values": x.numpy()})[0]
        with torch.no_grad():
            want = tower(x).numpy()
        assert got.shape == want.shape == (batch, 64)
        assert np.abs(got - want).max() <= 1e-4
        gn, wn = got / np.linalg.norm(got, axis=1, keepdims=True), want / np.linalg.norm(want, axis=1, keepdims=True)
        assert (gn * wn).sum(1).min() >= 0.9999 and np.abs(gn - wn).max() <= 1e-4


# ---- the fixture through the reader -------------------------------------------------------------------------------


def test_fixture_loads_through_read(ckpt: Path) -> None:
    config = json.loads((ckpt / "config.json").read_text())
    assert detect(config) and config["architectures"] == ["JinaCLIPModel"]
    ck = read(ckpt)
    assert ck.text_task == "retrieval.query" and ck.text_lora is not None and ck.text_lora.task_names == ["retrieval.query"]
    assert ck.text_config.hidden_size == 64 and ck.text_config.num_hidden_layers == 2
    assert ck.text_config.num_attention_heads == 4 and ck.text_config.vocab_size == 1000
    assert ck.text_config.rope_parameters["rope_theta"] == 20000.0  # v3's published config, not in the kwargs
    assert ck.prompt(None) == "" and ck.query_prompt == "Represent the query for retrieving evidence documents: "
    with pytest.raises(EmbccError):
        ck.prompt("retrieval.passage")
    assert ck.matryoshka_dims == [32, 64] and ck.dim == 64
    assert abs(ck.logit_scale - math.log(1 / 0.07)) < 0.02  # bf16
    assert ck.vision_config.grid == 4 and set(ck.vision_weights) == set(eva02.expected_shapes(ck.vision_config))
    ids = torch.tensor([[0, 17, 42, 2, 1, 1]])
    with torch.no_grad():
        states = ck.text_model()(input_ids=ids, attention_mask=(ids != ck.pad_token_id).long()).last_hidden_state
    assert states.shape == (1, 6, 64) and torch.isfinite(states).all()


def test_adapter_is_merged_with_alpha_over_rank(ckpt: Path) -> None:
    raw = load_file(str(ckpt / "model.safetensors"))
    ck = read(ckpt)
    p = "text_model.transformer.roberta."
    scale = 4 / 4
    lin = p + "encoder.layers.1.mlp.fc1.parametrizations.weight."
    want = raw[lin + "original"].double() + scale * (raw[lin + "0.lora_B"][0].double() @ raw[lin + "0.lora_A"][0].double())
    assert torch.allclose(ck.text_weights["layers.1.mlp.fc1.weight"].double(), want, atol=1e-6)
    emb = p + "embeddings.word_embeddings.parametrizations.weight."
    want = raw[emb + "original"].double() + scale * (raw[emb + "0.lora_A"][0].double() @ raw[emb + "0.lora_B"][0].double())
    assert torch.allclose(ck.text_weights["embeddings.word_embeddings.weight"].double(), want, atol=1e-6)
    qkv = p + "encoder.layers.0.mixer.Wqkv.parametrizations.weight."
    fused = raw[qkv + "original"].double() + scale * (raw[qkv + "0.lora_B"][0].double() @ raw[qkv + "0.lora_A"][0].double())
    got = torch.cat([ck.text_weights[f"layers.0.self_attn.{n}_proj.weight"] for n in "qkv"]).double()
    assert torch.allclose(got, fused, atol=1e-6)
    assert not torch.allclose(got, raw[qkv + "original"].double(), atol=1e-3)  # the adapter did change it
    assert not any(k.startswith(p + "pooler.") for k in raw)


def test_text_tower_matches_the_float64_v3_reference(ckpt: Path, tmp_path: Path) -> None:
    """The text tower read from the CLIP layout = jina-embeddings-v3 (original layout, float64 re-implementation in
    tests/reference_impls.py) with retrieval.query's adapter and prefix, theta 20,000, mean over non-pad tokens."""
    from reference_impls import v3_original_reference
    from tokenizers import Tokenizer

    v3dir = tmp_path / "as-v3"
    v3dir.mkdir()
    raw = load_file(str(ckpt / "model.safetensors"))
    save_file({k.removeprefix("text_model.transformer."): v for k, v in raw.items() if k.startswith("text_model.")},
              str(v3dir / "model.safetensors"))
    shutil.copy(ckpt / "tokenizer.json", v3dir / "tokenizer.json")
    kwargs = json.loads((ckpt / "config.json").read_text())["text_config"]["hf_model_config_kwargs"]
    (v3dir / "config.json").write_text(json.dumps({
        **{k: kwargs[k] for k in ("lora_adaptations", "task_instructions", "lora_alpha", "lora_rank")},
        "rotary_emb_base": 20000.0, "layer_norm_eps": 1e-5, "num_attention_heads": kwargs["num_attention_heads"],
        "num_hidden_layers": 2, "pad_token_id": 1}))
    texts = ["a red circle", "zwei Katzen auf dem Sofa, die schlafen", "x"]
    want = v3_original_reference(v3dir, texts, "retrieval.query", batch_size=3)

    ck = read(ckpt)
    tok = Tokenizer.from_file(str(ckpt / "tokenizer.json"))
    tok.enable_padding(pad_id=ck.pad_token_id)
    ids = torch.tensor([e.ids for e in tok.encode_batch([ck.prompt("retrieval.query") + t for t in texts])])
    mask = (ids != ck.pad_token_id).long()  # Jina's mask: every non-pad token
    with torch.no_grad():
        states = ck.text_model()(input_ids=ids, attention_mask=mask).last_hidden_state.double()
    pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    got = F.normalize(pooled, dim=-1).numpy()
    assert mask.min() == 0  # the batch really was padded
    assert np.abs(got - want).max() <= 1e-5


def _variant(ckpt: Path, tmp_path: Path, *, tensors=None, config=None, drop_pre: bool = False) -> Path:
    out = tmp_path / "variant"
    shutil.copytree(ckpt, out)
    if tensors is not None:
        t = load_file(str(ckpt / "model.safetensors"))
        tensors(t)
        save_file(t, str(out / "model.safetensors"))
    if config is not None:
        c = json.loads((ckpt / "config.json").read_text())
        config(c)
        (out / "config.json").write_text(json.dumps(c))
    if drop_pre:
        (out / "preprocessor_config.json").unlink()
    return out


BAD_CHECKPOINTS = {
    "missing vision tensor": ({"tensors": lambda t: t.pop("vision_model.blocks.1.attn.v_bias")}, "missing tensor"),
    "missing adapter half": ({"tensors": lambda t: t.pop(
        "text_model.transformer.roberta.encoder.layers.0.mlp.fc2.parametrizations.weight.0.lora_B")}, "lora_A/lora_B"),
    "unexpected tensor": ({"tensors": lambda t: t.update({"visual_projection.weight": torch.zeros(4, 4)})}, "visual_projection"),
    "unexpected vision tensor": ({"tensors": lambda t: t.update({"vision_model.head.weight": torch.zeros(4, 4)})}, "unexpected"),
    "misshaped pos_embed": ({"tensors": lambda t: t.update({"vision_model.pos_embed": torch.zeros(1, 26, 64)})}, "pos_embed"),
    "no logit_scale": ({"tensors": lambda t: t.pop("logit_scale")}, "logit_scale"),
    "subln off": ({"config": lambda c: c["vision_config"].update(subln=False)}, "subln"),
    "subln left out": ({"config": lambda c: c["vision_config"].pop("subln")}, "subln"),  # Jina's default: False
    "bad default task": ({"config": lambda c: c["text_config"].update(default_instruction_task="x")}, "default_instruction_task"),
    "heads do not divide": ({"config": lambda c: c["text_config"]["hf_model_config_kwargs"].update(num_attention_heads=5)}, "heads"),
    "head_width": ({"config": lambda c: c["vision_config"].update(head_width=48)}, "head_width"),
    "wrong image size": ({"config": lambda c: c["vision_config"].update(image_size=112)}, "pos_embed"),
    "unknown task": ({"config": lambda c: c["text_config"].update(default_lora_task="retrieval.passage")}, "default_lora_task"),
    "projections": ({"config": lambda c: c.update(add_projections=True)}, "add_projections"),
    "jina-clip-v1": ({"config": lambda c: (c["text_config"].update(hf_model_name_or_path="jinaai/jina-bert-flash-implementation"),
                                           c["text_config"]["hf_model_config_kwargs"].pop("lora_adaptations"))}, "jina-clip-v1"),
    "no preprocessor": ({"drop_pre": True}, "preprocessor_config.json"),
}


@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_bad_checkpoints_are_one_line_errors(ckpt: Path, tmp_path: Path, case: str) -> None:
    change, named = BAD_CHECKPOINTS[case]
    with pytest.raises(EmbccError) as e:
        read(_variant(ckpt, tmp_path, **change))
    assert named in str(e.value) and "\n" not in str(e.value)


def test_configs_left_out_keys_take_jinas_defaults(ckpt: Path, tmp_path: Path) -> None:
    def trim(c: dict) -> None:
        for key in ("post_norm", "ls_init_value", "proj_type", "qkv_bias", "pt_hw_seq_len", "drop_path_rate"):
            c["vision_config"].pop(key)  # JinaCLIPVisionConfig defaults: False, None, None, True, 16, 0.0
        c["text_config"]["default_instruction_task"] = "retrieval.query"

    ck = read(_variant(ckpt, tmp_path, config=trim))
    assert ck.vision_config == read(ckpt).vision_config
    assert ck.prompt(None) == ck.query_prompt != ""  # a default instruction task prefixes every text
    vc = json.loads((tmp_path / "variant" / "config.json").read_text())["vision_config"]
    ClipVisionReference(vc, load_file(str(ckpt / "model.safetensors")))


def test_detect_only_claims_jina_clip_v2(ckpt: Path) -> None:
    config = json.loads((ckpt / "config.json").read_text())
    assert detect(config)
    assert not detect({"architectures": ["XLMRobertaModel"], "model_type": "xlm-roberta", "lora_adaptations": ["a"]})
    v1 = json.loads(json.dumps(config))
    v1["text_config"] = {"hf_model_name_or_path": "jinaai/jina-bert-flash-implementation", "hf_model_config_kwargs": {}}
    assert not detect(v1)
