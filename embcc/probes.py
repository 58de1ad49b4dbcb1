"""The built-in probe set `embcc verify` runs: held out from calibration, >= 100 texts, 30+ languages and scripts,
code, numbers, emoji, empty and whitespace-only strings, 1 token to past 8,192 tokens, in an order that mixes
lengths within every batch so padding matters. The texts ship as package data (embcc/data/probes.json)."""

from __future__ import annotations

import json
from importlib import resources

PROBES: list[str] = json.loads(resources.files("embcc").joinpath("data/probes.json").read_text(encoding="utf-8"))
