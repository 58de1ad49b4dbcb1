"""A loaded checkpoint, as every later stage sees it: weights under the backbone's own names, adapters, spec,
tokenizer files, and the family that loaded it (reached only through the small protocol below)."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from embcc.core.lora import LoraSet
from embcc.core.spec import ModelSpec


class FamilyFacts(Protocol):
    """What later stages may ask of the family that loaded a bundle (families/base.py implements it)."""

    name: str

    def backbone(self, bundle: Bundle, weights: Mapping[str, torch.Tensor],
                 rope_theta: float | None = None) -> torch.nn.Module: ...

    def gguf_facts(self, bundle: Bundle) -> Any: ...

    def client_config(self, bundle: Bundle, spec: ModelSpec) -> dict | None: ...

    def parts(self, bundle: Bundle) -> tuple[str, ...]: ...

    def part_spec(self, bundle: Bundle, part: str) -> ModelSpec: ...

    def part_module(self, adapted: Any, part: str) -> tuple[torch.nn.Module, Any]: ...


@dataclass
class Bundle:
    family: FamilyFacts
    path: Path
    layout: str
    config: dict
    spec: ModelSpec
    # float32 on access; loaders return embcc.core.weights.LazyWeights (read from the files each time, nothing held)
    weights: MutableMapping[str, torch.Tensor]
    lora: LoraSet | None = None
    tokenizer_files: list[Path] = field(default_factory=list)
    source_sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # family-specific payloads (another tower's weights)
    files: list[Path] = field(default_factory=list)  # other files every artifact carries (preprocessor_config.json)
