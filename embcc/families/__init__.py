"""Model families: the only code that knows a model. `load(path)` recognises a checkpoint and loads it."""

from __future__ import annotations

from pathlib import Path

from embcc.errors import EmbccError
from embcc.families.base import Bundle, Family, read_config


def _families() -> list[type[Family]]:
    from embcc.families.jina_v2 import JinaV2
    from embcc.families.jina_v3 import JinaV3
    from embcc.families.jina_v5 import JinaV5

    return [JinaV2, JinaV3, JinaV5]


def family_for(path: Path) -> Family:
    path = Path(path)
    config = read_config(path)
    for cls in _families():
        if cls.detect(config, path):
            return cls()
    kind = config.get("model_type", "no model_type")
    arch = ",".join(config.get("architectures") or []) or "no architectures"
    raise EmbccError(
        f"{path} is not a model embcc knows (model_type {kind!r}, {arch})",
        "embcc compiles jina-embeddings-v2, v3 and v5-text checkpoints in their published layouts",
    )


def load(path: str | Path) -> Bundle:
    """Recognise the family of a checkpoint directory and load it."""
    path = Path(path)
    return family_for(path).load(path)


def fixture_names() -> dict[str, type[Family]]:
    return {name: cls for cls in _families() for name in cls.fixtures}


def write_fixture(name: str, out: str | Path, *, size: str = "tiny", layout: str | None = None, seed: int = 0) -> Path:
    """Write a random-weight checkpoint in the published layout of `name` (staged, then moved into place)."""
    from embcc.export.artifact import staged_dir

    names = fixture_names()
    if name not in names:
        raise EmbccError(f"unknown fixture {name!r}", f"choose one of: {', '.join(sorted(names))}")
    if size not in ("tiny", "tiny256", "full") and not (size == "base" and name == "jina-v3"):
        raise EmbccError(f"unknown fixture size {size!r}", "choose tiny, tiny256 or full")
    family = names[name]()
    if layout is not None and layout not in family.layouts:
        raise EmbccError(f"unknown layout {layout!r} for {name}", f"choose one of: {', '.join(family.layouts)}")
    with staged_dir(Path(out)) as tmp:
        family.write_fixture(name, tmp, size=size, layout=layout, seed=seed)
    return Path(out)


__all__ = ["Bundle", "Family", "family_for", "fixture_names", "load", "write_fixture"]
