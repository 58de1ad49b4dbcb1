"""`embcc build RECIPE.toml` (embcc/recipe.py): a 2-artifact matrix on the tiny v3 fixture (ONNX fp32 and GGUF f32,
one task merged), its summary files, resuming, failures, recipe mistakes and the Ray fan-out."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from embcc.cli import main
from embcc.core import progress
from embcc.recipe import SUMMARY_JSON, SUMMARY_JUNIT, parse, parse_memory

RECIPE = """
out = "out"

[checkpoints.v3]
fixture = "jina-v3"

[defaults]
max_length = 128

[[build]]
checkpoints = ["v3"]
formats = ["onnx", "gguf"]
precisions = ["fp32"]
gguf_types = ["f32"]
lora = "merge"
tasks = ["retrieval.query"]
{extra}
"""
NAMES = ["v3/onnx-fp32-merge-retrieval.query", "v3/gguf-f32-merge-retrieval.query"]


def _recipe(root: Path, name: str = "recipe.toml", extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_text(RECIPE.format(extra=extra))
    return path


def _summary(out: Path) -> tuple[dict, ET.Element]:
    summary = json.loads((out / SUMMARY_JSON).read_text())
    suite = ET.parse(out / SUMMARY_JUNIT).getroot().find("testsuite")
    assert suite is not None
    return summary, suite


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    recipe = _recipe(tmp_path_factory.mktemp("recipe"))
    assert main(["build", str(recipe)]) == 0
    return recipe


def test_first_run_builds_and_summarises(built: Path) -> None:
    out = built.parent / "out"
    summary, suite = _summary(out)
    assert summary["passed"] and summary["runner"] == "local"
    rows = {r["artifact"]: r for r in summary["artifacts"]}
    assert sorted(rows) == sorted(NAMES)
    for name in NAMES:
        r = rows[name]
        assert (r["status"], r["action"]) == ("PASS", "built")
        assert r["min_cosine"] >= 0.9999 and "min_cosine>=0.9999" in r["bar"]
        assert (out / name / "manifest.json").is_file() and (out / name / "parity.json").is_file()
    assert (rows[NAMES[0]]["format"], rows[NAMES[1]]["precision"]) == ("onnx", "f32")
    assert suite.get("tests") == "2" and suite.get("failures") == "0" and suite.get("errors") == "0"
    cases = suite.findall("testcase")
    assert sorted(c.get("name") for c in cases) == sorted(NAMES)
    assert all(c.find("failure") is None and c.find("error") is None for c in cases)


def test_second_run_is_up_to_date(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = built.parent / "out"
    mtime = (out / NAMES[0] / "manifest.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["build", str(built)]) == 0
    printed = capsys.readouterr().out
    summary, _ = _summary(out)
    assert [r["action"] for r in summary["artifacts"]] == ["up to date", "up to date"]
    assert printed.count("up to date") >= 2 and "PASS" in printed
    assert (out / NAMES[0] / "manifest.json").stat().st_mtime_ns == mtime  # not rebuilt


def test_a_changed_file_is_rebuilt(built: Path) -> None:
    out = built.parent / "out"
    readme = out / NAMES[1] / "retrieval.query" / "README.md"
    readme.write_text(readme.read_text() + "tampered\n")
    half = out / "v3" / f".{Path(NAMES[1]).name}.dead.tmp"  # what a killed export leaves: redone, then removed
    (half / "retrieval.query").mkdir(parents=True)
    assert main(["build", str(built)]) == 0
    summary, _ = _summary(out)
    rows = {r["artifact"]: r for r in summary["artifacts"]}
    assert rows[NAMES[0]]["action"] == "up to date"
    assert rows[NAMES[1]]["action"].startswith("rebuilt (") and "sha256" in rows[NAMES[1]]["action"]
    assert rows[NAMES[1]]["status"] == "PASS"
    assert "tampered" not in readme.read_text() and not half.exists()


def test_a_missed_bar_fails_with_exit_1(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the same artifacts (up to date, not rebuilt) held to a bar no artifact can meet: FAIL, exit 1, a JUnit failure
    strict = _recipe(built.parent, "strict.toml", "min_cosine = 1.5")
    capsys.readouterr()
    assert main(["build", str(strict)]) == 1
    printed = capsys.readouterr().out
    summary, suite = _summary(built.parent / "out")
    assert not summary["passed"] and summary["counts"]["FAIL"] == 2
    assert all(r["action"] == "up to date" and "min_cosine 1.5" in r["reason"] for r in summary["artifacts"])
    assert suite.get("failures") == "2"
    failures = [c.find("failure") for c in suite.findall("testcase")]
    assert all(f is not None and "min_cosine 1.5" in f.get("message", "") for f in failures)
    assert "FAIL" in printed


@pytest.mark.parametrize("extra, words", [
    ("precison = 'fp32'", ["unknown key 'precison'", "precisions"]),
    ("formats = ['onnx', 'onxx']", ["unknown format 'onxx'", "onnx"]),
    ("precisions = ['fp64']", ["'fp64'", "fp32"]),
    ("gguf_types = ['q9_9']", ["'q9_9'", "q8_0"]),
    ("memory = 'lots'", ["memory", "2GiB"]),
    ("tasks = ['no-such-task']", ["unknown task 'no-such-task'", "retrieval.query"]),  # found after the fixture
])
def test_a_bad_recipe_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str,
                                             words: list[str]) -> None:
    text = RECIPE.format(extra="")
    key = extra.split(" = ")[0]
    lines = [ln for ln in text.splitlines() if not ln.startswith(key + " ")] + [extra]
    recipe = tmp_path / "bad.toml"
    recipe.write_text("\n".join(lines) + "\n")
    assert main(["build", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("embcc: error: bad.toml")
    assert all(w in err for w in words), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]  # nothing left on disk


def test_a_missing_checkpoint_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(extra="").replace('fixture = "jina-v3"', 'path = "models/v3"'))
    assert main(["build", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "[checkpoints.v3]" in err and "models/v3" in err and "path" in err
    assert main(["build", str(tmp_path / "absent.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.toml"]


def test_the_example_recipe_parses() -> None:
    recipe = parse(Path(__file__).resolve().parents[1] / "examples" / "recipe.toml")
    assert len(recipe.jobs) >= 3 and {j.fmt for j in recipe.jobs} == {"onnx", "gguf"}
    assert all(c.fixture for c in recipe.checkpoints.values())


def test_memory_sizes() -> None:
    assert parse_memory("2GiB") == 2 << 30 and parse_memory("512MB") == 512 * 10**6 and parse_memory(1000) == 1000
    with pytest.raises(Exception, match="not a size"):
        parse_memory("-1G")


def test_progress_lines(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        progress.configure(True)
        progress.step("verifying x", 2, 5)
        progress.configure(False)
        progress.step("hidden")
    finally:
        progress.configure(None)
    assert capsys.readouterr().err == "embcc: verifying x (2/5)\n"
    progress.step("not a terminal")  # pytest's captured stderr is not a tty
    assert capsys.readouterr().err == ""


def test_ray_fan_out(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is optional (pip install 'embcc[ray]'); scripts/install_ray.sh")
    recipe = tmp_path / "ray.toml"
    recipe.write_text(RECIPE.format(extra='num_cpus = 1\nmemory = "256MiB"').replace('"onnx", "gguf"', '"gguf"')
                      .replace('precisions = ["fp32"]\n', ""))
    recipe.write_text(recipe.read_text() + '\n[[build]]\ncheckpoints = ["v3"]\nformats = ["gguf"]\n'
                      'lora = "keep"\nmemory = "500TiB"\n')  # more than any node has: ERROR, not a hang
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", object_store_memory=80 << 20,
             log_to_driver=False, configure_logging=False)
    try:
        assert main(["build", str(recipe), "--ray"]) == 1
    finally:
        ray.shutdown()
    summary, suite = _summary(tmp_path / "out")
    assert summary["runner"] == "ray" and not summary["passed"]
    rows = [(r["artifact"], r["status"], r["action"]) for r in summary["artifacts"]]
    assert rows == [(NAMES[1], "PASS", "built"), ("v3/gguf-f32-keep", "ERROR", "")]
    assert "cannot run it" in summary["artifacts"][1]["reason"]
    assert suite.get("tests") == "2" and suite.get("errors") == "1"
