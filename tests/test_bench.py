"""`embcc bench` on tiny fixtures: structure only (rows, ratios, task names, errors), never wall-clock values."""

from __future__ import annotations

import json
import math

import onnxruntime as ort
import pytest

from embcc.bench import bench, format_bench, shapes_for
from embcc.cli import main


def _finite_positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def plain_work(tmp_path_factory):
    """Plain graphs (one per task) shared by this module's bench calls: the same reference and tasks each time."""
    return tmp_path_factory.mktemp("plain")


def test_merged_root_benches_every_task_against_torch_and_plain(ckpts, v3_merge, plain_work):
    r = bench(v3_merge, ckpts["v3"], threads=1, seconds=0.01, regimes="short", memory=True, work=plain_work)
    tasks = {d.name for d in v3_merge.iterdir() if (d / "embcc.json").is_file() or (d / "model.onnx").is_file()}
    assert len(tasks) > 1
    assert {row["name"] for row in r["rows"]} == tasks  # every task dir has rows, named
    assert {row["task"] for row in r["rows"]} == tasks
    for row in r["rows"]:
        assert row["regime"] == "short" and row["shape"] in ("1x16", "32x128")
        for side in ("artifact", "torch", "plain"):
            assert "error" not in row[side], row[side]
            assert _finite_positive(row[side]["texts_per_s"]) and row[side]["runs"] >= 5
        assert _finite_positive(row["vs_torch"]) and _finite_positive(row["vs_plain"])
        assert "torch.onnx.export(dynamo=True)" in row["plain_kind"]
    sides = r["memory"]["sides"]
    assert set(sides) == {"artifact", "torch", "plain"}
    assert all(_finite_positive(v["peak_rss_mb"]) for v in sides.values()), sides
    text = format_bench(r)
    assert all(t in text for t in tasks) and "vs torch" in text and "vs plain" in text


def test_kept_adapters_bench_every_task(ckpts, v3_keep, plain_work):
    r = bench(v3_keep, ckpts["v3"], threads=1, seconds=0.01, memory=False, work=plain_work)
    tasks = {row["task"] for row in r["rows"]}
    assert len(tasks) == 5 and {row["name"] for row in r["rows"]} == {"."}
    assert all(_finite_positive(row["vs_torch"]) and _finite_positive(row["vs_plain"]) for row in r["rows"])


def test_int8_artifact_is_compared_with_quantize_dynamic(ckpts, tmp_path, plain_work):
    from embcc.pipeline import export

    art = export(ckpts["v3"], tmp_path / "int8", lora="merge", task="retrieval.passage", precision="int8",
                 int8_mode="dynamic", max_length=128)
    r = bench(art, ckpts["v3"], threads=1, seconds=0.01, memory=False, work=plain_work)
    assert r["rows"] and all(row["precision"] == "int8" for row in r["rows"])
    for row in r["rows"]:
        assert "quantize_dynamic" in row["plain_kind"] and _finite_positive(row["vs_plain"]), row
    assert (plain_work / "retrieval.passage" / "model.int8.onnx").is_file()


def test_plain_export_failure_is_a_row_not_a_crash(ckpts, tmp_path):
    """JinaBERT's reference chunks queries in a Python loop: torch.export fixes the sequence length, so the
    plain graph runs only the example's shape; bench says so in the plain column and still times the rest."""
    from embcc.pipeline import export

    art = export(ckpts["v2-small"], tmp_path / "v2", max_length=128)
    assert main(["bench", str(art), "--reference", str(ckpts["v2-small"]), "--seconds", "0.01", "--threads", "1",
                 "--no-memory", "--json", str(tmp_path / "b.json")]) == 0
    r = json.loads((tmp_path / "b.json").read_text())
    assert r["rows"] and "memory" not in r
    for row in r["rows"]:
        assert row["plain"]["error"].startswith("plain export failed: ")
        assert row["vs_plain"] is None and _finite_positive(row["vs_torch"])


def test_long_regime_is_capped_at_max_length():
    assert shapes_for("long", 512) == [("1x512", [512], True), ("4x512", [512] * 4, True)]
    assert [s[0] for s in shapes_for("long", 8192)] == ["1x8192", "4x512..8192"]
    assert [s[0] for s in shapes_for("short", 8192)] == ["1x16", "32x128"]


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="this onnxruntime has CUDA")
@pytest.mark.parametrize("command", ["bench", "verify"])
def test_device_cuda_without_cuda_is_one_line_exit_2(ckpts, v3_merge, capsys, command):
    capsys.readouterr()
    assert main([command, str(v3_merge), "--reference", str(ckpts["v3"]), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CUDAExecutionProvider" in err, err


def test_unknown_regime_is_refused(ckpts, v3_merge, capsys):
    assert main(["bench", str(v3_merge), "--reference", str(ckpts["v3"]), "--regimes", "short,huge"]) == 2
    assert "unknown regime huge" in capsys.readouterr().err


def test_gguf_artifact_has_torch_ratio_and_plain_not_applicable(ckpts, tmp_path):
    pytest.importorskip("llama_cpp")
    from embcc.pipeline import export

    art = export(ckpts["v2-small"], tmp_path / "gguf", fmt="gguf", max_length=128)
    r = bench(art, ckpts["v2-small"], threads=1, seconds=0.01, memory=False)
    assert r["rows"] and all(row["runtime"] == "llama.cpp" for row in r["rows"])
    for row in r["rows"]:
        assert _finite_positive(row["vs_torch"]) and row["vs_plain"] is None
        assert row["plain"]["error"].startswith("n/a") and row["plain_kind"] is None


def test_verify_device_cpu_runs_on_cpu(ckpts, tmp_path):
    from embcc.pipeline import export
    from embcc.verify import verify

    art = export(ckpts["v2-small"], tmp_path / "v2", max_length=64)
    report = verify(art, ckpts["v2-small"], device="cpu", write=False)
    assert report["passed"] and report["runtimes"] == ["onnxruntime"]


def test_image_part_benches_images_against_the_reference_tower(tmp_path):
    """jina-clip-v2's vision part: images/s of the artifact and of the reference's image tower, same probe images."""
    from embcc.fixtures import write_fixture
    from embcc.pipeline import export

    ck = write_fixture("jina-clip-v2", tmp_path / "clip", seed=0)
    out = export(ck, tmp_path / "vision", part="vision")
    r = bench(out, ck, threads=1, seconds=0.01, memory=False)
    assert [row["shape"] for row in r["rows"]] == ["1 image", "8 images"]
    for row in r["rows"]:
        assert row["regime"] == "images" and "error" in row["plain"]
        assert _finite_positive(row["artifact"]["images_per_s"]) and _finite_positive(row["torch"]["images_per_s"])
        assert _finite_positive(row["vs_torch"])
    assert "8 images" in format_bench(r)
