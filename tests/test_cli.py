"""The CLI end to end on tiny fixtures: fixture -> export -> verify (exit codes), and bench's report."""

from __future__ import annotations

import json

from embcc.cli import main


def test_cli_export_verify_bench(tmp_path, capsys):
    ck = tmp_path / "v2"
    assert main(["fixture", "jina-v2-small", str(ck), "--seed", "3"]) == 0
    art = tmp_path / "art"
    assert main(["export", str(ck), "--out", str(art), "--max-length", "256"]) == 0
    assert main(["verify", str(art), "--reference", str(ck)]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and json.loads((art / "parity.json").read_text())["passed"]
    assert main(["bench", str(art), "--reference", str(ck), "--seconds", "0.05", "--no-memory",
                 "--json", str(tmp_path / "b.json")]) == 0
    result = json.loads((tmp_path / "b.json").read_text())  # rows: tests/test_bench.py
    assert {r["shape"] for r in result["rows"]} == {"1x16", "32x128"}
    for r in result["rows"]:
        assert r["vs_torch"] > 0 and r["artifact"]["tokens_per_s"] > 0 and r["torch"]["tokens_per_s"] > 0


def test_cli_verify_exits_1_below_the_bar(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["fixture", "jina-v2-small", str(a), "--seed", "1"]) == 0
    assert main(["fixture", "jina-v2-small", str(b), "--seed", "2"]) == 0
    art = tmp_path / "art"
    assert main(["export", str(a), "--out", str(art), "--max-length", "128"]) == 0
    assert main(["verify", str(art), "--reference", str(a)]) == 0
    own = (art / "parity.json").read_text()
    capsys.readouterr()
    assert main(["verify", str(art), "--reference", str(b)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "not the one this artifact was exported from" in out
    (other,) = art.glob("parity-*.json")  # named by the other checkpoint's hash; the source's report is kept
    report = json.loads(other.read_text())
    assert not report["passed"] and not report["reference_is_source"] and (art / "model.onnx").is_file()
    assert (art / "parity.json").read_text() == own
    assert report["reference"] == str(b.resolve())  # absolute, whatever was typed
