"""The one small interface every format implements; the pipeline names no format.

A format declares its own options (beyond the common task / lora / rope_theta / max_length / role), checks
their values once (`check`), writes one artifact directory from an adapted model (`write`), and says what to
record in manifest.json (`recorded`). Which runtime opens its artifacts is recorded in embcc.json
(`ModelSpec.format`), so the runtimes never import a format.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from embcc.core.adapted import Adapted
from embcc.core.bundle import Bundle
from embcc.core.spec import ModelSpec


@dataclass(frozen=True)
class Option:
    """One export option: its Python keyword, its CLI flag, help, and choices (None: free value)."""

    name: str
    flag: str
    help: str
    choices: tuple[str, ...] | None = None
    type: type = str

    def label(self, cli: bool) -> str:
        return self.flag if cli else f"{self.name}="


@dataclass
class Plan:
    """Checked export options: what every artifact directory of one export gets."""

    format: str
    lora: str | None  # "merge" | "keep" | None (no adapters / pre-merged)
    tasks: list[str]  # the tasks exported
    units: list[tuple[str, str | None, str]]  # (subdirectory, merged task, part) per artifact directory
    rope_theta: float | None
    max_length: int | None
    role: str | None
    values: dict[str, Any]  # the format's own options, checked and normalised by Format.check


class Format(ABC):
    name: ClassVar[str]
    options: ClassVar[tuple[Option, ...]] = ()
    keep_takes_tasks: ClassVar[bool] = False  # with --lora keep, may --task pick a subset? (GGUF: adapter files)

    def supports(self, bundle: Bundle) -> None:  # noqa: B027 - most formats hold every model
        """Raise EmbccError if this format cannot hold this model at all."""

    def parts(self, bundle: Bundle) -> tuple[str, ...]:
        """The parts of the model (embcc.families: text, vision, combined) this format can hold."""
        return bundle.family.parts(bundle)

    def part_refusal(self, bundle: Bundle, part: str, cli: bool = True) -> tuple[str, str]:
        """(problem, fix) when asked for a part this format cannot hold; `cli`: name CLI flags, else keywords."""
        fmt, parts = (f"--format {self.name}", "--part ") if cli else (f"fmt={self.name!r}", "part=")
        return (f"{fmt} cannot hold the {part} part of {bundle.spec.family}",
                f"choose {parts}{', '.join(self.parts(bundle))}")

    @abstractmethod
    def check(self, bundle: Bundle, values: dict[str, Any], *, cli: bool) -> dict[str, Any]:
        """Check and normalise this format's own option values (absent ones: defaults)."""

    def recorded(self, plan: Plan) -> dict[str, Any]:
        """What manifest.json records of this format's options."""
        return {}

    @abstractmethod
    def write(self, adapted: Adapted, where: Path, plan: Plan) -> ModelSpec:
        """Write one artifact directory (model files) into `where`; returns the ModelSpec embcc.json gets."""
