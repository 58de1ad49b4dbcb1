"""The built-in calibration corpus: the texts int8/fp16 calibration runs through a model to see activations.

Calibration only needs inputs that look like what an embedding model meets in retrieval: short search queries,
ordinary sentences, long passages, source code, and number-heavy text (tables, prices, dates, units, IDs), in
many languages and scripts, on many topics (science, cooking, law, sport, finance, travel, medicine, software,
history ...). Every text here was written for embcc; none is taken from a data set.

The corpus is held out from the verify probe set (`embcc.probes.PROBES`): no text here equals or contains a
probe text and no probe sentence is reused, so `embcc verify` measures parity on inputs that calibration never
saw. The texts ship as package data (embcc/data/calibration_corpus.json; long passages there were built by joining
sentences of one language in fixed, arithmetic orders), so the corpus, and therefore the calibration cache key,
never changes between runs.

`KINDS` groups the texts by kind; `CORPUS` is the concatenation of the `KINDS` values in the order
query, sentence, passage, code, numbers (no text appears twice). `LANGUAGES` lists the ISO 639-1 codes of
the natural languages present.
"""

from __future__ import annotations

import json
from importlib import resources

_DATA = json.loads(resources.files("embcc").joinpath("data/calibration_corpus.json").read_text(encoding="utf-8"))

LANGUAGES: tuple[str, ...] = tuple(_DATA["languages"])
KINDS: dict[str, tuple[str, ...]] = {kind: tuple(texts) for kind, texts in _DATA["kinds"].items()}
CORPUS: tuple[str, ...] = tuple(text for texts in KINDS.values() for text in texts)
