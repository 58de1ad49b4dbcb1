"""Model families: the only code that knows a model. `load(path)` recognises a checkpoint and loads it."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub.errors import StrictDataclassError  # transformers' config classes validate with it

from embcc.core.bundle import Bundle
from embcc.core.errors import EmbccError
from embcc.families.base import Family, check_tokenizer, read_config


def _families() -> list[type[Family]]:
    from embcc.families.jina_clip_v2 import JinaClipV2
    from embcc.families.jina_v2 import JinaV2
    from embcc.families.jina_v3 import JinaV3
    from embcc.families.jina_v4 import JinaV4
    from embcc.families.jina_v5 import JinaV5

    return [JinaV2, JinaV3, JinaV5, JinaClipV2, JinaV4]


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
        "embcc compiles jina-embeddings-v2, v3, v4, v5-text and jina-clip-v2 checkpoints in their published layouts",
    )


def load(path: str | Path) -> Bundle:
    """Recognise the family of a checkpoint directory and load it."""
    path = Path(path)
    family = family_for(path)
    try:
        bundle = family.load(path)
    except EmbccError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError, StrictDataclassError) as e:
        # A config value check_config_values does not know about, tripping a config class or the loader: still
        # one line naming the file (the exception's own text says which value).
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise EmbccError(f"{path}/config.json does not describe a loadable {family.name} model "
                         f"({type(e).__name__}: {first[:200]})", "repair or re-download config.json") from e
    # Every family: a tokenizer.json that parses, with ids inside the embedding table (config.json's vocab_size,
    # which the loaders held the table's rows to); found here rather than when a runtime first tokenises.
    check_tokenizer(path, bundle.config.get("vocab_size"))
    return bundle


__all__ = ["Bundle", "Family", "family_for", "load"]
