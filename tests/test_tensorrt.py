"""TensorRT: the readiness check on every family's ONNX, profiles, timing-cache keys, engine metadata, the format and
runtime against a stand-in TensorRT module (CPU), and the real thing where TensorRT and a GPU exist (skipped here).

The stand-in (tests/fake_tensorrt.py) is not TensorRT: tests that use it check embcc's side (builder calls per
version, profiles, binding, chunking, refusals); numerics on real engines are the `real_*` tests and
scripts/gpu_check.sh.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import fake_tensorrt
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from embcc.core.errors import EmbccError
from embcc.core.spec import ModelSpec
from embcc.core.trt_env import ENGINE_META, check_engine_compatible
from embcc.export.tensorrt import (
    Profile,
    default_profiles,
    engine_manifest,
    parse_profiles,
    portable_onnx,
    resolve_profiles,
    timing_cache_key,
    timing_cache_path,
)
from embcc.export.trt_ready import check_onnx_for_tensorrt, inspect_onnx_for_tensorrt, prepare_for_tensorrt
from embcc.pipeline import export
from embcc.runtimes import open_artifact
from embcc.runtimes.onnxrt import OnnxEmbedder
from embcc.runtimes.tensorrt import plan_chunks

TEXTS = ["hello world", "Grüße aus München", "東京は日本の首都です。", "a", "double  space", " ".join(["word"] * 150)]
CALIBRATION = ["hello world", "the quick brown fox jumps over the lazy dog", "Grüße aus München", "東京は日本の首都です。",
               "a longer sentence about embeddings, engines and graphs", "short"]
ENV = {"tensorrt": "10.9.0.34", "gpu": "Fake GPU", "compute_capability": "9.0"}
FAMILIES = ("v2", "v3", "v5-nano", "v5-small")


@pytest.fixture(scope="session")
def calibration_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("calib") / "texts.txt"
    p.write_text("\n".join(CALIBRATION) + "\n")
    return p


@pytest.fixture(scope="session")
def family_ckpts(ckpts, v5_ckpts) -> dict[str, Path]:
    return {"v2": ckpts["v2-small"], "v3": ckpts["v3"], "v5-nano": v5_ckpts["nano"], "v5-small": v5_ckpts["small"]}


@pytest.fixture(scope="session")
def onnx_exports(family_ckpts, calibration_file, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """fp32, fp16 and int8 ONNX of every family (adapters kept where there are any). One trace per family: fp16 and
    int8 are lowered from it by the precision passes `embcc export --precision` runs after tracing."""
    from embcc.calibration import check, lower

    root = tmp_path_factory.mktemp("trt-onnx")
    out = {}
    for fam, ck in family_ckpts.items():
        fp32 = export(ck, root / fam / "fp32", lora=None if fam == "v2" else "keep", max_length=512)
        out[fam, "fp32"] = fp32
        spec = ModelSpec.read(fp32)
        for precision in ("fp16", "int8"):
            where = root / fam / precision
            where.mkdir()
            shutil.copyfile(fp32 / "tokenizer.json", where / "tokenizer.json")
            calib = check(precision, spec, file=calibration_file, max_length=64, cache_dir=root / "cache")
            # from the standard-ops graph, as the TensorRT format lowers (model.onnx holds ORT's fused attention)
            lower(fp32 / "model.portable.onnx", where, precision=precision, spec=spec, calibration=calib,
                  checkpoint_sha256="test")
            out[fam, precision] = where
    return out


# ---- readiness on every family's graphs ------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_every_family_graph_is_ready_once_prepared(onnx_exports, family, precision, tmp_path):
    src = portable_onnx(onnx_exports[family, precision])  # what the TensorRT format reads
    raw = inspect_onnx_for_tensorrt(src)
    assert raw.precision == precision
    if family == "v2":
        assert raw.problems == []
    else:  # kept adapters: task_id is a scalar-or-[1] input without a rank until prepared
        assert len(raw.problems) == 1 and "task_id has no rank" in raw.problems[0]
    prepared = prepare_for_tensorrt(src, tmp_path / "model.trt.onnx")
    ready = inspect_onnx_for_tensorrt(prepared)
    assert ready.problems == [], ready.problems
    notes = " ".join(ready.notes)
    assert "opset 18" in notes
    if family in ("v2", "v3"):
        assert "LayerNormalization" in notes
    else:
        assert "decomposed" in notes and "RMSNorm" in notes
    if precision == "int8":
        assert "are int8 x int8" in notes and "embedding table" in notes
        assert not notes.startswith("0 of")
    graph = onnx.load(str(prepared), load_external_data=False)
    inputs = {i.name: i.type.tensor_type for i in graph.graph.input}
    assert inputs["input_ids"].elem_type == inputs["attention_mask"].elem_type == TensorProto.INT64
    if "task_id" in inputs:
        assert [d.dim_value for d in inputs["task_id"].shape.dim] == [1]
    assert all(o.type.tensor_type.elem_type == TensorProto.FLOAT for o in graph.graph.output)


@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_runtime_int8_form_is_not_for_tensorrt(onnx_exports, family):
    problems = " ".join(check_onnx_for_tensorrt(onnx_exports[family, "int8"] / "model.onnx"))
    assert "MatMulInteger" in problems and "DynamicQuantizeLinear" in problems and "uint8" in problems


def test_prepared_graph_computes_what_the_export_computes(onnx_exports, tmp_path):
    """Fixing task_id's rank changes no number: the prepared v3 graph equals the exported one per task."""
    art = onnx_exports["v3", "fp32"]
    prepared = tmp_path / "a"
    shutil.copytree(art, prepared)
    prepare_for_tensorrt(art / "model.onnx", prepared / "model.trt.onnx")
    a, b = OnnxEmbedder(art), OnnxEmbedder(prepared, model_file="model.trt.onnx")
    for task in ("retrieval.query", "text-matching"):
        np.testing.assert_allclose(a.encode(TEXTS, task=task), b.encode(TEXTS, task=task), atol=1e-6)


# ---- readiness: each rule fails for its own reason -------------------------------------------------------------


def _model(nodes, inputs, outputs, inits=(), opset=18, extra_opsets=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])


def _ids(name="input_ids", kind=TensorProto.INT64):
    return helper.make_tensor_value_info(name, kind, ["batch", "seq"])


def _floats(name, kind=TensorProto.FLOAT, shape=("batch", "seq", 4)):
    return helper.make_tensor_value_info(name, kind, None if shape is None else list(shape))


def _table():
    return numpy_helper.from_array(np.ones((10, 4), np.float32), "table")


def _embed(out="h"):
    return helper.make_node("Gather", ["table", "input_ids"], [out], name="embed")


def _write(tmp_path, model, name="m.onnx") -> Path:
    p = tmp_path / name
    onnx.save(model, str(p))
    return p


def _problems(tmp_path, model) -> str:
    return " | ".join(check_onnx_for_tensorrt(_write(tmp_path, model)))


def _qdq_matmul(weight: np.ndarray, w_scale: np.ndarray, axis: int = 1, act_qdq: bool = True,
                zp_type=np.int8, zp_value: int = 0):
    """input_ids -> Gather -> [Q/DQ] -> MatMul(DQ(int8 W)) -> out."""
    inits = [_table(), numpy_helper.from_array(weight.astype(np.int8), "w_q"),
             numpy_helper.from_array(w_scale.astype(np.float32), "w_s"),
             numpy_helper.from_array(np.zeros(w_scale.shape, np.int8), "w_zp"),
             numpy_helper.from_array(np.array(0.05, np.float32), "a_s"),
             numpy_helper.from_array(np.array(zp_value, zp_type), "a_zp")]
    nodes = [_embed(), helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_zp"], ["w"], axis=axis, name="w_dq")]
    act = "h"
    if act_qdq:
        nodes += [helper.make_node("QuantizeLinear", ["h", "a_s", "a_zp"], ["h_q"], name="h_q"),
                  helper.make_node("DequantizeLinear", ["h_q", "a_s", "a_zp"], ["h_dq"], name="h_dq")]
        act = "h_dq"
    nodes.append(helper.make_node("MatMul", [act, "w"], ["out"], name="mm"))
    return _model(nodes, [_ids()], [_floats("out", shape=("batch", "seq", weight.shape[1]))], inits)


def test_good_qdq_graph_passes(tmp_path):
    r = inspect_onnx_for_tensorrt(_write(tmp_path, _qdq_matmul(np.ones((4, 3)), np.full(3, 0.1))))
    assert r.problems == [] and r.precision == "int8"
    assert any("1 of 1 MatMul/Gemm are int8" in n for n in r.notes)


@pytest.mark.parametrize("case,words", [
    ("per_tensor", "per tensor"),
    ("wrong_axis", "axis 0"),
    ("weight_only", "weight-only"),
    ("uint8", "quantizes to uint8"),
    ("nonzero", "non-zero zero point"),
])
def test_qdq_rules(tmp_path, case, words):
    w = np.ones((4, 3))
    model = {
        "per_tensor": lambda: _qdq_matmul(w, np.array([0.1])),
        "wrong_axis": lambda: _qdq_matmul(w, np.full(4, 0.1), axis=0),
        "weight_only": lambda: _qdq_matmul(w, np.full(3, 0.1), act_qdq=False),
        "uint8": lambda: _qdq_matmul(w, np.full(3, 0.1), zp_type=np.uint8),
        "nonzero": lambda: _qdq_matmul(w, np.full(3, 0.1), zp_value=3),
    }[case]()
    assert words in _problems(tmp_path, model)


def test_quantize_without_dequantize_and_without_zero_point(tmp_path):
    inits = [_table(), numpy_helper.from_array(np.array(0.05, np.float32), "s")]
    nodes = [_embed(), helper.make_node("QuantizeLinear", ["h", "s"], ["q"], name="q"),
             helper.make_node("Cast", ["q"], ["out"], to=TensorProto.FLOAT, name="c")]
    problems = _problems(tmp_path, _model(nodes, [_ids()], [_floats("out")], inits))
    assert "followed by DequantizeLinear" in problems and "no zero point" in problems


@pytest.mark.parametrize("case,words", [
    ("contrib", "domain com.microsoft"),
    ("opset", "opset 16 < 17"),
    ("op", "op Unique"),
    ("int32_ids", "input_ids is int32, not int64"),
    ("fp16_output", "output out is float16"),
    ("rankless", "input task_id has no rank"),
    ("runtime_axes", "computes its axes at run time"),
    ("double", "double tensor"),
    ("ln_stash", "stash_type != 1"),
])
def test_graph_rules(tmp_path, case, words):
    out = _floats("out")
    if case == "contrib":
        nodes = [_embed(), helper.make_node("Gelu", ["h"], ["out"], domain="com.microsoft", name="gelu")]
        model = _model(nodes, [_ids()], [out], [_table()], extra_opsets=[helper.make_opsetid("com.microsoft", 1)])
    elif case == "opset":
        model = _model([_embed("out")], [_ids()], [out], [_table()], opset=16)
    elif case == "op":
        nodes = [helper.make_node("Unique", ["input_ids"], ["u"], name="uniq"),
                 helper.make_node("Gather", ["table", "u"], ["out"], name="g")]
        model = _model(nodes, [_ids()], [_floats("out", shape=("n", 4))], [_table()])
    elif case == "int32_ids":
        model = _model([_embed("out")], [_ids(kind=TensorProto.INT32)], [out], [_table()])
    elif case == "fp16_output":
        nodes = [_embed(), helper.make_node("Cast", ["h"], ["out"], to=TensorProto.FLOAT16, name="c")]
        model = _model(nodes, [_ids()], [_floats("out", TensorProto.FLOAT16)], [_table()])
    elif case == "rankless":
        task = helper.make_tensor_value_info("task_id", TensorProto.INT64, None)
        nodes = [_embed(), helper.make_node("Cast", ["task_id"], ["t"], to=TensorProto.FLOAT, name="c"),
                 helper.make_node("Mul", ["h", "t"], ["out"], name="m")]
        model = _model(nodes, [_ids(), task], [out], [_table()])
    elif case == "runtime_axes":
        axes = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
        nodes = [_embed(), helper.make_node("ReduceMean", ["h", "axes"], ["out"], name="rm")]
        model = _model(nodes, [_ids(), axes], [_floats("out", shape=None)], [_table()])
    elif case == "double":
        nodes = [_embed(), helper.make_node("Cast", ["h"], ["d"], to=TensorProto.DOUBLE, name="c"),
                 helper.make_node("Cast", ["d"], ["out"], to=TensorProto.FLOAT, name="c2")]
        model = _model(nodes, [_ids()], [out], [_table()])
    else:  # an fp16 LayerNormalization that accumulates in fp16
        inits = [numpy_helper.from_array(np.ones((10, 4), np.float16), "table"),
                 numpy_helper.from_array(np.ones(4, np.float16), "g"), numpy_helper.from_array(np.zeros(4, np.float16), "b")]
        nodes = [_embed(), helper.make_node("LayerNormalization", ["h", "g", "b"], ["n"], stash_type=0, name="ln"),
                 helper.make_node("Cast", ["n"], ["out"], to=TensorProto.FLOAT, name="c")]
        model = _model(nodes, [_ids()], [out], inits)
    assert words in _problems(tmp_path, model)


def test_prepare_fixes_rank_and_keeps_external_data(tmp_path):
    task = helper.make_tensor_value_info("task_id", TensorProto.INT64, None)
    big = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(1024, 4), "table")
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["h"], name="embed"),
             helper.make_node("Cast", ["task_id"], ["t"], to=TensorProto.FLOAT, name="c"),
             helper.make_node("Mul", ["h", "t"], ["out"], name="m")]
    src_dir, dst_dir = tmp_path / "src", tmp_path / "dst"
    src_dir.mkdir()
    dst_dir.mkdir()
    onnx.save(_model(nodes, [_ids(), task], [_floats("out")], [big]), str(src_dir / "model.onnx"),
              save_as_external_data=True, location="weights.bin", size_threshold=0)
    dst = prepare_for_tensorrt(src_dir / "model.onnx", dst_dir / "model.trt.onnx")
    assert (dst_dir / "weights.bin").is_file() and check_onnx_for_tensorrt(dst) == []
    loaded = onnx.load(str(dst))
    np.testing.assert_array_equal(numpy_helper.to_array(loaded.graph.initializer[0]), numpy_helper.to_array(big))


# ---- profiles, timing cache keys, engine metadata ----------------------------------------------------------------


def test_profile_grammar():
    assert parse_profiles(None) == []
    assert parse_profiles("batch=1:8:64,seq=16:512:8192") == [Profile((1, 8, 64), (16, 512, 8192))]
    assert parse_profiles(" seq = 1:128:512 ; batch=4 ") == [Profile(None, (1, 128, 512)), Profile((4, 4, 4), None)]
    assert parse_profiles(["batch=1:1:1,seq=2:2:2", "SEQ=3:4:5"]) == [Profile((1, 1, 1), (2, 2, 2)),
                                                                      Profile(None, (3, 4, 5))]
    assert Profile((1, 8, 64), (16, 512, 8192)).text() == "batch=1:8:64,seq=16:512:8192"


@pytest.mark.parametrize("text,words", [
    ("", "empty profile"), ("batch=1:8:64;", "empty profile"), ("batch=1:8", "MIN:OPT:MAX"),
    ("batch=1:x:3", "whole numbers"), ("batch=0:1:2", "below 1"), ("seq=8:4:64", "MIN <= OPT <= MAX"),
    ("length=1:2:3", "unknown --profile axis 'length'"), ("batch=1,batch=2", "names batch twice"),
    ("batch", "not AXIS=MIN:OPT:MAX"),
])
def test_profile_errors_are_one_line(text, words):
    with pytest.raises(EmbccError) as e:
        parse_profiles(text)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_profile_derivation():
    assert default_profiles(512) == [Profile((1, 16, 64), (1, 128, 512))]
    assert default_profiles(100) == [Profile((1, 16, 64), (1, 100, 100))]
    assert default_profiles(8192) == [Profile((1, 16, 64), (1, 128, 512)), Profile((1, 1, 4), (513, 2048, 8192))]
    assert default_profiles(32768)[1] == Profile((1, 1, 1), (513, 2048, 32768))
    assert resolve_profiles([], 512) == default_profiles(512)
    assert resolve_profiles(parse_profiles("seq=1:64:256;batch=2:4:8"), 512) == [
        Profile((1, 16, 64), (1, 64, 256)), Profile((2, 4, 8), (1, 128, 512))]
    with pytest.raises(EmbccError, match="seq max 8192 is beyond the artifact's max length 512"):
        resolve_profiles(parse_profiles("seq=1:128:8192"), 512)


def test_timing_cache_key(tmp_path):
    key = timing_cache_key(ENV)
    assert key == timing_cache_key(dict(reversed(list(ENV.items()))))  # order-free
    assert key == timing_cache_key({**ENV, "unrelated": "x"})  # only what timings depend on
    for field, value in (("tensorrt", "10.9.0.35"), ("gpu", "Other GPU"), ("compute_capability", "8.9")):
        assert timing_cache_key({**ENV, field: value}) != key
    path = timing_cache_path(tmp_path, ENV)
    assert path == tmp_path / "tensorrt" / f"timing-{key}.cache" and path.parent.is_dir()


def test_engine_manifest_and_compatibility():
    profiles = default_profiles(8192)
    build = {"network": "weakly typed, builder flags", "flags": ["FP16"], "inputs": {}, "outputs": {}}
    meta = engine_manifest(env=ENV, precision="fp16", profiles=profiles, build=build, onnx_from="model.onnx",
                           notes=["n"])
    assert meta["tensorrt"] == ENV["tensorrt"] and meta["gpu"] == "Fake GPU" and meta["compute_capability"] == "9.0"
    assert meta["profiles"] == [{"batch": [1, 16, 64], "seq": [1, 128, 512]}, {"batch": [1, 1, 4], "seq": [513, 2048, 8192]}]
    assert meta["timing_cache_key"] == timing_cache_key(ENV) and meta["tf32"] is False
    check_engine_compatible(meta, dict(ENV), "art")
    for field, value, words in (("tensorrt", "11.0.0.1", "built with TensorRT 10.9.0.34, this machine has TensorRT 11"),
                                ("compute_capability", "8.9", "compute capability 9.0), this GPU")):
        with pytest.raises(EmbccError) as e:
            check_engine_compatible(meta, {**ENV, field: value}, "art")
        assert words in str(e.value) and "\n" not in str(e.value)


def test_chunk_planning():
    profiles = [((1, 16, 64), (1, 128, 512)), ((1, 1, 4), (513, 2048, 8192))]
    assert [(c.profile, c.start, c.stop, c.batch, c.seq) for c in plan_chunks(profiles, 3, 100)] == [(0, 0, 3, 3, 100)]
    assert [(c.start, c.stop) for c in plan_chunks(profiles, 70, 100)] == [(0, 64), (64, 70)]
    assert [(c.profile, c.start, c.stop) for c in plan_chunks(profiles, 6, 600)] == [(1, 0, 4), (1, 4, 6)]
    assert [(c.batch, c.seq) for c in plan_chunks([((2, 2, 4), (8, 16, 32))], 1, 5)] == [(2, 8)]  # padded up
    with pytest.raises(EmbccError, match="longer than every profile"):
        plan_chunks(profiles, 1, 9000)


# ---- the format and runtime against the stand-in TensorRT ----------------------------------------------------------


@pytest.fixture
def fake_trt(monkeypatch):
    """Install a stand-in `tensorrt` of a given version, a fake GPU and host "device memory"."""
    import embcc.core.trt_env as trt_env
    import embcc.runtimes.tensorrt as trt_runtime

    def install(version: str = ENV["tensorrt"], cc: str = "9.0"):
        module = fake_tensorrt.make(version)
        monkeypatch.setitem(sys.modules, "tensorrt", module)
        monkeypatch.setattr(trt_env, "gpu_info", lambda: {"gpu": "Fake GPU", "compute_capability": cc})
        monkeypatch.setattr(trt_runtime, "cuda_device", fake_tensorrt.HostDevice)
        return module

    return install


def _same_as_its_onnx(art: Path, tasks: list[str | None]) -> None:
    engine, graph = open_artifact(art), OnnxEmbedder(art, model_file="model.trt.onnx")
    assert engine.runtime == "tensorrt"
    for task in tasks:
        np.testing.assert_allclose(engine.encode(TEXTS, task=task), graph.encode(TEXTS, task=task), atol=1e-6)


def test_tensorrt10_fp16_builder_flags_engine_dir_and_runtime(fake_trt, ckpts, calibration_file, tmp_path):
    fake_trt("10.9.0.34")
    out = export(ckpts["v2-small"], tmp_path / "e", fmt="tensorrt", precision="fp16", max_length=512,
                 calibration=str(calibration_file), calibration_max_length=64, cache_dir=tmp_path / "cache")
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["embcc.json", "engine.json", "manifest.json", "model.plan", "model.trt.onnx",
                            "model.fp16.data",  # model.trt.onnx's weights (external data)
                            "precision.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json",
                            "vocab.txt", "README.md"])
    head = fake_tensorrt.plan_head(out / "model.plan")
    assert head["network_flags"] == 0  # weakly typed: TensorRT 10's builder flags carry the precision
    assert "FP16" in head["flags"] and "PREFER_PRECISION_CONSTRAINTS" in head["flags"] and "TF32" not in head["flags"]
    assert head["pinned"] >= 1  # the graph's fp32 layers (its outputs' casts at least) stay fp32
    assert head["profiles"] == [{n: [[1, 1], [16, 128], [64, 512]] for n in ("input_ids", "attention_mask")}]
    meta = json.loads((out / ENGINE_META).read_text())
    assert meta["network"] == "weakly typed, builder flags" and meta["onnx_from"] == "model.portable.onnx"
    assert {k: meta[k] for k in ENV} == {**ENV}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["tensorrt"] == ENV and manifest["options"]["precision"] == "fp16"
    assert manifest["options"]["profiles"] == "default"
    assert ModelSpec.read(out).precision == "fp16"
    _same_as_its_onnx(out, [None])
    with pytest.raises(EmbccError, match="runs on a CUDA GPU only"):
        open_artifact(out, device="cpu")


def test_tensorrt11_int8_strongly_typed_kept_adapters(fake_trt, ckpts, calibration_file, tmp_path):
    fake_trt("11.1.0.5")
    out = export(ckpts["v3"], tmp_path / "e", fmt="tensorrt", precision="int8", lora="keep", max_length=512,
                 calibration=str(calibration_file), calibration_max_length=64, cache_dir=tmp_path / "cache")
    head = fake_tensorrt.plan_head(out / "model.plan")
    assert head["network_flags"] == 1  # STRONGLY_TYPED (accepted and ignored by TensorRT 11)
    assert head["flags"] == []  # no FP16/INT8 flags exist in TensorRT 11; TF32 cleared
    assert ["task_id", [1], 8] in head["inputs"]  # int64 [1]: fixed by prepare_for_tensorrt, needs no profile
    assert not (out / "model.onnx").exists() and not (out / "model.ort.onnx").exists()
    assert (out / "model.int8.data").is_file()  # the portable graph's weights, now model.trt.onnx's
    assert json.loads((out / ENGINE_META).read_text())["network"] == "strongly typed"
    _same_as_its_onnx(out, ["retrieval.query", "classification"])


def test_timing_cache_is_written_then_reused(fake_trt, ckpts, tmp_path):
    fake_trt()
    cache = timing_cache_path(tmp_path / "cache", {**ENV, "gpu": "Fake GPU"})
    export(ckpts["v2-small"], tmp_path / "a", fmt="tensorrt", max_length=128, cache_dir=tmp_path / "cache")
    assert cache.read_bytes() == b"fake timing cache v1+"
    export(ckpts["v2-small"], tmp_path / "b", fmt="tensorrt", max_length=128, cache_dir=tmp_path / "cache")
    assert cache.read_bytes() == b"fake timing cache v1++"  # the second build started from the first's


def test_custom_profiles_pad_and_split(fake_trt, ckpts, tmp_path):
    """Two profiles; batches longer than the first go to the second; short texts are padded up to seq 8 and
    batches split at 2 texts: the stand-in refuses any shape outside the profile, so a wrong plan fails here."""
    fake_trt()
    out = export(ckpts["v2-small"], tmp_path / "e", fmt="tensorrt", max_length=256,
                 profile="batch=1:2:2,seq=8:16:32;batch=1:1:3,seq=33:64:256", cache_dir=tmp_path / "c")
    assert json.loads((out / ENGINE_META).read_text())["profiles"] == [
        {"batch": [1, 2, 2], "seq": [8, 16, 32]}, {"batch": [1, 1, 3], "seq": [33, 64, 256]}]
    engine, graph = open_artifact(out), OnnxEmbedder(out, model_file="model.trt.onnx")
    for batch_size in (1, 2, 5):
        np.testing.assert_allclose(engine.encode(TEXTS, batch_size=batch_size), graph.encode(TEXTS, batch_size=batch_size),
                                   atol=1e-6)
    assert json.loads((out / "manifest.json").read_text())["options"]["profiles"] == [
        "batch=1:2:2,seq=8:16:32", "batch=1:1:3,seq=33:64:256"]


def test_engine_from_another_version_or_gpu_is_refused(fake_trt, ckpts, tmp_path):
    fake_trt("10.9.0.34")
    out = export(ckpts["v2-small"], tmp_path / "e", fmt="tensorrt", max_length=64, cache_dir=tmp_path / "c")
    fake_trt("10.13.0.1")
    with pytest.raises(EmbccError, match=r"built with TensorRT 10\.9\.0\.34, this machine has TensorRT 10\.13"):
        open_artifact(out)
    fake_trt("10.9.0.34", cc="8.9")
    with pytest.raises(EmbccError, match=r"compute capability 9\.0\), this GPU is Fake GPU \(compute capability 8\.9"):
        open_artifact(out)


def test_profile_beyond_max_length_leaves_nothing(fake_trt, ckpts, tmp_path):
    fake_trt()
    with pytest.raises(EmbccError, match="beyond the artifact's max length 64"):
        export(ckpts["v2-small"], tmp_path / "e", fmt="tensorrt", max_length=64, profile="seq=1:8:128")
    assert not (tmp_path / "e").exists() and not list(tmp_path.glob(".e*"))


def test_dynamic_int8_is_refused_before_any_work(fake_trt, ckpts, tmp_path):
    fake_trt()
    with pytest.raises(EmbccError, match="int8_mode dynamic writes ONNX Runtime's integer ops"):
        export(ckpts["v2-small"], tmp_path / "e", fmt="tensorrt", precision="int8", int8_mode="dynamic")
    assert not (tmp_path / "e").exists()


def test_old_tensorrt_is_refused(fake_trt, ckpts, tmp_path):
    fake_trt("8.6.1")
    with pytest.raises(EmbccError, match="TensorRT 8.6.1 is too old"):
        export(ckpts["v2-small"], tmp_path / "e", fmt="tensorrt")


# ---- without TensorRT / without CUDA (this machine) --------------------------------------------------------------


def _tensorrt_importable() -> bool:
    try:
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


def test_missing_tensorrt_is_one_line_and_leaves_nothing(ckpts, tmp_path, capsys):
    if _tensorrt_importable():
        pytest.skip("TensorRT is installed here: the missing-TensorRT message cannot be shown")
    from embcc.cli import main

    out = tmp_path / "e"
    code = main(["export", str(ckpts["v2-small"]), "--out", str(out), "--format", "tensorrt", "--precision", "fp16"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "TensorRT is not installed" in err and "pypi.nvidia.com" in err and "stubs" in err
    assert not out.exists() and not list(tmp_path.glob(".e*"))


def test_onnxruntime_cuda_needs_onnxruntime_gpu(onnx_exports):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime here has CUDA: the missing-provider message cannot be shown")
    with pytest.raises(EmbccError) as e:
        open_artifact(onnx_exports["v2", "fp32"], device="cuda")
    assert "no CUDAExecutionProvider" in str(e.value) and "embcc[gpu]" in str(e.value)
    with pytest.raises(EmbccError, match="unknown device"):
        open_artifact(onnx_exports["v2", "fp32"], device="tpu")
    assert open_artifact(onnx_exports["v2", "fp32"], device="cpu").runtime == "onnxruntime"


# ---- the real thing (skipped without TensorRT / CUDA) ---------------------------------------------------------------


def _real_tensorrt() -> None:
    from embcc.core.trt_env import gpu_info, tensorrt_module

    try:
        tensorrt_module()
        gpu_info()
    except EmbccError as e:
        pytest.skip(f"needs TensorRT and a CUDA GPU: {e}")


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_real_tensorrt_engine_meets_its_bar(ckpts, calibration_file, tmp_path, precision):
    _real_tensorrt()
    from embcc.verify import verify

    for name, lora in (("v2-small", None), ("v3", "keep")):
        out = export(ckpts[name], tmp_path / f"{name}-{precision}", fmt="tensorrt", precision=precision, lora=lora,
                     max_length=512, calibration=None if precision == "fp32" else str(calibration_file),
                     cache_dir=tmp_path / "cache")
        report = verify(out, ckpts[name])
        assert report["passed"], [(r["task"], r["min_cosine"]) for r in report["results"]]


def test_real_onnxruntime_cuda_fp16_parity(onnx_exports, family_ckpts):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("needs onnxruntime-gpu (pip install embcc[gpu]) and CUDA")
    from embcc.export.torch_embedder import TorchEmbedder
    from embcc.families import load
    from embcc.verify import BARS, parity

    for fam in FAMILIES:
        art = onnx_exports[fam, "fp16"]
        shutil.copyfile(onnx_exports[fam, "fp32"] / "embcc.json", art / "embcc.json")
        cuda = open_artifact(art, device="cuda")
        ref = TorchEmbedder(load(family_ckpts[fam]))
        tasks = [t.name for t in cuda.spec.tasks] or [None]
        rows = parity(cuda, ref, tasks=tasks, bar=BARS["fp16"], name=fam)
        assert all(r.passed for r in rows), [(r.task, r.min_cosine) for r in rows]
