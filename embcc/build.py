"""`embcc build`: export with LoRA merged and kept (where the model has adapters), verify each, print parity."""

from __future__ import annotations

from pathlib import Path

from embcc.core.errors import EmbccError
from embcc.families import load
from embcc.fixtures import write_fixture
from embcc.pipeline import export
from embcc.verify import format_table, verify

DEMO_MAX_LENGTH = 2048


def build(checkpoint: Path | None, out: Path, *, rope_theta: float | None = None, max_length: int | None = None) -> bool:
    """Returns True when every artifact meets its parity bar. Layout under `out`:
    fixture/ (when no checkpoint is given), onnx-merge/<task>/, onnx-keep/ (or onnx/ without adapters)."""
    out = Path(out)
    if out.exists():
        raise EmbccError(f"output {out} already exists", "choose a new --out directory or remove the old one")
    if checkpoint is None:
        checkpoint = out / "fixture"
        write_fixture("jina-v3", checkpoint, size="tiny", layout="original", seed=0)
        print(f"no checkpoint given: wrote a tiny random-weight jina-embeddings-v3 fixture to {checkpoint}")
        if max_length is None:
            max_length = DEMO_MAX_LENGTH
            print(f"(the demo artifacts truncate at {max_length} tokens to keep the demo to about two minutes)")
    bundle = load(checkpoint)
    modes = ["merge", "keep"] if bundle.lora is not None else [None]
    ok = True
    for mode in modes:
        where = out / (f"onnx-{mode}" if mode else "onnx")
        export(checkpoint, where, lora=mode, rope_theta=rope_theta, max_length=max_length, bundle=bundle)
        print(f"exported {where}")
        report = verify(where, checkpoint)
        print(format_table(report))
        ok = ok and report["passed"]
    return ok
