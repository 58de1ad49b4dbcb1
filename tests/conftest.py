"""Fixtures are written by embcc's own fixture writer and loaded only through the loader users' checkpoints use."""

from __future__ import annotations

from pathlib import Path

import pytest

from embcc.families import write_fixture


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
