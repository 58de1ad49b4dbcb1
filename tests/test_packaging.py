"""What `pip install` ships: a wheel built from this tree carries the probe texts and the calibration corpus as
package data, and the installed package reads them from there (not from a source checkout)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path


def test_wheel_ships_probes_and_corpus(tmp_path):
    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"  # a clean copy: setuptools would otherwise reuse (and ship) a stale build/ directory
    shutil.copytree(root / "embcc", src / "embcc", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("embcc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"embcc/data/probes.json", "embcc/data/calibration_corpus.json"} <= names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import embcc, embcc.probes, embcc.calibration.corpus as c; "
            f"assert embcc.__file__.startswith({str(site)!r}), embcc.__file__; "
            "print(len(embcc.probes.PROBES), len(c.CORPUS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    probes, corpus = map(int, out.stdout.split())
    assert probes >= 100 and corpus >= 300
