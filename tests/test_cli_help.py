"""The CLI as a new user meets it: --help says what embcc does and its exit codes, every option has help, the
choice options list their choices (from the registries, not copies), an option of another format names the
format to add, and the Python API's errors name keywords, never CLI flags."""

from __future__ import annotations

import argparse

import pytest

from embcc.cli import _parser, main
from embcc.core.errors import EmbccError
from embcc.export import FORMATS
from embcc.export.gguf import GGUF_TYPES
from embcc.export.onnx import PRECISIONS
from embcc.export.options import LORA_MODES
from embcc.pipeline import export


def _help(capsys, *argv: str) -> str:
    assert main([*argv, "--help"]) == 0
    return capsys.readouterr().out


def test_top_level_help_says_what_embcc_does_and_its_exit_codes(capsys):
    out = _help(capsys)
    for word in ("ONNX", "GGUF", "TensorRT", "parity"):
        assert word in out, word
    assert "into ONNX artifacts" not in out
    assert "exit codes:" in out
    codes = {line.split()[0] for line in out.split("exit codes:")[1].splitlines() if line.strip()[:1].isdigit()}
    assert {"0", "1", "2"} <= codes
    assert "parity bar failed" in out and "bad input" in out


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


@pytest.mark.parametrize("command", list(_subparsers()))
def test_every_option_has_help(command):
    missing = [a.dest for a in _subparsers()[command]._actions
               if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert not missing, f"embcc {command}: {missing}"


@pytest.mark.parametrize("flag, choices", [("--format", list(FORMATS)), ("--precision", list(PRECISIONS)),
                                           ("--lora", list(LORA_MODES)), ("--type", list(GGUF_TYPES))])
def test_choice_options_list_their_choices(capsys, flag, choices):
    out = _help(capsys, "export")
    assert f"{flag} {{{','.join(choices)}}}" in out, (flag, out)
    action = next(a for a in _subparsers()["export"]._actions if flag in a.option_strings)
    assert list(action.choices) == choices


def test_type_is_taken_in_any_case():
    args = _parser().parse_args(["export", "ckpt", "--out", "x", "--format", "gguf", "--type", "Q8_0"])
    assert args.gguf_type == "q8_0"


def test_type_without_format_gguf_says_add_it(ckpts, tmp_path, capsys):
    out = tmp_path / "a"
    assert main(["export", str(ckpts["v2-small"]), "--out", str(out), "--type", "q8_0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "add --format gguf" in err, err
    assert not out.exists()


@pytest.mark.parametrize("options, keyword", [
    ({"gguf_type": "q8_0"}, "fmt='gguf'"),
    ({"fmt": "gguf", "precision": "fp16"}, "fmt='onnx'"),
    ({"fmt": "onnx", "part": "vision"}, "choose part from"),
    ({"fmt": "onnx", "max_length": 10**9}, "max_length"),
    ({"fmt": "onnx", "lora": "keep"}, "lora"),
])
def test_python_api_errors_name_keywords_not_flags(ckpts, tmp_path, options, keyword):
    with pytest.raises(EmbccError) as e:
        export(ckpts["v2-small"], tmp_path / "a", **options)
    assert keyword in str(e.value) and "--" not in str(e.value), str(e.value)


def test_python_api_existing_out_names_no_flag(ckpts, tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(EmbccError, match="already exists") as e:
        export(ckpts["v2-small"], tmp_path / "a")
    assert "--" not in str(e.value)


def test_exit_codes(tmp_path, capsys):
    assert main(["--help"]) == 0
    assert main(["no-such-command"]) == 2  # a usage error
    assert main(["verify", str(tmp_path / "missing"), "--reference", str(tmp_path / "missing")]) == 2  # bad input
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("embcc: error: ") for line in err), err
    # 1 (a parity bar failed): tests/test_cli.py::test_cli_verify_exits_1_below_the_bar and
    # tests/test_report.py::test_another_checkpoint_keeps_the_sha_naming
