"""The encode loop every reference shares: prompt by task and role, tokenise, batch, forward, pool, L2."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from embcc.core.errors import EmbccError
from embcc.reference.common import Pooling, Tokens, l2, length_batches, pool


class ReferenceBase(ABC):
    """A reference model; subclasses set the attributes below and implement `_states` (and `_prompt`)."""

    family: str = "?"
    tasks: list[str]
    roles: dict[str, list[str]]
    default_role: str | None
    dim: int

    def __init__(self, ckpt: Path, config: dict, pooling: Pooling):
        self.ckpt = ckpt
        self.config = config
        self.pooling = pooling
        self.tokens = Tokens(ckpt, config)
        self._closed = False

    # -- what a family decides ------------------------------------------------------------------------------

    instructions: dict[str, str] = {}  # task -> prompt, from the checkpoint's config (v3, clip-v2's text tower)

    def _prompt(self, task: str | None, role: str | None) -> str:
        """The text put before every input for `task` and `role` (validated by `_check`): the task's
        instruction where the checkpoint's config has one, else nothing."""
        return "" if task is None else self.instructions.get(task, "")

    @abstractmethod
    def _states(self, input_ids: torch.Tensor, mask: torch.Tensor, task: str | None) -> torch.Tensor:
        """Token states [B, L, H] of one right-padded batch with `task`'s adapter active."""

    @abstractmethod
    def describe(self) -> dict: ...

    @abstractmethod
    def _release(self) -> None:
        """Drop models and remove scratch files."""

    # -- shared --------------------------------------------------------------------------------------------

    def _check(self, task: str | None, role: str | None) -> str | None:
        """Validate task and role; returns the role in effect (None for families without roles)."""
        if not self.tasks:
            if task is not None:
                raise EmbccError(f"{self.family} has no tasks, but task {task!r} was given", "leave out task")
        elif task is not None and task not in self.tasks:
            raise EmbccError(f"{self.family} has no task {task!r}", f"choose one of: {', '.join(self.tasks)}")
        if not self.roles:
            if role is not None:
                raise EmbccError(f"{self.family} inputs have no roles, but role {role!r} was given", "leave out role")
            return None
        if task is None:
            return None
        accepted = self.roles[task]
        if role is None:
            return self.default_role if self.default_role in accepted else accepted[0]
        if role not in accepted:
            raise EmbccError(f"task {task!r} has no {role!r} role", f"choose one of: {', '.join(accepted)}")
        return role

    def encode(self, texts: Sequence[str], *, task: str | None = None, role: str | None = None,
               max_length: int = 8192, batch_size: int = 8) -> np.ndarray:
        """float32 [N, dim] L2-normalised sentence embeddings of `texts` for `task` (and `role`)."""
        if self._closed:
            raise EmbccError("this reference was closed", "build a new one with reference_for()")
        if isinstance(texts, str):
            raise EmbccError("encode() takes a list of texts, not one string", "wrap the text in a list")
        role = self._check(task, role)
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        prompt = self._prompt(task, role)
        ids = self.tokens.ids([prompt + t for t in texts], max_length)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for rows, input_ids, mask in length_batches(ids, batch_size, self.tokens.pad_id):
                states = self._states(input_ids, mask, task)
                out[rows] = l2(pool(states, mask, self.pooling.mode))
        return out

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self) -> ReferenceBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
