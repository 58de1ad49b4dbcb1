"""jina-embeddings-v4 parts on a tiny published-layout fixture: the reader, the export-side text graph, decoder,
vision encoder and image path, ONNX, GGUF facts and llama.cpp, each against the transformers+PEFT reference and
a float64 re-implementation written here from the published key names.

The fixture's adapters use alpha 16 at rank 32 (published: 32 / 32), so the scaling alpha / r = 0.5 is visible:
a reader that ignored it would be off by a factor of two in every delta.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from embcc.core.errors import EmbccError
from embcc.core.lora import LoraSet, LoraWeights
from embcc.export.onnx import trace
from embcc.families.jina_v4_layout import V4Checkpoint, detect, read
from embcc.families.jina_v4_model import (
    GGUF_FACTS,
    V4DecoderGraph,
    V4ImageEmbedder,
    build_text_graph,
    build_vision_encoder,
    contract,
    vision_span,
)
from embcc.fixtures import jina_v4 as fixture
from embcc.probes import PROBES

BAR = 5e-6  # max abs difference on the text probes (fp32 export side vs reference and vs float64)
MAX_LENGTH = 128
ALPHA = 16  # with rank 32: scaling 0.5
F64 = torch.float64


@pytest.fixture(scope="module")
def v4_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("v4") / "ckpt"
    d.mkdir()
    fixture.write("jina-v4", d, size="tiny", seed=0, lora_alpha=ALPHA)
    return d


@pytest.fixture(scope="module")
def ckpt(v4_dir: Path) -> V4Checkpoint:
    return read(v4_dir)


@pytest.fixture(scope="module")
def ref(v4_dir: Path):
    from embcc.reference.jina_v4 import JinaV4Reference

    return JinaV4Reference(v4_dir)


@pytest.fixture(scope="module")
def merged(ckpt: V4Checkpoint) -> dict:
    return {t: build_text_graph(ckpt, task=t) for t in ckpt.tasks}


@pytest.fixture(scope="module")
def kept(ckpt: V4Checkpoint):
    return build_text_graph(ckpt, keep=True)


# ---- inputs -------------------------------------------------------------------------------------------------------


def token_rows(path: Path, texts: list[str], prefix: str, max_length: int = MAX_LENGTH) -> list[list[int]]:
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.enable_truncation(max_length)
    return [e.ids for e in tok.encode_batch([prefix + t for t in texts])]


def padded(rows: list[list[int]], pad: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        sl = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, sl] = torch.tensor(r)
        mask[i, sl] = 1
    return ids, mask


def run_graph(graph, path: Path, texts: list[str], prefix: str, task_id: int | None = None, left: bool = False,
              batch: int = 26) -> tuple[np.ndarray, list[np.ndarray]]:
    """Single vectors [N, H] and per-text multi-vectors [n_i, 128] from the export-side text graph."""
    rows = token_rows(path, texts, prefix)
    singles, multis = [], []
    for i in range(0, len(rows), batch):
        ids, mask = padded(rows[i:i + batch], 320, left)
        args = (ids, mask) + ((torch.tensor([task_id]),) if task_id is not None else ())
        with torch.no_grad():
            _, single, multi = graph(*args)
        singles.append(single.numpy())
        multis.extend(m[r.bool()].numpy() for m, r in zip(multi, mask))
    return np.concatenate(singles), multis


def images() -> list:
    """Generated test images: gradients and shapes at several sizes and modes (RGB, L, RGBA)."""
    from PIL import Image, ImageDraw

    out = []
    for i, (w, h) in enumerate([(56, 56), (140, 100), (90, 230), (300, 200)]):
        y, x = np.mgrid[0:h, 0:w]
        rgb = np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1), 128 + 100 * np.sin(x / 7.0 + i)], -1)
        im = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
        d = ImageDraw.Draw(im)
        d.ellipse([w // 5, h // 5, w // 2, h // 2], fill=(255, 30 * i, 0))
        d.rectangle([w // 2, h // 2, w - 3, h - 3], outline=(0, 0, 255), width=3)
        out.append(im)
    out.append(out[1].convert("L"))
    out.append(out[2].convert("RGBA"))
    return out


# ---- a float64 re-implementation from the published key names ----------------------------------------------------


class Float64V4:
    """Qwen2.5-VL's language model + Jina's projector and adapters, spelled out in float64 from the files:
    old-naming weights read with safetensors, Jina's per-task adapter keys, M-RoPE from config.json."""

    def __init__(self, path: Path):
        config = json.loads((path / "config.json").read_text())
        self.t = config.get("text_config") or config
        index = json.loads((path / "model.safetensors.index.json").read_text())["weight_map"]
        self.w: dict[str, torch.Tensor] = {}
        for shard in sorted(set(index.values())):
            self.w.update({k: v.to(F64) for k, v in load_file(str(path / shard)).items()})
        self.ad = {k: v.to(F64) for k, v in load_file(str(path / "adapters" / "adapter_model.safetensors")).items()}
        ac = json.loads((path / "adapters" / "adapter_config.json").read_text())
        self.scaling = ac["lora_alpha"] / ac["r"]
        self.section = (self.t.get("rope_scaling") or config["rope_scaling"])["mrope_section"]

    def weight(self, module: str, task: str) -> torch.Tensor:
        w = self.w[f"{module}.weight"]
        peft = module.replace("model.layers.", "model.language_model.layers.")
        a = self.ad.get(f"base_model.model.{peft}.lora_A.{task}.weight")
        if a is None:
            return w
        return w + self.scaling * self.ad[f"base_model.model.{peft}.lora_B.{task}.weight"] @ a

    def rope(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.t["hidden_size"] // self.t["num_attention_heads"]
        inv = 1.0 / (float(self.t["rope_theta"]) ** (torch.arange(0, d, 2, dtype=F64) / d))
        streams = [torch.arange(n, dtype=F64)] * 3  # text: temporal, height and width positions are equal
        parts, start = [], 0
        for s, p in zip(self.section, streams):
            parts.append(p[:, None] * inv[start:start + s])
            start += s
        f = torch.cat(parts, -1)
        f = torch.cat([f, f], -1)
        return f.cos(), f.sin()

    def rms(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + self.t["rms_norm_eps"]) * self.w[name]

    def forward(self, ids: list[int], task: str) -> tuple[np.ndarray, np.ndarray]:
        t, n = self.t, len(ids)
        heads, kv = t["num_attention_heads"], t["num_key_value_heads"]
        d = t["hidden_size"] // heads
        x = self.w["model.embed_tokens.weight"][torch.tensor(ids)]
        cos, sin = self.rope(n)

        def rot(v: torch.Tensor) -> torch.Tensor:
            half = torch.cat([-v[..., d // 2:], v[..., :d // 2]], -1)
            return v * cos + half * sin

        causal = torch.ones(n, n, dtype=torch.bool).tril()
        for i in range(t["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = self.rms(x, p + "input_layernorm.weight")
            q, k, v = (h @ self.weight(p + f"self_attn.{m}_proj", task).T + self.w[p + f"self_attn.{m}_proj.bias"]
                       for m in "qkv")
            q = rot(q.view(n, heads, d).transpose(0, 1))
            k = rot(k.view(n, kv, d).transpose(0, 1)).repeat_interleave(heads // kv, 0)
            v = v.view(n, kv, d).transpose(0, 1).repeat_interleave(heads // kv, 0)
            att = (q @ k.transpose(1, 2)) / math.sqrt(d)
            att = att.masked_fill(~causal, float("-inf")).softmax(-1)
            o = (att @ v).transpose(0, 1).reshape(n, heads * d)
            x = x + o @ self.weight(p + "self_attn.o_proj", task).T
            h = self.rms(x, p + "post_attention_layernorm.weight")
            gate = h @ self.weight(p + "mlp.gate_proj", task).T
            up = h @ self.weight(p + "mlp.up_proj", task).T
            x = x + (torch.nn.functional.silu(gate) * up) @ self.weight(p + "mlp.down_proj", task).T
        x = self.rms(x, "model.norm.weight")
        single = x.mean(0)
        proj = x @ self.weight("multi_vector_projector", task).T + self.w["multi_vector_projector.bias"]
        multi = proj / proj.norm(dim=-1, keepdim=True)
        return (single / single.norm()).numpy(), multi.numpy()


@pytest.fixture(scope="module")
def f64(v4_dir: Path) -> Float64V4:
    return Float64V4(v4_dir)


def multi_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert [x.shape for x in a] == [y.shape for y in b]
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


# ---- the published layout and the reader --------------------------------------------------------------------------


def test_fixture_is_in_the_published_layout(tmp_path: Path, v4_dir: Path):
    config = json.loads((v4_dir / "config.json").read_text())
    assert detect(config) and config["architectures"] == ["JinaEmbeddingsV4Model"]
    assert config["task_names"] == ["retrieval", "text-matching", "code"] and config["multi_vector_projector_dim"] == 128
    index = json.loads((v4_dir / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert shards == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    names = set(index["weight_map"])
    assert {"model.embed_tokens.weight", "model.norm.weight", "model.layers.0.self_attn.q_proj.bias",
            "visual.patch_embed.proj.weight", "visual.blocks.0.attn.qkv.weight", "visual.merger.ln_q.weight",
            "visual.merger.mlp.0.weight", "visual.merger.mlp.2.weight", "multi_vector_projector.weight",
            "multi_vector_projector.bias"} <= names
    assert not any(n.startswith(("lm_head", "model.language_model", "model.visual")) for n in names)
    with safe_open(str(v4_dir / index["weight_map"]["visual.patch_embed.proj.weight"]), "pt") as f:
        assert list(f.get_tensor("visual.patch_embed.proj.weight").shape) == [32, 3, 2, 14, 14]  # Conv3d
    assert sorted(p.name for p in (v4_dir / "adapters").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    with safe_open(str(v4_dir / "adapters" / "adapter_model.safetensors"), "pt") as f:
        keys = set(f.keys())
    for task in config["task_names"]:
        assert f"base_model.model.model.language_model.layers.2.mlp.down_proj.lora_B.{task}.weight" in keys
        assert f"base_model.model.multi_vector_projector.lora_A.{task}.weight" in keys
    tok = Tokenizer.from_file(str(v4_dir / "tokenizer.json"))
    for key, token in [("image_token_id", "<|image_pad|>"), ("vision_start_token_id", "<|vision_start|>"),
                       ("vision_end_token_id", "<|vision_end|>"), ("video_token_id", "<|video_pad|>")]:
        assert tok.token_to_id(token) == config[key] < config["vocab_size"]
    assert tok.encode("Query: hi").ids == tok.encode("Query: hi", add_special_tokens=False).ids  # nothing appended
    default = tmp_path / "default"
    default.mkdir()
    fixture.write("jina-v4", default, size="tiny", seed=1)
    c = read(default)
    assert (c.lora_rank, c.lora_alpha) == (32, 32.0)  # the published hyperparameters


def test_reader_facts_and_names(ckpt: V4Checkpoint, v4_dir: Path):
    assert ckpt.tasks == ["retrieval", "text-matching", "code"]
    assert ckpt.prefix("retrieval", "query") == "Query: " and ckpt.prefix("retrieval", "passage") == "Passage: "
    assert ckpt.prefix("code", "passage") == "Passage: " and ckpt.prefix("text-matching", "passage") == "Query: "
    assert ckpt.prefix("retrieval") == "Query: "
    assert (ckpt.max_length, ckpt.rope_theta, ckpt.mrope_section) == (32768, 1e6, [2, 3, 3])
    assert ckpt.matryoshka_dims == [16, 32, 64] and ckpt.projector_dim == 128 and ckpt.hidden_size == 64
    assert (ckpt.vision_start_token_id, ckpt.vision_end_token_id, ckpt.image_token_id) == (329, 330, 332)
    assert ckpt.preprocessor["max_pixels"] == 602112
    assert "model.language_model.layers.0.self_attn.q_proj.bias" in ckpt.weights
    assert "model.visual.blocks.1.attn.qkv.weight" in ckpt.weights and "lm_head.weight" not in ckpt.weights
    lora = ckpt.lora
    assert lora.task_names == ckpt.tasks and len(lora.modules) == 3 * 7 + 1
    a = lora.modules["model.language_model.layers.1.self_attn.k_proj"]
    assert list(a.A.shape) == [3, 32, 64] and list(a.B.shape) == [3, 32, 32]
    raw = load_file(str(v4_dir / "adapters" / "adapter_model.safetensors"))
    b = raw["base_model.model.multi_vector_projector.lora_B.code.weight"].float()
    assert torch.equal(lora.modules["multi_vector_projector"].B[2], b * (ALPHA / 32))  # alpha / r folded into B
    with pytest.raises(EmbccError, match="no 'document' role"):
        ckpt.prefix("retrieval", "document")


def test_flat_config_reads_the_same(ckpt, merged, v4_dir, tmp_path):
    """The Qwen2.5-VL hub style (text keys only at the top level, no text_config) reads to the same model."""
    d = tmp_path / "flat"
    shutil.copytree(v4_dir, d)
    _config(d, lambda c: c.pop("text_config"))
    flat = read(d)
    assert (flat.rope_theta, flat.mrope_section, flat.hidden_size) == (ckpt.rope_theta, ckpt.mrope_section, 64)
    texts = list(PROBES[:8])
    a, _ = run_graph(build_text_graph(flat, task="code"), d, texts, "Query: ")
    b, _ = run_graph(merged["code"], v4_dir, texts, "Query: ")
    assert np.array_equal(a, b)


def test_reference_is_independent_of_the_export_side():
    import ast

    import embcc.reference.jina_v4 as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not [m for m in imported if m.startswith(("embcc.families", "embcc.export", "embcc.runtimes"))]


# ---- the text graph ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["query", "passage"])
def test_text_graph_matches_reference_and_float64(ckpt, ref, f64, merged, kept, v4_dir, role):
    """Every task, single and multi vectors, on every other probe (all lengths and scripts, mixed within each
    batch): export side vs reference vs float64; kept == merged."""
    texts = list(PROBES[::2])
    for i, task in enumerate(ckpt.tasks):
        prefix = ckpt.prefix(task, role)
        single, multi = run_graph(merged[task], v4_dir, texts, prefix)
        k_single, k_multi = run_graph(kept, v4_dir, texts, prefix, task_id=i)
        r_single = ref.encode(texts, task=task, role=role, max_length=MAX_LENGTH)
        r_multi = ref.encode(texts, task=task, role=role, max_length=MAX_LENGTH, vectors="multi")
        rows = token_rows(v4_dir, texts, prefix)
        pairs = [f64.forward(r, task) for r in rows[::3]]  # every 3rd of them in float64
        f_single, f_multi = np.stack([p[0] for p in pairs]), [p[1] for p in pairs]
        assert np.abs(single - r_single).max() <= BAR, task
        assert multi_diff(multi, r_multi) <= BAR, task
        assert np.abs(single[::3] - f_single).max() <= BAR, task
        assert multi_diff(multi[::3], f_multi) <= BAR, task
        assert np.abs(k_single - single).max() <= BAR and multi_diff(k_multi, multi) <= BAR, task
        assert np.abs(r_single[::3] - f_single).max() <= BAR, task  # the reference itself agrees with float64


def test_left_padding_and_matryoshka(ckpt, ref, merged, v4_dir):
    texts = list(PROBES[:30])
    right, _ = run_graph(merged["code"], v4_dir, texts, "Query: ")
    left, left_multi = run_graph(merged["code"], v4_dir, texts, "Query: ", left=True)
    assert np.isfinite(left).all() and np.abs(left - right).max() <= BAR
    r = ref.encode(texts, task="code", dim=32, max_length=MAX_LENGTH)
    mine = right[:, :32] / np.linalg.norm(right[:, :32], axis=1, keepdims=True)
    assert np.abs(mine - r).max() <= BAR


def test_wrong_adapter_scaling_fails(ckpt, f64, v4_dir):
    """B with alpha/r dropped (scaling 1 instead of 0.5): the float64 comparison fails by far more than the bar."""
    wrong = LoraSet(ckpt.lora.task_names, {m: LoraWeights(w.kind, w.A, w.B / (ALPHA / 32))
                                           for m, w in ckpt.lora.modules.items()})
    graph = build_text_graph(dataclasses.replace(ckpt, lora=wrong), task="retrieval")
    texts = list(PROBES[:12])
    single, multi = run_graph(graph, v4_dir, texts, "Query: ")
    pairs = [f64.forward(r, "retrieval") for r in token_rows(v4_dir, texts, "Query: ")]
    assert np.abs(single - np.stack([p[0] for p in pairs])).max() > 100 * BAR
    assert multi_diff(multi, [p[1] for p in pairs]) > 100 * BAR
    unadapted, _ = run_graph(build_text_graph(ckpt), v4_dir, texts, "Query: ")
    assert np.abs(unadapted - np.stack([p[0] for p in pairs])).max() > 100 * BAR


# ---- ONNX ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["merge", "keep"])
def test_onnx_text_graph_matches_torch(ckpt, merged, kept, tmp_path, mode):
    import onnxruntime as ort

    graph = merged["text-matching"] if mode == "merge" else kept
    path = trace(graph, contract(graph), tmp_path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask"] + (["task_id"] if mode == "keep" else [])
    # last_hidden_state: the alias of text_embeds every text graph carries for sentence-transformers and TEI
    assert [o.name for o in sess.get_outputs()] == ["text_embeds", "sentence_embedding", "multi_vector_embeddings",
                                                    "last_hidden_state"]
    rng = np.random.default_rng(0)
    for b, n in [(1, 2), (3, 37), (5, 130)]:
        ids = rng.integers(0, 352, (b, n))
        mask = np.ones((b, n), np.int64)
        for i in range(1, b):
            mask[i, rng.integers(1, n + 1):] = 0
        feed = {"input_ids": ids, "attention_mask": mask}
        extra = ()
        if mode == "keep":
            feed["task_id"] = np.array(1, np.int64)  # a scalar, as some clients send it
            extra = (torch.tensor([1]),)
        states, single, multi, alias = sess.run(None, feed)
        assert np.array_equal(states, alias)
        with torch.no_grad():
            t_states, t_single, t_multi = graph(torch.tensor(ids), torch.tensor(mask), *extra)
        m = mask.astype(bool)
        assert np.abs(states[m] - t_states.numpy()[m]).max() <= 1e-4
        assert np.abs(single - t_single.numpy()).max() <= 1e-5
        assert np.abs(multi - t_multi.numpy()).max() <= 1e-5 and not multi[~m].any()


# ---- the image path ------------------------------------------------------------------------------------------------


def test_image_path_matches_reference(ckpt, ref, merged, kept):
    """Vision encoder -> splice -> decoder with 3-D M-RoPE, against transformers' own Qwen2.5-VL forward (the
    reference, with PEFT's unmerged adapters), batched mixed sizes; also the decoder graph through ONNX."""
    ims = images()
    vision = build_vision_encoder(ckpt)
    for task in ["retrieval", "code"]:
        emb = V4ImageEmbedder(ckpt, vision, merged[task])
        batch = ref.image_batch(ims)
        ids, mask = emb.prompt_ids(batch["image_grid_thw"])
        assert torch.equal(ids[mask.bool()], batch["input_ids"][batch["attention_mask"].bool()])
        _, single, multi = emb(batch["pixel_values"], batch["image_grid_thw"])
        r_single = ref.encode_images(ims, task=task, batch_size=len(ims))
        r_multi = ref.encode_images(ims, task=task, vectors="multi", batch_size=len(ims))
        assert np.abs(single.numpy() - r_single).max() <= BAR, task
        assert multi_diff([m[r.bool()].numpy() for m, r in zip(multi, mask)], r_multi) <= BAR, task
        _, k_single, _ = V4ImageEmbedder(ckpt, vision, kept)(batch["pixel_values"], batch["image_grid_thw"],
                                                              torch.tensor([ckpt.tasks.index(task)]))
        assert np.abs(k_single.numpy() - r_single).max() <= BAR, task
    one = ref.encode_images(ims[:1], task="code")  # alone, unpadded: the same vector as in the batch
    assert np.abs(one - r_single[:1]).max() <= BAR


def test_image_decoder_graph_through_onnx(ckpt, ref, kept, tmp_path):
    import onnxruntime as ort

    ims = images()[1:4]
    emb = V4ImageEmbedder(ckpt, build_vision_encoder(ckpt), kept)
    batch = ref.image_batch(ims)
    ids, mask = emb.prompt_ids(batch["image_grid_thw"])
    with torch.no_grad():
        visual = emb.vision(batch["pixel_values"], batch["image_grid_thw"])
        embeds = kept.model.language_model.embed_tokens(ids).masked_scatter(
            (ids == ckpt.image_token_id).unsqueeze(-1), visual)
    pos = emb.positions(ids, mask, batch["image_grid_thw"])
    assert not torch.equal(pos[0], pos[1])  # real 3-D positions: the sections differ on image tokens
    pool = vision_span(ids, ckpt.vision_start_token_id, ckpt.vision_end_token_id).long()
    decoder = V4DecoderGraph(kept)
    path = trace(decoder, contract(decoder), tmp_path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    _, single, _ = sess.run(None, {"inputs_embeds": embeds.numpy(), "attention_mask": mask.numpy(),
                                   "position_ids": pos.numpy(), "pool_mask": pool.numpy(),
                                   "task_id": np.array([1], np.int64)})
    assert np.abs(single - ref.encode_images(ims, task="text-matching")).max() <= BAR


def test_wrong_mrope_section_fails_on_images_only(ckpt, ref, v4_dir):
    """A wrong M-RoPE section breaks image vectors (3-D positions differ per section); text-only positions are
    equal in all three sections, so there the section cannot matter (and does not)."""
    wrong = build_text_graph(ckpt, task="retrieval", mrope_section=[3, 3, 2])
    ims = images()[:4]
    batch = ref.image_batch(ims)
    _, single, _ = V4ImageEmbedder(ckpt, build_vision_encoder(ckpt), wrong)(batch["pixel_values"],
                                                                             batch["image_grid_thw"])
    assert np.abs(single.numpy() - ref.encode_images(ims, task="retrieval")).max() > 100 * BAR
    texts = list(PROBES[:12])
    text_single, _ = run_graph(wrong, v4_dir, texts, "Query: ")
    assert np.abs(text_single - ref.encode(texts, task="retrieval", max_length=MAX_LENGTH)).max() <= BAR


# ---- GGUF ----------------------------------------------------------------------------------------------------------


def test_gguf_facts_name_only_what_gguf_py_lacks(ckpt):
    """Every declared source is a native name gguf-py's qwen2vl map does not know; its OLD name (what gguf-py
    does know) maps to the very GGUF name declared; everything else is dropped on purpose."""
    gguf = pytest.importorskip("gguf")
    arch = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[GGUF_FACTS.arch]
    n = ckpt.qwen_config.text_config.num_hidden_layers
    names = gguf.get_tensor_name_map(arch, n)
    covered = set()
    for target, source in GGUF_FACTS.extra_tensors.items():
        for bid in range(n):
            t, s = target.format(bid=bid), source.format(bid=bid)
            assert s in ckpt.weights, s
            assert names.get_name(s, try_suffixes=(".weight", ".bias")) is None, s  # gguf-py lacks it
            old = s.replace("model.language_model.", "model.")
            assert names.get_name(old, try_suffixes=(".weight", ".bias")) == t, old  # and knows the old one
            covered.add(s)
    left = [k for k in ckpt.weights if k not in covered and not k.startswith(GGUF_FACTS.unused)]
    assert left == []
    from embcc.export.gguf_tensors import hparams

    hp = hparams(GGUF_FACTS, ckpt.config)
    assert hp["rope.dimension_sections"] == [2, 3, 3, 0] and hp["block_count"] == 3 and hp["rope.dimension_count"] == 16


def test_gguf_runs_in_llamacpp_like_the_reference(ckpt, ref, tmp_path):
    """Merged per task, text only (vision and projector dropped), mean pooling, as Jina publishes its GGUFs:
    written with embcc's GGUF writer, run by llama.cpp, against the reference's single vector."""
    pytest.importorskip("gguf")
    pytest.importorskip("llama_cpp")
    from embcc.core.adapted import adapt
    from embcc.core.bundle import Bundle
    from embcc.core.spec import ModelSpec, Task
    from embcc.export.gguf import write_model
    from embcc.runtimes.llamacpp import LlamaCppEmbedder

    class Family:  # the family's part, as the integrator's JinaV4 family will declare it
        name = "jina-v4"

        def gguf_facts(self, bundle):
            return GGUF_FACTS

        def backbone(self, *a, **k):
            raise NotImplementedError

    tasks = [Task(t, i, ckpt.prefix(t), {r: ckpt.prefix(t, r) for r in ckpt.prompts}) for i, t in enumerate(ckpt.tasks)]
    spec = ModelSpec(family="jina-v4", pooling="mean", dim=ckpt.hidden_size, max_length=MAX_LENGTH, position="rope",
                     tasks=tasks, matryoshka_dims=ckpt.matryoshka_dims, rope_theta=ckpt.rope_theta, role="query",
                     precision="f32")
    bundle = Bundle(Family(), ckpt.path, "base", ckpt.config, spec, ckpt.weights, ckpt.lora, ckpt.tokenizer_files)
    texts = [p for p in PROBES if len(p) < 300][:40]
    for task in ckpt.tasks:
        art = tmp_path / task
        art.mkdir()
        adapted = adapt(bundle, task=task, lora="merge")
        write_model(adapted, art / "model.gguf", adapted.spec, "f32")
        (art / "embcc.json").write_text(adapted.spec.to_json())
        for f in ckpt.tokenizer_files:
            shutil.copy(f, art / f.name)
        emb = LlamaCppEmbedder(art)
        try:
            for role in ("query", "passage"):
                prefix = ckpt.prefix(task, role)
                assert emb.token_ids(texts, task, role) == [ref.tokenizer(prefix + t)["input_ids"] for t in texts]
                got = emb.encode(texts, task=task, role=role)
                want = ref.encode(texts, task=task, role=role, max_length=MAX_LENGTH)
                assert np.abs(got - want).max() <= BAR, (task, role)
        finally:
            emb.close()
    import gguf

    fields = {k: f.contents() for k, f in gguf.GGUFReader(str(tmp_path / "code" / "model.gguf")).fields.items()}
    assert fields["general.architecture"] == "qwen2vl" and fields["qwen2vl.pooling_type"] == 1
    assert fields["qwen2vl.rope.dimension_sections"] == [2, 3, 3, 0] and fields["qwen2vl.rope.freq_base"] == 1e6


# ---- malformed checkpoints -----------------------------------------------------------------------------------------


def _config(d: Path, edit) -> None:
    c = json.loads((d / "config.json").read_text())
    edit(c)
    (d / "config.json").write_text(json.dumps(c))


def _shard_edit(d: Path, edit) -> None:
    index = json.loads((d / "model.safetensors.index.json").read_text())
    shard = d / index["weight_map"]["multi_vector_projector.weight"]
    t = load_file(str(shard))
    edit(t)
    save_file(t, str(shard))


def _adapter_edit(d: Path, edit) -> None:
    f = d / "adapters" / "adapter_model.safetensors"
    t = load_file(str(f))
    edit(t)
    save_file(t, str(f))


def _set_section(c: dict, section: list[int]) -> None:
    c["rope_scaling"]["mrope_section"] = section
    c["text_config"]["rope_scaling"]["mrope_section"] = section


def _drop_pad(t: dict) -> None:
    del t["base_model.model.model.language_model.layers.1.mlp.up_proj.lora_B.code.weight"]


MALFORMED = {
    "config not JSON": (lambda d: (d / "config.json").write_text("{"), "not valid JSON"),
    "not v4": (lambda d: _config(d, lambda c: (c.update(architectures=["Qwen2_5_VLForConditionalGeneration"]),
                                               c.pop("task_names"))), "not jina-embeddings-v4"),
    "duplicate tasks": (lambda d: _config(d, lambda c: c.update(task_names=["code", "code"])), "malformed task_names"),
    "mrope sum": (lambda d: _config(d, lambda c: _set_section(c, [2, 2, 2])), "sums to 6"),
    "no mrope": (lambda d: _config(d, lambda c: (c.pop("rope_scaling"), c["text_config"].pop("rope_scaling"))),
                 "mrope_section"),
    "image id outside vocab": (lambda d: _config(d, lambda c: c.update(image_token_id=10**6)), "image_token_id"),
    "image id not the tokenizer's": (lambda d: _config(d, lambda c: c.update(image_token_id=5)), "<|image_pad|>"),
    "matryoshka past hidden": (lambda d: _config(d, lambda c: c.update(matryoshka_dims=[16, 128])), "matryoshka_dims"),
    "pooling": (lambda d: _config(d, lambda c: c.update(single_vector_pool_strategy="cls")), "pools by mean"),
    "projector dim": (lambda d: _config(d, lambda c: c.update(multi_vector_projector_dim=64)), "multi_vector_projector"),
    "missing shard": (lambda d: (d / "model-00002-of-00002.safetensors").unlink(), "lacks weight shard"),
    "pickle only": (lambda d: ([p.unlink() for p in d.glob("model*.safetensors*")],
                               (d / "pytorch_model.bin").write_bytes(b"x")), "never unpickles"),
    "corrupt shard": (lambda d: (d / "model-00001-of-00002.safetensors").write_bytes(b"\x10\x00garbage"),
                      "not a readable safetensors"),
    "missing tensor": (lambda d: _shard_edit(d, lambda t: t.pop("multi_vector_projector.bias")), "missing tensor"),
    "extra tensor": (lambda d: _shard_edit(d, lambda t: t.update({"model.extra.weight": torch.zeros(2)})),
                     "unexpected tensor"),
    "no adapters": (lambda d: shutil.rmtree(d / "adapters"), "no adapters/ folder"),
    "no adapter config": (lambda d: (d / "adapters" / "adapter_config.json").unlink(), "no adapter_config.json"),
    "adapter config not JSON": (lambda d: (d / "adapters" / "adapter_config.json").write_text("{"), "not valid JSON"),
    "adapter bin only": (lambda d: ((d / "adapters" / "adapter_model.safetensors").rename(
        d / "adapters" / "adapter_model.bin")), "never unpickles"),
    "rank mismatch": (lambda d: (d / "adapters" / "adapter_config.json").write_text(
        (d / "adapters" / "adapter_config.json").read_text().replace('"r": 32', '"r": 8')), "rank 8"),
    "factor missing": (lambda d: _adapter_edit(d, _drop_pad), "lacks lora_B for task 'code'"),
    "unknown task": (lambda d: _adapter_edit(d, lambda t: t.update({
        "base_model.model.multi_vector_projector.lora_A.search.weight": torch.zeros(32, 64)})), "'search'"),
    "foreign key": (lambda d: _adapter_edit(d, lambda t: t.update({"base_model.model.x.lora_A.weight": torch.zeros(1)})),
                    "unexpected adapter tensor"),
    "vision adapter": (lambda d: _adapter_edit(d, lambda t: t.update({
        "base_model.model.visual.blocks.0.mlp.up_proj.lora_A.code.weight": torch.zeros(32, 32)})), "vision module"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_checkpoints_fail_in_one_line(v4_dir: Path, tmp_path: Path, case: str):
    d = tmp_path / "ckpt"
    shutil.copytree(v4_dir, d)
    edit, message = MALFORMED[case]
    edit(d)
    with pytest.raises(EmbccError) as e:
        read(d)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
