"""fp16 and int8 ONNX artifacts: the bars of SPEC.md section 4, the forms they ship, the calibration cache
(reuse and byte-identical output), measured fp32 islands, the corpus, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from embcc.calibration import corpus, data
from embcc.calibration.fp16 import SAFE_RANGE, decide
from embcc.calibration.int8 import PORTABLE_FILE, WEIGHTS
from embcc.cli import main
from embcc.core.spec import ModelSpec
from embcc.pipeline import export
from embcc.probes import PROBES
from embcc.runtimes.preprocess import Preprocessor
from embcc.verify import BARS, format_table, verify

STANDARD_OPS = {"", "ai.onnx"}
CASES = {
    # name: (checkpoint, lora, precision, int8 mode); merged cases export one task except int8 static (all five)
    "v3-keep-int8-static": ("v3", "keep", "int8", "static"),
    "v3-merge-int8-static": ("v3", "merge", "int8", "static"),
    "v3-keep-int8-dynamic": ("v3", "keep", "int8", "dynamic"),
    "v3-merge-int8-dynamic": ("v3", "merge", "int8", "dynamic"),
    "v3-keep-fp16": ("v3", "keep", "fp16", None),
    "v3-merge-fp16": ("v3", "merge", "fp16", None),
    "v2-int8-static": ("v2-small", None, "int8", "static"),
    "v2-int8-dynamic": ("v2-small", None, "int8", "dynamic"),
    "v2-fp16": ("v2-small", None, "fp16", None),
}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("calibration-cache")


@pytest.fixture(scope="session")
def reduced(ckpts, cache_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reduced")
    out = {}
    for name, (ckpt, lora, precision, mode) in CASES.items():
        task = "retrieval.passage" if lora == "merge" and name != "v3-merge-int8-static" else None
        out[name] = export(ckpts[ckpt], root / name, lora=lora, task=task, precision=precision, int8_mode=mode,
                           max_length=512, cache_dir=cache_dir)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_reduced_precision_artifacts_pass_their_bars(name, reduced, ckpts):
    ckpt, lora, precision, _ = CASES[name]
    report = verify(reduced[name], ckpts[ckpt])
    assert report["passed"], format_table(report)
    rows = report["results"]
    assert all(r["bar"] == BARS[precision] for r in rows)
    tasks = {r["task"] for r in rows}
    every = {"retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"}
    assert tasks == {None: {None}, "keep": every, "merge": every if "static" in name else {"retrieval.passage"}}[lora]
    # the reduced graph is really reduced: not bit-equal to the fp32 reference
    assert min(r["max_abs_diff"] for r in rows) > 0


def test_static_int8_ships_a_portable_qdq_graph_and_an_ort_form(reduced):
    for name in ("v3-keep-int8-static", "v2-int8-static"):
        art = reduced[name]
        portable = onnx.load(str(art / PORTABLE_FILE))
        ops = {n.op_type for n in portable.graph.node}
        assert {n.domain for n in portable.graph.node} <= STANDARD_OPS  # TensorRT 11 reads standard ops only
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        # LayerNorm, Softmax and GELU stay float: none of them consumes a dequantized tensor directly
        dq_outputs = {n.output[0] for n in portable.graph.node if n.op_type == "DequantizeLinear"}
        for n in portable.graph.node:
            if n.op_type in ("LayerNormalization", "Softmax", "Erf"):
                assert not dq_outputs & set(n.input), n.name
        # weights per output channel, symmetric (zero point 0): the form TensorRT's strongly typed builder takes
        inits = {i.name: numpy_helper.to_array(i, base_dir=str(art)) for i in portable.graph.initializer}
        weight_dq = [n for n in portable.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                     and inits[n.input[0]].dtype == np.int8 and inits[n.input[0]].ndim == 2]
        assert weight_dq
        assert all(inits[n.input[1]].size > 1 for n in weight_dq)  # per channel / per row scales
        assert all(not inits[n.input[2]].any() for n in weight_dq if len(n.input) > 2 and n.input[2] in inits)
        # embedding table stored int8 and dequantized before the lookup
        precision = json.loads((art / "precision.json").read_text())
        (table,) = [t for t in precision["embedding_tables_int8"] if "word" in t or "embed" in t][:1]
        gathers = [n for n in portable.graph.node if n.op_type == "Gather" and n.input[0] == table]
        producers = {n.output[0]: n for n in portable.graph.node}
        assert gathers and producers[table].op_type == "DequantizeLinear"
        # the ONNX Runtime form reads the same weight file and gathers int8 rows first
        ort_form = onnx.load(str(art / "model.onnx"), load_external_data=False)
        assert not any(n.op_type == "Gather" and n.input[0] == table for n in ort_form.graph.node)
        locations = {e.value for i in ort_form.graph.initializer for e in i.external_data if e.key == "location"}
        assert locations == {WEIGHTS}
        assert json.loads((art / "manifest.json").read_text())["files"].keys() >= {"model.onnx", PORTABLE_FILE, WEIGHTS}


def test_every_reduced_graph_keeps_the_client_outputs(reduced):
    """fp16 and both int8 forms keep text_embeds first (Jina's contract), sentence_embedding, and the
    last_hidden_state alias sentence-transformers/optimum read; the alias is the token states, bit for bit."""
    import onnxruntime as ort

    from embcc.export.onnx import GRAPH_OUTPUTS
    from embcc.pipeline import artifacts_in
    from embcc.runtimes import onnx_forms

    for name, root in reduced.items():
        for art in artifacts_in(root):
            for form in onnx_forms(art):
                sess = ort.InferenceSession(str(art / form), providers=["CPUExecutionProvider"])
                assert [o.name for o in sess.get_outputs()] == GRAPH_OUTPUTS, (name, form)
                ids = np.array([[0, 5, 6, 7, 2], [0, 8, 2, 1, 1]], dtype=np.int64)
                feeds = {"input_ids": ids, "attention_mask": (ids != 1).astype(np.int64)}
                if "task_id" in {i.name for i in sess.get_inputs()}:
                    feeds["task_id"] = np.array([1], dtype=np.int64)
                states, _, alias = sess.run(None, feeds)
                assert np.array_equal(states, alias), (name, form)


def test_dynamic_int8_is_onnxruntimes_plain_quantize_dynamic(reduced):
    model = onnx.load(str(reduced["v2-int8-dynamic"] / "model.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert "DynamicQuantizeLinear" in ops and ("MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops)
    precision = json.loads((reduced["v2-int8-dynamic"] / "precision.json").read_text())
    assert precision["mode"] == "dynamic"


def test_artifacts_record_precision_and_what_stayed_float(reduced):
    for name, (_, _, precision, mode) in CASES.items():
        arts = [reduced[name]] if (reduced[name] / "embcc.json").is_file() else sorted(
            p for p in reduced[name].iterdir() if p.is_dir())
        for art in arts:
            assert ModelSpec.read(art).precision == precision
            report = json.loads((art / "precision.json").read_text())
            assert report["precision"] == precision
            assert report["calibration"]["texts"] == len(corpus.CORPUS)
            if precision == "fp16":
                assert all(k["reason"].startswith(("range:", "error:")) for k in report["kept_fp32"])
                assert report["calibration_min_cosine"] >= 0.999
            else:
                assert report["layers_hurting_most"] and report["mode"] == mode
            graph = onnx.load(str(art / "model.onnx"), load_external_data=False)
            assert [o.name for o in graph.graph.output] == ["text_embeds", "sentence_embedding", "last_hidden_state"]
            assert [i.type.tensor_type.elem_type for i in graph.graph.output] == [TensorProto.FLOAT] * 3


def test_fp16_graph_stores_fp16_weights(reduced):
    art = reduced["v3-keep-fp16"]
    model = onnx.load(str(art / "model.onnx"))
    big = [i for i in model.graph.initializer if np.prod(i.dims) >= 1024]
    assert big and all(i.data_type == TensorProto.FLOAT16 for i in big if "lora" not in i.name.lower())


def test_second_export_reuses_the_cache_and_is_byte_identical(reduced, ckpts, cache_dir, tmp_path, monkeypatch):
    def no_calibration(*args, **kwargs):
        raise AssertionError("calibration ran again although the cache holds its result")

    monkeypatch.setattr(data, "feeds", no_calibration)
    monkeypatch.setattr("embcc.calibration.part_feeds", no_calibration)
    for name in ("v3-keep-int8-static", "v3-merge-fp16", "v2-int8-dynamic"):
        ckpt, lora, precision, mode = CASES[name]
        task = "retrieval.passage" if lora == "merge" else None
        again = export(ckpts[ckpt], tmp_path / name, lora=lora, task=task, precision=precision, int8_mode=mode,
                       max_length=512, cache_dir=cache_dir)
        first = sorted(p.relative_to(reduced[name]) for p in reduced[name].rglob("*")
                       if p.is_file() and not p.name.startswith("parity"))  # verify's report: json, md, html, png
        second = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
        assert first == second
        for rel in first:
            assert (reduced[name] / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_a_new_cache_directory_calibrates_again(ckpts, tmp_path):
    texts = tmp_path / "cal.txt"
    texts.write_text("one small text\nanother text about cooking pasta\n")
    export(ckpts["v2-small"], tmp_path / "a", precision="int8", calibration=texts, cache_dir=tmp_path / "c1")
    entries = sorted(p.name.split("-")[0:2] for p in (tmp_path / "c1" / "calibration").iterdir())
    assert ["int8", "ranges"] in entries and ["int8", "static"] in entries


def test_user_calibration_file_json_lines_with_tasks(ckpts, tmp_path, monkeypatch):
    f = tmp_path / "cal.jsonl"
    rows = [{"text": "what is the boiling point of water", "task": "retrieval.query"},
            {"text": "Water boils at 100 degrees Celsius at sea level.", "task": "retrieval.passage"},
            {"text": "a text for every task"}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    spec = ModelSpec.read(Path(export(ckpts["v3"], tmp_path / "fp32", lora="keep", max_length=64)))
    texts = data.read_file(f)
    keep = data.feeds(texts, spec, tmp_path / "fp32" / "tokenizer.json", keep=True)
    assert sorted({int(x["task_id"]) for x in keep}) == [t.id for t in spec.tasks]  # every task id calibrated
    assert sum(x["input_ids"].shape[0] for x in keep) == 2 + 5  # task texts once, the untasked one per task
    query = [t for t in spec.tasks if t.name == "retrieval.query"][0]
    tok = Preprocessor(spec, tmp_path / "fp32" / "tokenizer.json")
    first = next(x for x in keep if int(x["task_id"]) == query.id)
    assert tok.token_ids([rows[0]["text"]], "retrieval.query")[0] in first["input_ids"].tolist() or \
        any(tok.token_ids([rows[0]["text"]], "retrieval.query")[0] == row[: int(m.sum())].tolist()
            for row, m in zip(first["input_ids"], first["attention_mask"]))


def test_calibration_length_is_capped(ckpts, tmp_path):
    spec = ModelSpec.read(Path(export(ckpts["v2-small"], tmp_path / "fp32", max_length=2048)))
    long = [data.CalibrationText(" ".join(["word"] * 3000))]
    feeds = data.feeds(long, spec, tmp_path / "fp32" / "tokenizer.json", keep=False, max_length=100)
    assert feeds[0]["input_ids"].shape == (1, 100)


def _graph(scale: float) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("input_ids", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, [None, 4])
    w = numpy_helper.from_array((np.eye(4) * scale).astype(np.float32), "w")
    g = numpy_helper.from_array(np.ones(4, np.float32), "g")
    nodes = [helper.make_node("MatMul", ["input_ids", "w"], ["big"], name="scale_up"),
             helper.make_node("Mul", ["big", "big"], ["squared"], name="square"),
             helper.make_node("LayerNormalization", ["squared", "g"], ["sentence_embedding"], name="norm")]
    graph = helper.make_graph(nodes, "g", [x], [y], [w, g],
                              value_info=[helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 4])
                                          for n in ("big", "squared")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_fp16_keeps_nodes_beyond_the_safe_range_in_fp32(tmp_path):
    feeds = [{"input_ids": np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)}]
    for scale, expect in ((1.0, set()), (100.0, {"square", "norm"})):
        path = tmp_path / f"g{scale}.onnx"
        onnx.save(_graph(scale), str(path))
        kept = decide(path, feeds)["kept_fp32"]
        assert {k["node"] for k in kept} == expect, kept
        assert all("range" in k["reason"] and float(k["reason"].split("= ")[1].split()[0]) > SAFE_RANGE
                   for k in kept)


def test_builtin_corpus_is_large_multilingual_and_held_out():
    texts = corpus.CORPUS
    assert len(texts) >= 300 and len(set(texts)) == len(texts)
    assert len(corpus.LANGUAGES) >= 8
    scripts = {"latin": "a", "cyrillic": "\u0430", "cjk": "\u4e00", "arabic": "\u0627", "devanagari": "\u0905",
               "hangul": "\uac00", "kana": "\u3042"}
    ranges = {"cyrillic": (0x400, 0x4FF), "cjk": (0x4E00, 0x9FFF), "arabic": (0x600, 0x6FF),
              "devanagari": (0x900, 0x97F), "hangul": (0xAC00, 0xD7AF), "kana": (0x3040, 0x30FF)}
    for script, (lo, hi) in ranges.items():
        assert any(any(lo <= ord(c) <= hi for c in t) for t in texts), scripts[script]
    assert set(corpus.KINDS) >= {"query", "passage", "code", "numbers"}
    assert sum(len(t.split()) > 150 for t in texts) >= 20
    probes = {p for p in PROBES if len(p) > 20}
    assert not set(texts) & set(PROBES)
    assert not any(p in t for t in texts for p in probes)


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("setup, argv, words", [
    ("empty", ["--precision", "int8", "--calibration", "{f}"], ["holds no texts"]),
    ("whitespace", ["--precision", "fp16", "--calibration", "{f}"], ["holds no texts"]),
    ("binary", ["--precision", "int8", "--calibration", "{f}"], ["cannot read calibration file"]),
    ("missing", ["--precision", "int8", "--calibration", "{f}"], ["cannot read calibration file"]),
    ("nothing", ["--precision", "int8", "--calibration", "{f}"], ["tokenises to nothing"]),
    ("badjson", ["--precision", "int8", "--calibration", "{f}"], ["not valid JSON"]),
    ("badtask", ["--precision", "int8", "--calibration", "{f}"], ["task 'retrieval.query'", "no tasks"]),
    ("ok", ["--precision", "int8", "--calibration-method", "kl"], ["--calibration-method: invalid choice: 'kl'", "minmax"]),
    ("ok", ["--precision", "int8", "--int8-mode", "weird"], ["--int8-mode: invalid choice", "'static', 'dynamic'"]),
    ("ok", ["--precision", "bf16"], ["--precision: invalid choice: 'bf16'", "fp16"]),
    ("ok", ["--precision", "int4"], ["--precision: invalid choice: 'int4'"]),
    ("ok", ["--calibration-method", "entropy"], ["applies to --precision fp16 or int8 only"]),
    ("ok", ["--precision", "fp16", "--int8-mode", "static"], ["--int8-mode applies to --precision int8"]),
    ("ok", ["--precision", "int8", "--calibration-max-length", "1"], ["--calibration-max-length 1"]),
])
def test_bad_calibration_input(setup, argv, words, capsys, ckpts, tmp_path):
    f = tmp_path / "cal.txt"
    contents = {"empty": b"", "whitespace": b"  \n\t\n", "binary": b"\xff\xfe\x00bad", "nothing": b"\x07\x07\n\x01\n",
                "badjson": b'{"text": "a"\n{"text": \n', "badtask": b'{"text": "x", "task": "retrieval.query"}\n',
                "ok": b"text\n"}
    if setup != "missing":
        f.write_bytes(contents[setup])
    out = tmp_path / "out"
    code, err = run(capsys, "export", str(ckpts["v2-small"]), "--out", str(out),
                    "--cache-dir", str(tmp_path / "cache"), *[a.format(f=f) for a in argv])
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("embcc: error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_verify_names_the_layers_that_hurt_when_a_bar_is_missed(reduced, ckpts, monkeypatch):
    monkeypatch.setitem(BARS, "int8", {"min_cosine": 0.99999999})
    report = verify(reduced["v2-int8-static"], ckpts["v2-small"], texts=PROBES[:12], write=False)
    assert not report["passed"]
    table = format_table(report)
    assert "hurts most: " in table and "kept float: " in table


@pytest.mark.parametrize("size, lora, precision", [("small", "merge", "int8"), ("nano", "keep", "int8"),
                                                   ("small", "keep", "fp16"), ("nano", "merge", "fp16")])
def test_v5_reduced_precision_passes_its_bars(size, lora, precision, v5_ckpts, cache_dir, tmp_path):
    """v5 (last-token pooling, RMSNorm, grouped KV heads) through the same calibration path; the probes run
    to 1,024 tokens, twice the calibration cap, so ranges must hold beyond the lengths they were measured on."""
    art = export(v5_ckpts[size], tmp_path / "art", lora=lora, task="retrieval" if lora == "merge" else None,
                 precision=precision, max_length=1024, cache_dir=cache_dir)
    report = verify(art, v5_ckpts[size])
    assert report["passed"], format_table(report)
    assert {r["task"] for r in report["results"]} == (
        {"retrieval"} if lora == "merge" else {"retrieval", "text-matching", "classification", "clustering"})


@pytest.mark.parametrize("size", ["small", "nano"])
def test_v5_int8_dynamic_passes_its_bar(size, v5_ckpts, tmp_path):
    art = export(v5_ckpts[size], tmp_path / "art", task="text-matching", precision="int8", int8_mode="dynamic",
                 max_length=1024)
    report = verify(art, v5_ckpts[size], texts=PROBES[:60], write=False)
    assert report["passed"], format_table(report)
    assert json.loads((art / "text-matching" / "precision.json").read_text())["mode"] == "dynamic"


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_entropy_and_percentile_calibration(method, ckpts, tmp_path):
    """Histogram calibration methods: they run, pass the int8 bar, and give other ranges than minmax (the
    portable QDQ graph's scales differ), while the ONNX Runtime form does not depend on the ranges at all."""
    arts = {m: export(ckpts["v2-small"], tmp_path / m, precision="int8", calibration_method=m, max_length=256,
                      cache_dir=tmp_path / "cache")
            for m in ("minmax", method)}
    report = verify(arts[method], ckpts["v2-small"], texts=PROBES[:60], write=False)
    assert report["passed"], format_table(report)
    assert json.loads((arts[method] / "precision.json").read_text())["method"] == method

    def activation_scales(art: Path) -> dict[str, float]:
        model = onnx.load(str(art / PORTABLE_FILE))
        inits = {i.name: numpy_helper.to_array(i, base_dir=str(art)) for i in model.graph.initializer}
        return {n.input[1]: float(inits[n.input[1]]) for n in model.graph.node
                if n.op_type == "QuantizeLinear" and n.input[1] in inits and inits[n.input[1]].size == 1}

    a, b = activation_scales(arts["minmax"]), activation_scales(arts[method])
    assert a.keys() == b.keys() and any(abs(a[k] - b[k]) > 1e-6 * abs(a[k]) for k in a)
    assert (arts["minmax"] / "model.onnx").read_bytes() == (arts[method] / "model.onnx").read_bytes()


def test_changing_the_calibration_data_changes_only_the_portable_form(ckpts, tmp_path):
    """What `model.onnx` (ONNX Runtime's form) is: dynamic quantization, independent of the calibration data;
    the calibrated ranges live in model.portable.onnx. Two corpora: two portable graphs, one ONNX Runtime graph."""
    f = tmp_path / "cal.txt"
    f.write_text("\n".join(["a short text", "numbers 1 2 3 4 5 6 7 8 9", "ein deutscher Satz"] * 4) + "\n")
    a = export(ckpts["v2-small"], tmp_path / "a", precision="int8", max_length=128, cache_dir=tmp_path / "c")
    b = export(ckpts["v2-small"], tmp_path / "b", precision="int8", max_length=128, calibration=f,
               cache_dir=tmp_path / "c")
    assert (a / PORTABLE_FILE).read_bytes() != (b / PORTABLE_FILE).read_bytes() or \
        (a / WEIGHTS).read_bytes() != (b / WEIGHTS).read_bytes()
    assert (a / "model.onnx").read_bytes() == (b / "model.onnx").read_bytes()
