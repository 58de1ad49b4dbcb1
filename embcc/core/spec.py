"""What a runtime needs to know to turn texts into embeddings, beside the weights.

A ModelSpec is produced by a family from a checkpoint, written into every artifact as `embcc.json`, and read
back by the runtimes, so that prefixing, tokenisation, pooling, Matryoshka truncation and normalisation are
the same for the torch reference and for every exported artifact.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from embcc.core.errors import EmbccError
from embcc.core.manifest import ARTIFACT_FORMAT

SPEC_FILE = "embcc.json"


@dataclass(frozen=True)
class Task:
    name: str
    id: int
    prefix: str = ""  # the prefix when no role is asked for (v5: the default role's)
    # Families whose inputs have roles (v5: query / document) give each task its role -> prefix map;
    # a task without roles (v2, v3) leaves it None.
    roles: dict[str, str] | None = field(default=None, hash=False)

    def prefix_for(self, role: str | None) -> str:
        if role is None:
            return self.prefix
        if not self.roles:
            raise EmbccError(f"task {self.name!r} has no roles, but role {role!r} was given", "leave out --role")
        if role not in self.roles:
            raise EmbccError(f"task {self.name!r} has no {role!r} role",
                             f"choose one of: {', '.join(self.roles)} (or another task)")
        return self.roles[role]


@dataclass
class ModelSpec:
    family: str
    pooling: str  # "mean" | "cls" | "last"
    dim: int
    max_length: int
    position: str  # "rope" | "alibi"
    tasks: list[Task] = field(default_factory=list)
    matryoshka_dims: list[int] = field(default_factory=list)
    rope_theta: float | None = None
    normalize: bool = True
    # Set on artifacts: how the adapters were handled and, for merged graphs, which task this graph is.
    lora: str | None = None  # "merge" | "keep" | None (no adapters)
    task: str | None = None
    precision: str = "fp32"
    role: str | None = None  # the input role texts get by default (v5: "document"); None for families without
    # What part of a multi-part model this artifact is: "text", "vision" (images in), or "combined" (Jina's one
    # graph with both towers); an image part records its preprocessing (preprocessor_config.json's settings).
    part: str = "text"
    task_optional: bool = False  # True: no task means no prefix (jina-clip-v2's encode_text)
    image: dict | None = None
    multi_vector_dim: int | None = None  # per-token vectors beside the single one (jina-embeddings-v4)
    attention: str | None = None  # model.onnx's fused attention (mha | gqa | bias), None: standard ops only
    min_onnxruntime: str | None = None  # the oldest ONNX Runtime that runs model.onnx as intended
    artifact_format: int = ARTIFACT_FORMAT  # files written without the key read as format 1

    def check_role(self, role: str | None, tasks: list[str]) -> None:
        """Refuse a role that a family without roles, or one of `tasks`, does not have."""
        if role is None:
            return
        if not any(t.roles for t in self.tasks):
            raise EmbccError(f"{self.family} inputs have no roles, but role {role!r} was given", "leave out --role")
        for t in [t for t in self.tasks if t.name in tasks] if tasks else self.tasks:
            if not tasks and role not in (t.roles or {}):  # kept adapters: the role is every task's default
                raise EmbccError(f"the graph keeps every task, and task {t.name!r} has no {role!r} role",
                                 "leave out --role (pass role per encode call), or export --lora merge --task NAME")
            t.prefix_for(role)

    def task_by_name(self, name: str | None) -> Task | None:
        """The task to run: `name`, else the artifact's own merged task; None for families without tasks and
        for families whose task is optional (jina-clip-v2: no task, no prefix). An artifact that holds several
        tasks (kept adapters) needs one named."""
        if not self.tasks:
            if name is not None:
                raise EmbccError(f"{self.family} has no tasks, but task {name!r} was given", "leave out task")
            return None
        names = ", ".join(t.name for t in self.tasks)
        if name is None:
            if self.task is not None:
                name = self.task
            elif self.task_optional:
                return None
            elif len(self.tasks) == 1:
                name = self.tasks[0].name
            else:
                raise EmbccError(f"this artifact holds several tasks ({names})", "pass task=NAME")
        for t in self.tasks:
            if t.name == name:
                if self.lora != "keep" and self.task is not None and name != self.task:
                    raise EmbccError(
                        f"this artifact has task {self.task!r} merged in, not {name!r}",
                        f"use the artifact exported for {name!r}",
                    )
                return t
        raise EmbccError(f"unknown task {name!r} for {self.family}", f"choose one of: {names}")

    def check_dim(self, dim: int | None) -> int:
        if dim is None:
            return self.dim
        allowed = self.matryoshka_dims or [self.dim]
        if dim not in allowed and not (min(allowed) <= dim <= self.dim):
            raise EmbccError(
                f"dimension {dim} is outside {self.family}'s Matryoshka range",
                f"choose a value from {min(allowed)} to {self.dim}",
            )
        return dim

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        d = dict(d)
        d["tasks"] = [Task(**t) for t in d.get("tasks", [])]
        d.setdefault("artifact_format", 1)  # written before artifact formats were numbered
        return cls(**d)

    @classmethod
    def read(cls, artifact_dir: Path) -> ModelSpec:
        p = Path(artifact_dir) / SPEC_FILE
        if not p.is_file():
            raise EmbccError(f"{artifact_dir} is not an embcc artifact (no {SPEC_FILE})", "point at a directory written by `embcc export`")
        fix = "the artifact is damaged; export it again"
        try:
            d = json.loads(p.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise EmbccError(f"{p} is not readable JSON ({e})", fix) from e
        if not isinstance(d, dict) or not isinstance(d.get("tasks", []), list):
            raise EmbccError(f"{p} is not an embcc model spec (a JSON object)", fix)
        try:
            spec = cls.from_dict(d)
        except (TypeError, ValueError, AttributeError) as e:  # unknown or missing keys, a task that is no object
            raise EmbccError(f"{p} is not an embcc model spec ({e})", fix) from e
        if not (isinstance(spec.dim, int) and isinstance(spec.max_length, int) and spec.dim > 0 and spec.max_length > 1):
            raise EmbccError(f"{p} has no valid dim / max_length", fix)
        return spec
