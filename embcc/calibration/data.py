"""Calibration texts -> model feeds, prefixed and tokenised exactly as at inference
(by the runtimes' own preprocessing step).

Texts come from the built-in corpus (embcc.calibration.corpus, held out from the verify probes) or from
`--calibration FILE`: one text per line, or JSON lines {"text": ..., "task": optional task name}. A text with
a task calibrates that task only; a text without one calibrates every task. A merged graph sees its task's
prefix; a keep graph is fed every task id in turn, each batch with that task's prefix.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embcc.core.errors import EmbccError
from embcc.core.spec import ModelSpec
from embcc.runtimes.preprocess import Preprocessor

DEFAULT_MAX_LENGTH = 512
BATCH = 8


@dataclass(frozen=True)
class CalibrationText:
    text: str
    task: str | None = None


def builtin() -> list[CalibrationText]:
    from embcc.calibration.corpus import CORPUS

    return [CalibrationText(t) for t in CORPUS]


def read_file(path: str | Path) -> list[CalibrationText]:
    """`--calibration FILE`: plain lines, or JSON lines with "text" and an optional "task"."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise EmbccError(f"cannot read calibration file {path} ({e.__class__.__name__})",
                         "pass a readable UTF-8 text file, one text per line") from e
    lines = [line for line in raw.splitlines() if line.strip()]
    if not lines:
        raise EmbccError(f"calibration file {path} holds no texts", "put one text per line (or JSON lines with \"text\")")
    if all(line.lstrip().startswith("{") for line in lines):
        out = []
        for n, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise EmbccError(f"{path} line {n} is not valid JSON ({e.msg})", "fix the line or use plain text lines") from e
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise EmbccError(f"{path} line {n} has no string \"text\" field", 'write {"text": "...", "task": "..."}')
            task = row.get("task")
            if task is not None and not isinstance(task, str):
                raise EmbccError(f"{path} line {n}: \"task\" must be a task name", "write the task as a string")
            out.append(CalibrationText(row["text"], task))
        return out
    return [CalibrationText(line) for line in lines]


def check_tasks(texts: list[CalibrationText], spec: ModelSpec) -> None:
    names = {t.name for t in spec.tasks}
    for t in texts:
        if t.task is not None and t.task not in names:
            fix = f"use one of: {', '.join(sorted(names))}" if names else "leave out \"task\": this model has no tasks"
            raise EmbccError(f"calibration text names task {t.task!r}, which {spec.family} does not have", fix)


def corpus_hash(texts: list[CalibrationText], max_length: int) -> str:
    h = hashlib.sha256(f"max_length={max_length}\n".encode())
    for t in texts:
        h.update(json.dumps([t.task, t.text], ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


def feeds(texts: list[CalibrationText], spec: ModelSpec, tokenizer_json: Path, *, keep: bool,
          max_length: int = DEFAULT_MAX_LENGTH) -> list[dict[str, np.ndarray]]:
    """Padded batches for the graph: input_ids, attention_mask (and task_id for a keep graph)."""
    tok = Preprocessor(spec, tokenizer_json, max_length=max_length)
    special = set(tok.tokenizer.get_added_tokens_decoder())
    if keep:
        groups = [(t, [x.text for x in texts if x.task in (None, t.name)]) for t in spec.tasks]
    else:
        task = spec.task_by_name(None)
        groups = [(task, [x.text for x in texts if x.task is None or task is None or x.task == task.name])]
    out: list[dict[str, np.ndarray]] = []
    content = 0
    for task, group in groups:
        ids = tok.token_ids(group, task.name if task else None) if group else []
        content += sum(1 for row in ids if any(i not in special for i in row))
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths share a batch: less padding
        for start in range(0, len(order), BATCH):
            input_ids, mask = tok.pad([ids[i] for i in order[start:start + BATCH]])
            feed = {"input_ids": input_ids, "attention_mask": mask}
            if keep:
                feed["task_id"] = np.array(task.id, dtype=np.int64)
            out.append(feed)
    if content == 0:
        raise EmbccError("every calibration text tokenises to nothing but special tokens",
                         "give calibration texts with real words in them")
    return out


CALIBRATION_IMAGES = 32  # generated images beyond the verify probe set (embcc.core.probe_images)


def image_feeds(spec: ModelSpec, n: int = CALIBRATION_IMAGES) -> list[dict[str, np.ndarray]]:
    """Batches of pixel_values for an image tower: generated images held out from verify's probe images (verify
    uses the first 24 of core.probe_images; calibration the seeded variants after them)."""
    from embcc.core.images import preprocess

    held_out = held_out_images(n)
    return [{"pixel_values": preprocess(held_out[i:i + BATCH], spec.image or {})} for i in range(0, n, BATCH)]


def held_out_images(n: int) -> list:
    """n generated images after the first 24 of core.probe_images (those are verify's)."""
    from embcc.core.probe_images import probe_images

    return probe_images(24 + n)[24:]


def vl_image_feeds(spec: ModelSpec, tokenizer_json: Path, *, keep: bool,
                   n: int = CALIBRATION_IMAGES) -> list[dict[str, np.ndarray]]:
    """Feeds of a Qwen2.5-VL image graph (jina-embeddings-v4's vision part), one held-out generated image each, as
    the runtime builds them (embcc.core.vl_images); kept adapters cycle through the tasks."""
    from tokenizers import Tokenizer

    from embcc.core import vl_images

    facts = spec.image or {}
    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    proc = vl_images.processor(facts)
    out = []
    for i, image in enumerate(held_out_images(n)):
        pixels, grid = vl_images.patches([image], facts, proc)
        feed = vl_images.image_feeds(pixels, grid, tokenizer, 0, facts)  # one image: no padding
        if keep:
            feed["task_id"] = np.array(spec.tasks[i % len(spec.tasks)].id, dtype=np.int64)
        out.append(feed)
    return out


def part_feeds(texts: list[CalibrationText], spec: ModelSpec, tokenizer_json: Path, *, keep: bool,
               max_length: int, inputs: set[str]) -> list[dict[str, np.ndarray]]:
    """The feeds for one part of a model, restricted to the graph's own inputs: texts (text part), images (an
    image tower), or a text batch beside an image batch (jina-clip-v2's combined graph, both towers at once)."""
    if (spec.image or {}).get("kind") == "qwen2-vl":
        return [{k: v for k, v in f.items() if k in inputs} for f in vl_image_feeds(spec, tokenizer_json, keep=keep)]
    text = feeds(texts, spec, tokenizer_json, keep=keep, max_length=max_length) if "input_ids" in inputs else []
    images = image_feeds(spec) if "pixel_values" in inputs else []
    if text and images:
        out = [{**t, **images[i % len(images)]} for i, t in enumerate(text)]
    else:
        out = text or images
    return [{k: v for k, v in f.items() if k in inputs} for f in out]
