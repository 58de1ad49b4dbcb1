"""Bad input: one line naming the problem and the fix, exit code 2, nothing left at the output location."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from embcc.cli import main


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("embcc: error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])


def copy(src, dst):
    shutil.copytree(src, dst)
    return dst


@pytest.fixture()
def out(tmp_path):
    return tmp_path / "out"


def nothing_left(out) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_unknown_family(capsys, tmp_path, out):
    d = tmp_path / "gpt"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2Model"]}))
    assert_one_line_error(*run(capsys, "export", str(d), "--out", str(out)), "not a model embcc knows", "gpt2")
    nothing_left(out)


def test_missing_config(capsys, tmp_path, out):
    assert_one_line_error(*run(capsys, "export", str(tmp_path), "--out", str(out)), "no config.json")
    nothing_left(out)


def _edit_weights(ckpts, tmp_path, edit):
    d = copy(ckpts["v3"], tmp_path / "ck")
    w = load_file(str(d / "model.safetensors"))
    edit(w)
    save_file(w, str(d / "model.safetensors"))
    return d


def test_missing_tensor(capsys, ckpts, tmp_path, out):
    d = _edit_weights(ckpts, tmp_path, lambda w: w.pop("roberta.encoder.layers.1.mlp.fc2.bias"))
    assert_one_line_error(*run(capsys, "export", str(d), "--out", str(out)), "missing tensor", "layers.1.mlp.fc2.bias")
    nothing_left(out)


def test_unexpected_tensor(capsys, ckpts, tmp_path, out):
    d = _edit_weights(ckpts, tmp_path, lambda w: w.__setitem__("roberta.encoder.extra.weight", torch.zeros(2)))
    assert_one_line_error(*run(capsys, "export", str(d), "--out", str(out)), "unexpected tensor")
    nothing_left(out)


def test_shape_mismatch(capsys, ckpts, tmp_path, out):
    def edit(w):
        w["roberta.emb_ln.weight"] = torch.ones(65, dtype=torch.bfloat16)

    d = _edit_weights(ckpts, tmp_path, edit)
    assert_one_line_error(*run(capsys, "export", str(d), "--out", str(out)), "shape", "embeddings.LayerNorm.weight")
    nothing_left(out)


def test_adapter_task_count_mismatch(capsys, ckpts, tmp_path, out):
    d = copy(ckpts["v3"], tmp_path / "ck")
    cfg = json.loads((d / "config.json").read_text())
    cfg["lora_adaptations"] = cfg["lora_adaptations"][:4]
    (d / "config.json").write_text(json.dumps(cfg))
    assert_one_line_error(*run(capsys, "export", str(d), "--out", str(out)), "lora_adaptations")
    nothing_left(out)


def test_non_safetensors_weights(capsys, ckpts, tmp_path, out):
    d = copy(ckpts["v2-small"], tmp_path / "ck")
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"not unpickled")
    assert_one_line_error(*run(capsys, "export", str(d), "--out", str(out)), "not a safetensors file", "never unpickles")
    nothing_left(out)


def test_corrupt_safetensors(capsys, ckpts, tmp_path, out):
    d = copy(ckpts["v2-small"], tmp_path / "ck")
    (d / "model.safetensors").write_bytes(b"\x00" * 64)
    assert_one_line_error(*run(capsys, "export", str(d), "--out", str(out)), "not a readable safetensors file")
    nothing_left(out)


def test_unknown_task(capsys, ckpts, out):
    assert_one_line_error(*run(capsys, "export", str(ckpts["v3"]), "--out", str(out), "--task", "summarize"),
                          "unknown task 'summarize'", "retrieval.query")
    nothing_left(out)


@pytest.mark.parametrize("option", [["--task", "retrieval.query"], ["--lora", "keep"], ["--rope-theta", "10000"]])
def test_options_that_do_not_apply_to_v2(capsys, ckpts, out, option):
    assert_one_line_error(*run(capsys, "export", str(ckpts["v2-small"]), "--out", str(out), *option), "does not apply")
    nothing_left(out)


def test_task_with_keep(capsys, ckpts, out):
    assert_one_line_error(*run(capsys, "export", str(ckpts["v3"]), "--out", str(out), "--lora", "keep", "--task",
                               "separation"), "does not apply")
    nothing_left(out)


@pytest.mark.parametrize("option,words", [(["--lora", "fold"], "invalid choice: 'fold'"),
                                          (["--format", "tflite"], "invalid choice: 'tflite'"),
                                          (["--precision", "int4"], "invalid choice: 'int4'"), (["--rope-theta", "-5"], "positive"),
                                          (["--max-length", "100000"], "max-length")])
def test_bad_option_values(capsys, ckpts, out, option, words):
    assert_one_line_error(*run(capsys, "export", str(ckpts["v3"]), "--out", str(out), "--task", "separation", *option),
                          words)
    nothing_left(out)


def test_existing_output_is_refused_and_kept(capsys, ckpts, tmp_path):
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_one_line_error(*run(capsys, "export", str(ckpts["v2-small"]), "--out", str(out)), "already exists")
    assert (out / "keep.txt").read_text() == "mine"


def test_failure_during_export_leaves_nothing(ckpts, out, monkeypatch):
    import embcc.export.onnx as onnx_writer

    def boom(*a, **k):
        raise RuntimeError("simulated crash while writing")

    monkeypatch.setattr(onnx_writer, "trace", boom)
    from embcc.pipeline import export

    with pytest.raises(RuntimeError):
        export(ckpts["v2-small"], out)
    nothing_left(out)


def test_unknown_fixture_and_layout(capsys, out):
    assert_one_line_error(*run(capsys, "fixture", "jina-v9", str(out)), "unknown fixture")
    assert_one_line_error(*run(capsys, "fixture", "jina-v3", str(out), "--layout", "gguf"), "unknown layout")
    nothing_left(out)


def test_verify_on_a_non_artifact(capsys, ckpts, tmp_path):
    assert_one_line_error(*run(capsys, "verify", str(tmp_path), "--reference", str(ckpts["v3"])), "no embcc artifact")


def test_argparse_errors_are_one_line_exit_2():
    r = subprocess.run([sys.executable, "-m", "embcc.cli", "export"], capture_output=True, text=True)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "required" in r.stderr
