"""The calibration cache: tests never touch the user's real one, and cache files and artifacts get the
permissions of the user's umask (as a plain open()/mkdir() would), whichever library wrote them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from embcc.calibration.cache import default_dir


def test_the_session_cache_is_private(private_cache, tmp_path_factory):
    assert default_dir() == private_cache
    assert Path.home() not in default_dir().parents
    assert os.environ["XDG_CACHE_HOME"].startswith(str(tmp_path_factory.getbasetemp()))


def test_fp16_and_int8_exports_leave_home_untouched(ckpts, tmp_path, private_cache):
    """With the session's environment (EMBCC_CACHE_DIR, XDG_CACHE_HOME in tmp) and HOME pointing at an empty
    directory, an fp16 and an int8 export (default cache, no --cache-dir) write nothing under HOME: the real
    ~/.cache/embcc is unreachable to them. The entries land in the session's cache instead."""
    home = tmp_path / "home"
    home.mkdir()
    before = set(private_cache.rglob("*.json")) if private_cache.exists() else set()
    code = ("import sys; from embcc.pipeline import export; c = sys.argv[1]; o = sys.argv[2]\n"
            "export(c, o + '/fp16', precision='fp16', max_length=64, calibration_max_length=32)\n"
            "export(c, o + '/int8', precision='int8', max_length=64, calibration_max_length=32)\n")
    env = {**os.environ, "HOME": str(home)}
    r = subprocess.run([sys.executable, "-c", code, str(ckpts["v2-small"]), str(tmp_path / "out")], env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    assert sorted(home.rglob("*")) == [], sorted(home.rglob("*"))
    new = set(private_cache.rglob("*.json")) - before
    kinds = {p.name.split("-")[0] for p in new}
    assert {"fp16", "int8"} <= kinds, new


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_artifacts_and_cache_files_get_the_umask(ckpts, tmp_path, mask):
    """int8 (ONNX's C++ writer opens model.int8.data 0600; ONNX Runtime writes its calibration cache with
    mkstemp, 0600) and fp16 (embcc's own cache writer), with a umask other than the usual 022."""
    from embcc.pipeline import export

    cache = tmp_path / "cache"
    old = os.umask(mask)
    try:
        arts = [export(ckpts["v3"], tmp_path / p, precision=p, task="separation", max_length=64,
                       calibration_max_length=32, cache_dir=cache) for p in ("int8", "fp16")]
    finally:
        os.umask(old)
    for art in arts:
        for name, mode in _modes(art).items():
            want = 0o777 & ~mask if (art / name).is_dir() else 0o666 & ~mask
            assert mode == want, (art.name, name, oct(mode), oct(want))
    entries = [p for p in (cache / "calibration").iterdir()]
    assert {p.name.split("-")[0] for p in entries} == {"int8", "fp16"}, entries
    for p in entries:
        json.loads(p.read_text())
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask, (p.name, oct(p.stat().st_mode))
    assert stat.S_IMODE((cache / "calibration").stat().st_mode) == 0o777 & ~mask


def test_a_damaged_cache_entry_is_measured_again(ckpts, tmp_path):
    """Entries are renamed into place whole, so only outside damage can truncate one: it is not trusted."""
    from embcc.pipeline import export

    cache = tmp_path / "cache"
    kw = dict(precision="int8", max_length=64, calibration_max_length=32, cache_dir=cache)
    first = export(ckpts["v2-small"], tmp_path / "a", **kw)
    for p in (cache / "calibration").iterdir():
        p.write_text(p.read_text()[:20])
    second = export(ckpts["v2-small"], tmp_path / "b", **kw)
    assert json.loads((first / "manifest.json").read_text()) == json.loads((second / "manifest.json").read_text())
    for p in (cache / "calibration").iterdir():
        json.loads(p.read_text())
