"""Precision passes over ONNX artifacts: fp16 with measured fp32 islands, int8 (static QDQ or dynamic).

`lower()` takes the fp32 graph an export just wrote and the calibration texts, and writes the reduced
precision graph(s) plus a report (precision.json: what stayed float and why, which layers hurt most).
Everything measured is cached (see cache.py), so the same inputs give the same bytes without re-measuring.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from embcc.calibration import cache
from embcc.calibration.data import (
    CALIBRATION_IMAGES,
    DEFAULT_MAX_LENGTH,
    CalibrationText,
    builtin,
    check_tasks,
    corpus_hash,
    part_feeds,
    read_file,
)
from embcc.calibration.int8 import METHODS, MODES
from embcc.core.errors import EmbccError
from embcc.core.spec import ModelSpec

ONNX_PRECISIONS = ("fp32", "fp16", "int8")
log = logging.getLogger("embcc.calibration")
REPORT = "precision.json"


@dataclass
class Calibration:
    """What the user asked for: texts (built-in corpus unless --calibration), method, int8 mode, cache."""

    file: Path | None = None
    method: str = "minmax"
    int8_mode: str = "static"
    max_length: int = DEFAULT_MAX_LENGTH
    cache_dir: Path | None = None
    texts: list[CalibrationText] = field(default_factory=list)

    @property
    def source(self) -> str:
        return str(self.file) if self.file else "built-in corpus (embcc.calibration.corpus)"


def check(precision: str, spec: ModelSpec, *, file: str | Path | None = None, method: str | None = None,
          int8_mode: str | None = None, max_length: int | None = None, cache_dir: str | Path | None = None,
          fmt: str = "onnx", cli: bool = True) -> Calibration | None:
    """Refuse what does not apply, read the calibration texts; None for fp32 (nothing to calibrate)."""

    def n(flag: str) -> str:  # the option as the caller wrote it: CLI flag or Python keyword
        return flag if cli else flag.removeprefix("--").replace("-", "_")

    if precision not in ONNX_PRECISIONS:
        raise EmbccError(f"{fmt} artifacts cannot hold precision {precision!r}",
                         f"choose {n('--precision')} {', '.join(ONNX_PRECISIONS)}")
    given = {"--calibration": file, "--calibration-method": method, "--int8-mode": int8_mode,
             "--calibration-max-length": max_length}
    if precision == "fp32":
        used = [k for k, v in given.items() if v is not None]
        if used:
            raise EmbccError(f"{n(used[0])} applies to {n('--precision')} fp16 or int8 only", f"leave out {n(used[0])}")
        return None
    if method is not None and method not in METHODS:
        raise EmbccError(f"unknown calibration method {method!r}", f"choose one of: {', '.join(METHODS)}")
    if int8_mode is not None and int8_mode not in MODES:
        raise EmbccError(f"unknown {n('--int8-mode')} {int8_mode!r}", "choose static or dynamic")
    if precision == "fp16" and int8_mode is not None:
        raise EmbccError(f"{n('--int8-mode')} applies to {n('--precision')} int8 only", f"leave out {n('--int8-mode')}")
    if max_length is not None and not 2 <= max_length <= spec.max_length:
        raise EmbccError(f"{n('--calibration-max-length')} {max_length} is outside 2..{spec.max_length}",
                         f"pass a length from 2 to {spec.max_length} (default {DEFAULT_MAX_LENGTH})")
    texts = read_file(file) if file is not None else builtin()
    check_tasks(texts, spec)
    return Calibration(Path(file) if file else None, method or "minmax", int8_mode or "static",
                       min(max_length or DEFAULT_MAX_LENGTH, spec.max_length), Path(cache_dir) if cache_dir else None,
                       texts)


def lower(src: Path, where: Path, *, precision: str, spec: ModelSpec, calibration: Calibration,
          checkpoint_sha256: str, fused: Path | None = None) -> dict:
    """Write the `precision` graph(s) of the fp32 graph `src` (standard ops) into `where`, and of `fused` (the
    same graph with fused attention, where the export made one) as ONNX Runtime's model.onnx; returns
    precision.json's content. Everything is measured on `src`."""
    from embcc.calibration.fp16 import lower_fp16
    from embcc.calibration.int8 import PORTABLE_FILE, layer_errors, lower_int8

    keep = spec.lora == "keep"
    method = calibration.method if precision == "int8" else "fp16-range-and-error"
    dynamic = precision == "int8" and calibration.int8_mode == "dynamic"
    corpus = corpus_hash(calibration.texts, calibration.max_length)
    if spec.part != "text":  # the image feeds are part of what was measured
        corpus = f"{corpus}+images{CALIBRATION_IMAGES}"
    key = dict(checkpoint=checkpoint_sha256, corpus=corpus, method=method, graph=cache.graph_hash(src))
    measured: list[dict] | None = None

    def measure() -> list[dict]:
        nonlocal measured
        if measured is None:
            import onnx

            inputs = {i.name for i in onnx.load(str(src), load_external_data=False).graph.input}
            measured = part_feeds(calibration.texts, spec, where / "tokenizer.json", keep=keep,
                                  max_length=calibration.max_length, inputs=inputs)
        return measured

    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization warns through the root logger
    try:
        if precision == "fp16":
            entry = cache.entry(calibration.cache_dir, kind="fp16", **key)
            report = lower_fp16(src, where, None if cache.trusted(entry) else measure(), entry, fused=fused)
        else:
            entry = None if dynamic else cache.entry(calibration.cache_dir, kind="int8-ranges", **key)
            report = lower_int8(src, where, measure, method=calibration.method, mode=calibration.int8_mode,
                                cache_file=entry, fused=fused)
            errors_entry = cache.entry(calibration.cache_dir, kind=f"int8-{calibration.int8_mode}-errors", **key)
            if cache.trusted(errors_entry):
                report["layers_hurting_most"] = json.loads(errors_entry.read_text())
            else:
                measured_graph = where / PORTABLE_FILE if (where / PORTABLE_FILE).is_file() else where / "model.onnx"
                report["layers_hurting_most"] = layer_errors(src, measured_graph, measure()[:2])
                cache.write_atomic(errors_entry, json.dumps(report["layers_hurting_most"], indent=2) + "\n")
    finally:
        logging.getLogger().setLevel(quiet)
    report["calibration"] = {"texts": len(calibration.texts), "source": calibration.source,
                             "max_length": calibration.max_length, "tasks": "every task id" if keep else spec.task}
    # Whether the cache was hit stays out of the artifact: the same inputs must give the same bytes.
    log.info("calibration cache %s for %s", report.pop("cache"), where)
    report["precision"] = precision
    return report


__all__ = ["ONNX_PRECISIONS", "REPORT", "Calibration", "check", "lower"]
