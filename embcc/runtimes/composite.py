"""One Embedder over an export root that holds several artifact directories: one per merged task (merge mode),
one per part of a multi-part model (jina-clip-v2's text/, vision/, combined/), or both.

`encode(texts, task=...)` runs the text artifact of that task (a root with several tasks needs `task`; the
error lists them); `encode_images(...)` runs the image tower. Children are opened on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from embcc.core.errors import EmbccError
from embcc.core.spec import ModelSpec


class CompositeEmbedder:
    def __init__(self, root: Path, children: list[Path], opener: Callable[..., object], **options):
        """`opener`: how one child directory opens (embcc.runtimes.open_artifact, passed in to keep the
        package free of an import circle)."""
        self.root = Path(root)
        self.opener = opener
        self.options = options
        self.children = {child: ModelSpec.read(child) for child in children}
        self._open: dict[Path, object] = {}
        first = next(iter(self.children.values()))
        self.family = first.family
        self.runtime = "composite"

    @property
    def tasks(self) -> list[str]:
        return sorted({s.task for s in self.children.values() if s.task is not None})

    def _child(self, path: Path):
        if path not in self._open:
            self._open[path] = self.opener(path, **self.options)
        return self._open[path]

    def _pick(self, parts: tuple[str, ...], task: str | None) -> Path:
        candidates = [(p, s) for p, s in self.children.items() if s.part in parts]
        if not candidates:
            what = "images" if "vision" in parts else "texts"
            raise EmbccError(f"{self.root} holds no artifact that embeds {what}", "export that part of the model")
        tasks = sorted({s.task for _, s in candidates if s.task is not None})
        if tasks:
            if task is None and len(tasks) > 1:
                raise EmbccError(f"{self.root} holds one artifact per task ({', '.join(tasks)})", "pass task=NAME")
            task = task or tasks[0]
            candidates = [(p, s) for p, s in candidates if s.task == task]
            if not candidates:
                raise EmbccError(f"{self.root} has no artifact for task {task!r}", f"choose one of: {', '.join(tasks)}")
        candidates.sort(key=lambda c: parts.index(c[1].part))
        return candidates[0][0]

    @property
    def spec(self) -> ModelSpec:
        return self.children[self._pick(("text", "combined", "vision"), None if len(self.tasks) != 1 else self.tasks[0])]

    def encode(self, texts: Iterable[str], task: str | None = None, **kw) -> np.ndarray:
        return self._child(self._pick(("text", "combined"), task)).encode(texts, task=task, **kw)

    def encode_images(self, images: Iterable, task: str | None = None, **kw) -> np.ndarray:
        child = self._child(self._pick(("vision", "combined"), task))
        return child.encode_images(images, **({"task": task} if task is not None else {}), **kw)

    def close(self) -> None:
        for child in self._open.values():
            if hasattr(child, "close"):
                child.close()
        self._open = {}
