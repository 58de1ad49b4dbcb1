"""Fused attention for ONNX Runtime (embcc.export.attention) and the batching that keeps it tiled
(embcc.runtimes.batching).

The fused graph is checked against the torch module it was traced from (transformers' JinaEmbeddingsV3Model /
Qwen3Model / EuroBertModel, embcc's JinaBERT), at lengths far past the traced 16 tokens, unpadded (the tiled
branch) and padded (the masked branch); against its own batching (vectors must not depend on it); for bounded
memory at 8,192 tokens in a child process (the tiled kernels really run); and through int8 and fp16.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from embcc.calibration.fp16 import fp32_attention
from embcc.core.adapted import adapt
from embcc.errors import EmbccError
from embcc.export import attention
from embcc.export.attention import fuse_attention, fuse_attention_file
from embcc.export.graph import build_graph
from embcc.families import load
from embcc.pipeline import artifacts_in, export
from embcc.runtimes import batching
from embcc.runtimes.onnxrt import OnnxEmbedder

FUSED = "model.fused.onnx"
CASES = {  # name: (checkpoint, lora mode)
    "v3-merge": ("v3", "merge"), "v3-keep": ("v3", "keep"),
    "small-merge": ("small", "merge"), "small-keep": ("small", "keep"),
    "nano-merge": ("nano", "merge"), "nano-keep": ("nano", "keep"),
    "v2": ("v2-small", None),
}
KIND = {"v3": "mha", "nano": "mha", "small": "gqa", "v2-small": "bias"}
VOCAB = 900  # below every tiny fixture's vocabulary
TEXTS = ["hello world", "hello there", "a much longer sentence about nothing in particular at all", "x",
         "hello world", "Grüße aus München " * 30, "another medium length text, with commas", "short one"]


class Case:
    def __init__(self, name: str, ckpt: Path, lora: str | None, root: Path):
        bundle = load(ckpt)
        self.name, self.kind, self.lora, self.tasks = name, KIND[CASES[name][0]], lora, len(bundle.spec.tasks)
        self.task = bundle.spec.tasks[0].name if lora == "merge" else None
        self.artifact = artifacts_in(export(ckpt, root / name, lora=lora, task=self.task))[0]
        self.portable = self.artifact / "model.portable.onnx"
        self.graph = build_graph(adapt(bundle, task=self.task, lora=lora))
        self.options = bundle.family.attention(bundle, "text")
        self.report = fuse_attention_file(self.portable, self.artifact / FUSED, **self.options)
        self.fused = self.artifact / FUSED
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.fused), opts, providers=["CPUExecutionProvider"])

    def feeds(self, ids: np.ndarray, mask: np.ndarray, task_id: int = 1) -> dict:
        f = {"input_ids": ids, "attention_mask": mask}
        if self.lora == "keep":
            f["task_id"] = np.array(task_id, dtype=np.int64)
        return f

    def onnx(self, ids: np.ndarray, mask: np.ndarray, task_id: int = 1) -> np.ndarray:
        return self.session.run(["sentence_embedding"], self.feeds(ids, mask, task_id))[0]

    def torch(self, ids: np.ndarray, mask: np.ndarray, task_id: int = 1) -> np.ndarray:
        t = torch.tensor([task_id]) if self.lora == "keep" else None
        with torch.inference_mode():
            return self.graph(torch.from_numpy(ids), torch.from_numpy(mask), t)[1].numpy()


@pytest.fixture(scope="module")
def cases(ckpts, v5_ckpts, tmp_path_factory):
    paths = {"v3": ckpts["v3"], "v2-small": ckpts["v2-small"], "small": v5_ckpts["small"], "nano": v5_ckpts["nano"]}
    root = tmp_path_factory.mktemp("fused")
    built: dict[str, Case] = {}

    def get(name: str) -> Case:
        if name not in built:
            ckpt, lora = CASES[name]
            built[name] = Case(name, paths[ckpt], lora, root)
        return built[name]

    return get


def batch(lengths: list[int], seed: int = 0, left: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Random ids, padded to the longest (right-padded unless `left`); pad id 1, which the mask hides."""
    rng = np.random.default_rng(seed)
    width = max(lengths)
    ids = np.ones((len(lengths), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, n in enumerate(lengths):
        span = slice(width - n, width) if left else slice(0, n)
        ids[i, span] = rng.integers(5, VOCAB, size=n)
        mask[i, span] = 1
    return ids, mask


def agree(a: np.ndarray, b: np.ndarray, cos: float = 0.9999, abs_diff: float = 1e-5) -> tuple[float, float]:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    c = float(((a64 * b64).sum(1) / np.linalg.norm(a64, axis=1) / np.linalg.norm(b64, axis=1)).min())
    d = float(np.abs(a64 - b64).max())
    print(f"min cosine {c:.8f}  max abs diff {d:.3g}")  # shown with pytest -s
    assert c >= cos and d <= abs_diff, f"min cosine {c:.8f}, max abs diff {d:.3g}"
    return c, d


def all_nodes(graph: onnx.GraphProto):
    for n in graph.node:
        yield n
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from all_nodes(a.g)


# ---- the rewrite -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_every_attention_block_is_fused(cases, name):
    c = cases(name)
    layers = c.graph.backbone.config.num_hidden_layers
    assert c.report["kind"] == c.kind and c.report["blocks"] == layers and c.report["unfused_softmax"] == 0
    fused = onnx.load(str(c.fused))
    ops = [n.op_type for n in all_nodes(fused.graph)]
    assert "Softmax" not in ops
    assert {p.key: p.value for p in fused.metadata_props}[attention.METADATA_KEY] == c.kind
    ifs = [n for n in fused.graph.node if n.op_type == "If"]
    assert len(ifs) == layers
    for n in ifs:
        then = next(a.g for a in n.attribute if a.name == "then_branch")
        other = next(a.g for a in n.attribute if a.name == "else_branch")
        (t,), (e,) = then.node, other.node
        if c.kind == "bias":  # ALiBi: the model's [1, H, L, L] bias, the padding as key_padding_mask
            assert t.op_type == e.op_type == "MultiHeadAttention" and t.input[5] == e.input[5]
            assert not t.input[4] and e.input[4]
            bias_shape = next(v for v in fused.graph.value_info if v.name == t.input[5]).type.tensor_type.shape
            assert bias_shape.dim[0].dim_value == 1  # not the [B, H, L, L] padded copy
            continue
        if c.kind == "mha":  # the tiled case: 3D Q/K/V and nothing else
            assert t.op_type == "MultiHeadAttention" and [x for x in t.input if x] == list(t.input[:3])
            # padded: long right-padded batches loop over rows (each unmasked), the rest take the mask
            rows = next(a.g for a in e.attribute if a.name == "then_branch")
            masked = next(a.g for a in e.attribute if a.name == "else_branch")
            (body,) = [a.g for n2 in rows.node if n2.op_type == "Loop" for a in n2.attribute if a.name == "body"]
            (row_mha,) = [n2 for n2 in body.node if n2.op_type == "MultiHeadAttention"]
            assert e.op_type == "If" and len([x for x in row_mha.input if x]) == 3
            (e,) = masked.node
        else:  # causal GQA over the un-repeated KV heads, present outputs requested (the flash condition)
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in t.attribute}
            assert t.op_type == "GroupQueryAttention" and attrs["kv_num_heads"] == c.options["kv_heads"]
            assert attrs.get("causal", 1) == 1 and len(t.output) == 3
        assert e.op_type == "MultiHeadAttention" and e.input[4]  # key_padding_mask
    # the portable graph is left as it was: standard ops only
    portable = onnx.load(str(c.portable))
    assert "Softmax" in {n.op_type for n in portable.graph.node}
    assert not any(n.domain == attention.MS for n in portable.graph.node)


def test_the_input_model_is_not_changed(cases):
    c = cases("v3-merge")
    model = onnx.load(str(c.portable))
    before = model.SerializeToString()
    fuse_attention(model, **c.options)
    assert model.SerializeToString() == before


# ---- parity with torch ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("length", [8, 300, 2048])
def test_matches_torch_unpadded_and_padded(cases, name, length):
    """Traced at 16 tokens; unpadded runs the tiled branch, the padded pair the masked one."""
    c = cases(name)
    for lengths in ([length], [length, length // 2 + 1]):
        ids, mask = batch(lengths, seed=length)
        agree(c.onnx(ids, mask), c.torch(ids, mask))


@pytest.mark.parametrize("name", ["v3-merge", "small-keep", "nano-merge", "v2"])
@pytest.mark.parametrize("width", [40, attention.ROWS_MIN_LENGTH + 100])
def test_left_padding_takes_the_masked_branch(cases, name, width):
    c = cases(name)
    ids, mask = batch([width, 13, width - 7], seed=3, left=True)
    agree(c.onnx(ids, mask), c.torch(ids, mask))


@pytest.mark.parametrize("name", ["v3-keep", "nano-merge"])
def test_long_right_padded_batches_run_row_by_row(cases, name):
    """Past ROWS_MIN_LENGTH a right-padded batch loops over its rows (unmasked, tiled); an empty row or a hole in
    the mask sends it to the masked branch instead. All three agree with torch."""
    c = cases(name)
    n = attention.ROWS_MIN_LENGTH + 200
    ids, mask = batch([n, 90, n - 1, 1], seed=8)
    agree(c.onnx(ids, mask), c.torch(ids, mask))
    holes = mask.copy()
    holes[0, 10:20] = 0
    agree(c.onnx(ids, holes), c.torch(ids, holes))
    empty = mask.copy()
    empty[3] = 0
    got = c.onnx(ids, empty)
    agree(got[:3], c.torch(ids[:3], mask[:3]))


@pytest.mark.parametrize("name", ["v3-keep", "small-keep", "nano-keep"])
def test_kept_adapters_select_their_task(cases, name):
    c = cases(name)
    ids, mask = batch([64], seed=5)
    for t in range(c.tasks):
        agree(c.onnx(ids, mask, t), c.torch(ids, mask, t))
    assert not np.allclose(c.onnx(ids, mask, 0), c.onnx(ids, mask, 1), atol=1e-4)
    as_array = c.session.run(["sentence_embedding"], {**c.feeds(ids, mask), "task_id": np.array([1], dtype=np.int64)})
    agree(as_array[0], c.onnx(ids, mask, 1), cos=0.999999, abs_diff=0)  # task_id as Jina's clients send it


# ---- batching -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["v3-merge", "small-merge", "nano-keep", "v2"])
def test_vectors_do_not_depend_on_batching(cases, name):
    """Single texts, length buckets (unpadded batches) and one padded batch: fp32 max abs diff <= 1e-6."""
    c = cases(name)
    lengths = [7, 30, 7, 100, 30, 7, 250]
    ids, mask = batch(lengths, seed=11)
    rows = [ids[i : i + 1, : n] for i, n in enumerate(lengths)]
    single = np.concatenate([c.onnx(r, np.ones_like(r)) for r in rows])
    bucketed = np.zeros_like(single)
    for n in sorted(set(lengths)):
        idx = [i for i, m in enumerate(lengths) if m == n]
        group = np.concatenate([rows[i] for i in idx])
        bucketed[idx] = c.onnx(group, np.ones_like(group))
    padded = c.onnx(ids, mask)
    agree(single, bucketed, cos=0.999999, abs_diff=1e-6)
    agree(single, padded, cos=0.999999, abs_diff=1e-6)


@pytest.mark.parametrize("name", ["v3-merge", "small-merge"])
def test_batching_encode_returns_input_order(cases, name):
    c = cases(name)
    emb = OnnxEmbedder(c.artifact, model_file=FUSED, threads=2)
    assert emb.attention_kind() == c.kind
    kw = {"task": c.task} if c.task else {}
    got = emb.encode(TEXTS, batch_size=3, **kw)
    singles = np.concatenate([emb.encode([t], **kw) for t in TEXTS])
    ids = emb.token_ids(TEXTS, c.task)
    input_ids, mask = emb.batch(ids)  # every text in one padded batch, in input order
    padded = emb._embed(input_ids, mask, 0 if c.lora == "keep" else None)
    padded = padded / np.linalg.norm(padded, axis=1, keepdims=True)
    agree(got, singles, cos=0.999999, abs_diff=1e-6)
    agree(got, padded, cos=0.999999, abs_diff=1e-6)
    assert emb.encode([], **kw).shape == (0, c.graph.backbone.config.hidden_size)
    assert emb.encode(TEXTS[:3], dim=32, **kw).shape == (3, 32)


def test_plan_batches():
    lengths = [5, 100, 100, 3000, 3000, 7, 7, 7, 8, 9000] + [64] * 9
    for kind in ("mha", "gqa", "bias", None):
        plan = batching.plan_batches(lengths, 4, kind)
        assert sorted(i for b in plan for i in b) == list(range(len(lengths)))
        assert all(len(b) <= 4 for b in plan)
        for b in plan:  # sorted by length inside a batch, and never padded on a long text
            assert [lengths[i] for i in b] == sorted(lengths[i] for i in b)
            if len({lengths[i] for i in b}) > 1:
                assert max(lengths[i] for i in b) <= 2 * sum(lengths[i] for i in b) // len(b) or \
                    max(lengths[i] for i in b) <= batching.SHORT
    mha = batching.plan_batches(lengths, 4, "mha")
    assert [lengths[i] for i in mha[-1]] == [9000]  # alone, unpadded
    assert [3, 4] in mha  # two long texts of one length: one unpadded batch
    assert sum(1 for b in mha if [lengths[i] for i in b] == [64] * 4) == 2  # full equal-length batches
    for b in mha:  # a padded mha batch stays within the budget of the masked (non-tiled) path
        widths = [lengths[i] for i in b]
        if len(set(widths)) > 1:
            assert len(b) * max(widths) ** 2 <= batching.PAD_BUDGET
    with pytest.raises(ValueError):
        batching.plan_batches([3], 0, "mha")


def test_metadata_key_is_shared():
    assert attention.METADATA_KEY == batching.METADATA_KEY


# ---- bounded memory: the tiled kernels really run -------------------------------------------------------------

CHILD = r"""
import sys, numpy as np, onnxruntime as ort
path, n, keep = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
o = ort.SessionOptions(); o.intra_op_num_threads = 2; o.log_severity_level = 3
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) * 1024
second = int(sys.argv[4])
ids = np.random.default_rng(0).integers(5, 900, size=(2 if second else 1, n)).astype(np.int64)
mask = np.ones_like(ids)
if second:
    mask[1, second:] = 0
f = {"input_ids": ids, "attention_mask": mask}
if keep: f["task_id"] = np.array(0, dtype=np.int64)
small = {k: (v[:1, :64] if v.ndim == 2 else v) for k, v in f.items()}
s.run(["sentence_embedding"], small)
before = hwm()
out = s.run(["sentence_embedding"], f)[0]
print(hwm() - before, bool(np.isfinite(out).all()))
"""


@pytest.mark.parametrize(("name", "second"), [("v3-merge", 0), ("small-keep", 0), ("v3-merge", 5000),
                                             ("small-keep", 5000)])
def test_long_input_memory_is_bounded(cases, name, second):
    """8,192 tokens (alone, or right-padded beside a 5,000-token text): the batch x heads x L x L fp32 score
    matrix of an untiled path would be batch * heads * 256 MiB; the fused graph must stay far below it (peak RSS
    growth of a fresh child process over a 64-token call; the portable graph grows by 5.4 GB here)."""
    c = cases(name)
    n = 8192
    p = subprocess.run([sys.executable, "-c", CHILD, str(c.fused), str(n), "1" if c.lora == "keep" else "0",
                        str(second)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    grew, finite = p.stdout.split()
    scores = (2 if second else 1) * c.options["heads"] * n * n * 4  # what the masked path would materialise
    assert finite == "True" and int(grew) < scores / 4, f"grew {int(grew) / 2**20:.0f} MiB"


# ---- files, int8, fp16 ----------------------------------------------------------------------------------------


def test_external_weights_are_shared(cases, tmp_path):
    c = cases("v3-keep")
    src = tmp_path / "model.onnx"
    onnx.save(onnx.load(str(c.portable)), str(src), save_as_external_data=True, location="model.onnx_data",
              size_threshold=0)
    dst = tmp_path / "model.fused.onnx"
    fuse_attention_file(src, dst, **c.options)
    def refs(path: Path) -> dict[str, dict]:
        return {t.name: {e.key: e.value for e in t.external_data}
                for t in onnx.load(str(path), load_external_data=False).graph.initializer
                if t.data_location == onnx.TensorProto.EXTERNAL}

    big = {k: v for k, v in refs(src).items() if int(v["length"]) > attention.INLINE_BYTES}
    assert big and {k: v for k, v in refs(dst).items() if k in big} == big  # same file, offsets, lengths
    s = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    ids, mask = batch([33, 20], seed=2)
    got = s.run(["sentence_embedding"], c.feeds(ids, mask))[0]
    agree(got, c.onnx(ids, mask), cos=0.999999, abs_diff=1e-6)
    with pytest.raises(EmbccError, match="not beside"):
        fuse_attention_file(src, tmp_path / "elsewhere" / "m.onnx", **c.options)


def test_bad_input(cases):
    c = cases("v3-merge")
    model = onnx.load(str(c.portable))
    with pytest.raises(EmbccError, match="unknown attention kind"):
        fuse_attention(model, **{**c.options, "kind": "flash"})
    with pytest.raises(EmbccError, match="shape"):
        fuse_attention(model, **{**c.options, "heads": c.options["heads"] * 2})
    with pytest.raises(EmbccError, match="causal"):
        fuse_attention(model, **{**c.options, "causal": True})
    x = onnx.helper.make_tensor_value_info("attention_mask", onnx.TensorProto.INT64, ["b", "s"])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.INT64, ["b", "s"])
    plain = onnx.helper.make_model(onnx.helper.make_graph([onnx.helper.make_node("Identity", ["attention_mask"], ["y"])],
                                                          "g", [x], [y]), opset_imports=[onnx.helper.make_opsetid("", 18)])
    with pytest.raises(EmbccError, match="no attention block"):
        fuse_attention(plain, **c.options)


@pytest.mark.parametrize("name", ["v3-keep", "small-merge"])
def test_int8_keeps_the_fused_attention_float(cases, name, tmp_path):
    """embcc's ONNX Runtime int8 form (quantize_dynamic on the weight MatMuls, activation MatMuls excluded) works on
    the fused graph as on the portable one, and fusing an already quantized graph works too."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from embcc.calibration.int8 import QUANTIZED_OPS, activation_matmuls

    c = cases(name)

    def q(src: Path, dst: Path) -> onnx.ModelProto:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=QUANTIZED_OPS, nodes_to_exclude=activation_matmuls(onnx.load(str(src))))
        return onnx.load(str(dst))

    qf, qp = q(c.fused, tmp_path / "qf.onnx"), q(c.portable, tmp_path / "qp.onnx")
    count = lambda m, op: sum(n.op_type == op for n in all_nodes(m.graph))  # noqa: E731
    assert count(qf, "MatMulInteger") == count(qp, "MatMulInteger") > 0
    assert count(qf, "MultiHeadAttention") + count(qf, "GroupQueryAttention") > 0
    after, _ = fuse_attention(qp, **c.options)
    onnx.save(after, str(tmp_path / "qpf.onnx"))
    ids, mask = batch([50, 20], seed=4)
    ref = c.torch(ids, mask)
    for p in ("qf.onnx", "qpf.onnx"):
        s = ort.InferenceSession(str(tmp_path / p), providers=["CPUExecutionProvider"])
        agree(s.run(["sentence_embedding"], c.feeds(ids, mask))[0], ref, cos=0.99, abs_diff=0.05)


@pytest.mark.parametrize("name", ["nano-merge", "small-merge", "v2"])
def test_fp16_keeps_fp32_attention_islands(cases, name, tmp_path):
    from embcc.calibration.fp16 import convert

    c = cases(name)
    half = fp32_attention(convert(onnx.load(str(c.fused)), []))
    attn = [n for n in all_nodes(half.graph) if n.op_type in ("MultiHeadAttention", "GroupQueryAttention")]
    casts = {n.output[0]: n for n in all_nodes(half.graph) if n.op_type == "Cast"}
    assert attn and all(casts[n.input[0]].attribute[0].i == onnx.TensorProto.FLOAT for n in attn)
    onnx.save(half, str(tmp_path / "half.onnx"))
    s = ort.InferenceSession(str(tmp_path / "half.onnx"), providers=["CPUExecutionProvider"])
    for lengths in ([300], [300, 100]):
        ids, mask = batch(lengths, seed=6)
        agree(s.run(["sentence_embedding"], c.feeds(ids, mask))[0], c.torch(ids, mask), cos=0.999, abs_diff=0.02)
