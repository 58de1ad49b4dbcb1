"""Fixtures are written by embcc's own fixture writer and loaded only through the loader users' checkpoints use.

Tests never write to the user's real cache: for the whole session EMBCC_CACHE_DIR and XDG_CACHE_HOME point into
the session's temporary directory (child processes inherit them); tests/test_faults.py proves an fp16/int8
export then leaves ~/.cache untouched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from embcc.fixtures import write_fixture


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """EMBCC_CACHE_DIR (embcc's calibration cache) and XDG_CACHE_HOME (anything else that caches) in tmp."""
    root = tmp_path_factory.mktemp("cache")
    saved = {k: os.environ.get(k) for k in ("EMBCC_CACHE_DIR", "XDG_CACHE_HOME")}
    os.environ["EMBCC_CACHE_DIR"] = str(root / "embcc")
    os.environ["XDG_CACHE_HOME"] = str(root / "xdg")
    try:
        yield root / "embcc"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    out = {
        "v3": write_fixture("jina-v3", root / "v3", layout="original", seed=0),
        "v3-hf": write_fixture("jina-v3", root / "v3-hf", layout="hf", seed=0),
        "v2-small": write_fixture("jina-v2-small", root / "v2-small", seed=0),
        "v2-base": write_fixture("jina-v2-base", root / "v2-base", seed=0),
    }
    return out


@pytest.fixture(scope="session")
def v3_keep(ckpts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from embcc.pipeline import export

    return export(ckpts["v3"], tmp_path_factory.mktemp("art") / "keep", lora="keep", max_length=512)


@pytest.fixture(scope="session")
def v3_merge(ckpts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from embcc.pipeline import export

    return export(ckpts["v3"], tmp_path_factory.mktemp("art") / "merge", lora="merge", max_length=512)


@pytest.fixture(scope="session")
def v5_ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny jina-embeddings-v5 small and nano checkpoints, base layout (PEFT adapters) and pre-merged."""
    root = tmp_path_factory.mktemp("v5")
    out = {}
    for size in ("small", "nano"):
        out[size] = write_fixture(f"jina-v5-{size}", root / size, seed=0)
        out[f"{size}-premerged"] = write_fixture(f"jina-v5-{size}", root / f"{size}-premerged", layout="premerged", seed=0)
    return out


@pytest.fixture(scope="session")
def v5_onnx(v5_ckpts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ONNX exports of the tiny v5 fixtures, adapters kept and merged, capped at 4,096 tokens."""
    from embcc.pipeline import export

    root = tmp_path_factory.mktemp("v5-art")
    return {f"{size}-{mode}": export(v5_ckpts[size], root / f"{size}-{mode}", lora=mode, max_length=4096)
            for size in ("small", "nano") for mode in ("keep", "merge")}
