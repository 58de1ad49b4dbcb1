"""verify's report people read (embcc.report): parity.md and a self-contained parity.html beside parity.json, a
cosine histogram and a per-length error plot per artifact; a failing row shows FAIL and why; the page renders
in a real headless browser (Debian's Chromium, scripts/install_chromium.sh; skipped without it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from embcc.cli import main
from embcc.fixtures import write_fixture
from embcc.pipeline import export
from embcc.probes import PROBES
from embcc.report import DPI, FIGSIZE, write_report
from embcc.runtimes import open_artifact
from embcc.verify import verify

TEXTS = PROBES[:16]  # short and long texts
MAX_LEN = 128
TASK = "retrieval.query"


@pytest.fixture(scope="module")
def merged(ckpts, tmp_path_factory):
    """A tiny v3 export (one task merged) and its verified report."""
    art = export(ckpts["v3"], tmp_path_factory.mktemp("report") / "m", lora="merge", task=TASK, max_length=MAX_LEN)
    report = verify(art, ckpts["v3"], texts=TEXTS, max_tokens=MAX_LEN)
    return art, report


def _png(path):
    import matplotlib.image

    return matplotlib.image.imread(str(path))


def test_verify_writes_markdown_html_and_plots(merged):
    art, report = merged
    assert report["passed"] and report["written_to"] == str(art / "parity.json")
    files = [art / f for f in ("parity.md", "parity.html")]
    pngs = sorted(art.glob("parity-*.png"))
    assert sorted(report["report_files"]) == sorted(str(p) for p in files + pngs)
    # one histogram and one length plot per graph (model.onnx fused, model.portable.onnx)
    assert len(pngs) == 2 * len({(r["artifact"], r["graph"]) for r in report["results"]}) == 4
    assert {p.name.rsplit("-", 1)[1] for p in pngs} == {"cosines.png", "lengths.png"}
    md = (art / "parity.md").read_text()
    assert md.startswith("# embcc parity: PASSED")
    assert "| artifact | graph | task | tokens | min cos | mean cos |" in md and "| bar | result | ref s | artifact s |" in md
    # each text row says what it cost: the seconds of the reference's and of the artifact's encode calls
    assert all(r["reference_s"] > 0 and r["artifact_s"] > 0 for r in report["results"])
    assert "transformers" in md and "peft" in md  # which reference
    assert "**runtime**: onnxruntime" in md
    assert "**reference is the artifact's source**: yes" in md
    for p in pngs:
        assert f"]({p.name})" in md  # linked beside the page
    for r in report["results"]:
        assert len(r["cosines"]) == len(r["tokens"]) == len(r["abs_diffs"]) == len(TEXTS)
        assert min(r["cosines"]) == pytest.approx(r["min_cosine"]) and max(r["tokens"]) <= MAX_LEN
    assert json.loads((art / "parity.json").read_text())["results"][0]["tokens"] == report["results"][0]["tokens"]


def test_html_is_self_contained(merged):
    art, _ = merged
    page = (art / "parity.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<table>" in page
    assert page.count('src="data:image/png;base64,') == 4
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing fetched from a network
    assert "<script" not in page and "<link" not in page


def test_pngs_are_deterministic_and_carry_no_software_stamp(merged, tmp_path):
    art, report = merged
    for p in art.glob("parity-*.png"):
        image = _png(p)
        assert image.shape[:2] == (int(FIGSIZE[1] * DPI), int(FIGSIZE[0] * DPI))
        assert np.ptp(image[..., :3]) > 0.5  # drawn, not blank
        assert b"Software" not in p.read_bytes() and b"matplotlib" not in p.read_bytes()
    again = write_report(report, tmp_path / "parity.json")  # the same report, written once more elsewhere
    for p in again:
        if p.suffix == ".png":
            assert p.read_bytes() == (art / p.name).read_bytes(), p.name
    assert (tmp_path / "parity.md").read_text() == (art / "parity.md").read_text()


def _drop_prefixes(art):
    """A broken export that still opens: tests/test_mutations.py's dropped prefixes, the manifest resealed."""
    from test_mutations import _dropped_prefix

    _dropped_prefix(art, reseal=True)


def test_a_failing_row_shows_fail_and_why(merged, ckpts, tmp_path):
    art, _ = merged
    broken = tmp_path / "broken"
    shutil.copytree(art, broken, ignore=shutil.ignore_patterns("parity*"))
    _drop_prefixes(broken)
    report = verify(broken, ckpts["v3"], texts=TEXTS, max_tokens=MAX_LEN)
    assert not report["passed"]
    md = (broken / "parity.md").read_text()
    assert md.startswith("# embcc parity: FAILED")
    failing = [line for line in md.splitlines() if line.startswith("| ") and "| FAIL (" in line]
    assert len(failing) == len(report["results"]) == 2
    assert "## Failures" in md
    reasons = [line for line in md.splitlines() if line.startswith("- **FAIL**")]
    assert len(reasons) == 2 and all(re.search(r"min cos 0\.\d+ is not >= 0\.9999", line) for line in reasons)
    page = (broken / "parity.html").read_text()
    assert page.count('<tr class="fail">') == 2 and "is not &gt;= 0.9999" in page


def test_another_checkpoint_keeps_the_sha_naming(merged, tmp_path, capsys):
    """Against a checkpoint other than the source: parity-<sha12>.json/.md/.html, the source's report untouched;
    through the CLI, which exits 1 on a failed bar."""
    art, _ = merged
    own = {p.name: p.read_bytes() for p in art.glob("parity*")}
    other = write_fixture("jina-v3", tmp_path / "other", layout="original", seed=7)
    assert main(["verify", str(art), "--reference", str(other)]) == 1
    (json_file,) = art.glob("parity-????????????.json")
    stem = json_file.stem
    try:
        assert (art / f"{stem}.md").is_file() and (art / f"{stem}.html").is_file()
        assert list(art.glob(f"{stem}-*-cosines.png")) and list(art.glob(f"{stem}-*-lengths.png"))
        md = (art / f"{stem}.md").read_text()
        assert "**reference is the artifact's source**: NO" in md and "FAIL" in md
        assert f"{stem}.html" in capsys.readouterr().out
        for name, data in own.items():
            assert (art / name).read_bytes() == data, name
    finally:  # the module's artifact back as it was for the other tests
        for p in art.glob(f"{stem}*"):
            p.unlink()


def test_encode_takes_any_iterable(merged):
    art, _ = merged
    emb = open_artifact(art / TASK)
    texts = ["a first text", "and a second one", "third"]
    want = emb.encode(texts)
    assert np.array_equal(emb.encode(t for t in texts), want)
    assert np.array_equal(emb.encode(tuple(texts)), want)
    assert np.array_equal(emb.encode(iter(texts)), want)
    assert emb.encode(t for t in []).shape == (0, want.shape[1])
    assert [len(x) for x in emb.token_ids(t for t in texts)] == [len(x) for x in emb.token_ids(texts)]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary on PATH: run scripts/install_chromium.sh "
                    "(apt-get install chromium) to test parity.html in a real headless browser")
def test_parity_html_renders_in_headless_chromium(merged, tmp_path):
    art, _ = merged
    shot = tmp_path / "shot.png"
    width, height = 1100, 1500
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", f"--window-size={width},{height}",
           (art / "parity.html").as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    image = _png(shot)[..., :3]
    assert image.shape[:2] == (height, width)
    pixels = (image * 255).round().astype(np.int32)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50, len(colours)  # text, table and plots, not a uniform page
    white = (pixels == 255).all(-1).mean()
    assert 0.3 < white < 0.99, white
    # the table's pass cells (#d5f5d9) and the histogram's lines (matplotlib's first colour, #1f77b4)
    def near(rgb, tol=12):
        return (np.abs(pixels - np.array(rgb)) <= tol).all(-1).sum()

    assert near((0xD5, 0xF5, 0xD9), 2) > 100
    assert near((0x1F, 0x77, 0xB4)) > 200
