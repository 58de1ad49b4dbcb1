"""Parity: an artifact's Embedder against the torch reference on the built-in probe set.

The bars are SPEC.md section 4's, per artifact precision. Ranking agreement is the mean overlap of each
text's 10 nearest neighbours under both, on mean-centred embeddings (random-weight models put every text at
cosine 0.96-0.98 from every other, so uncentred neighbours would be noise).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from embcc import __version__
from embcc.core.bundle import Bundle
from embcc.core.spec import ModelSpec
from embcc.export.artifact import MANIFEST, PARITY
from embcc.families import load
from embcc.probes import PROBES
from embcc.runtimes import onnx_forms, open_artifact
from embcc.runtimes.base import Embedder

# Probes are truncated at the artifact's max length, but at most here: ONNX Runtime's unfused attention holds
# heads x L^2 scores, 17 GB for one 32,768-token text even on a tiny v5 fixture (v2/v3 stop at 8,192 anyway).
VERIFY_MAX_TOKENS = 8192

# precision -> bar: min cosine, max abs diff, mean cosine, ranking agreement (None = not gated)
BARS: dict[str, dict[str, float]] = {
    "fp32": {"min_cosine": 0.9999, "max_abs_diff": 1e-4},
    "fp16": {"min_cosine": 0.999},
    "bf16": {"min_cosine": 0.999},
    "int8": {"mean_cosine": 0.99, "min_cosine": 0.97, "ranking_agreement": 0.9},
    "q8_0": {"min_cosine": 0.99, "ranking_agreement": 0.9},
    "lora_keep_vs_merge": {"min_cosine": 0.99999},
    # GGUF types (llama.cpp's names): f32 and f16/bf16 take the fp32 and fp16 bars; below q8_0 reported only
    "f32": {"min_cosine": 0.9999, "max_abs_diff": 1e-4},
    "f16": {"min_cosine": 0.999},
}
BARS.update({t: {} for t in ("q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s",
                             "q4_k_m", "q5_k_s", "q5_k_m", "q6_k")})  # an empty bar: reported, not gated


@dataclass
class TaskParity:
    artifact: str
    task: str | None
    n_texts: int
    min_cosine: float
    mean_cosine: float
    max_abs_diff: float
    ranking_agreement: float
    bar: dict
    passed: bool


def ranking_agreement(ref: np.ndarray, got: np.ndarray, k: int = 10) -> float:
    """Mean overlap of each text's k nearest neighbours (self excluded) on mean-centred embeddings."""
    k = min(k, len(ref) - 1)
    if k < 1:
        return 1.0

    def neighbours(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64) - x.mean(0, keepdims=True)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        sim = x @ x.T
        np.fill_diagonal(sim, -np.inf)
        return np.argsort(-sim, axis=1, kind="stable")[:, :k]

    a, b = neighbours(ref), neighbours(got)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b)]))


def compare(ref: np.ndarray, got: np.ndarray, bar: dict) -> dict:
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    cos = (ref64 * got64).sum(1) / (np.linalg.norm(ref64, axis=1) * np.linalg.norm(got64, axis=1))
    m = {
        "min_cosine": float(cos.min()),
        "mean_cosine": float(cos.mean()),
        "max_abs_diff": float(np.abs(ref64 - got64).max()),
        "ranking_agreement": ranking_agreement(ref64, got64),
    }
    passed = all(m[key] <= limit if key == "max_abs_diff" else m[key] >= limit for key, limit in bar.items())
    return {**m, "passed": passed}


def parity(artifact: Embedder, reference: Embedder, *, tasks: list[str | None], bar: dict, name: str,
           texts: list[str] | None = None, role: str | None = None) -> list[TaskParity]:
    texts = PROBES if texts is None else texts
    rows = []
    for task in tasks:
        ref = reference.encode(texts, task=task, role=role)
        got = artifact.encode(texts, task=task, role=role)
        m = compare(ref, got, bar)
        rows.append(TaskParity(name, task, len(texts), m["min_cosine"], m["mean_cosine"], m["max_abs_diff"],
                               m["ranking_agreement"], bar, m["passed"]))
    return rows


def verify(artifact_path: str | Path, reference: str | Path | Bundle, *, texts: list[str] | None = None,
           write: bool = True) -> dict:
    """Verify every artifact under `artifact_path` against the checkpoint; writes parity.json beside it."""
    from embcc.export.torch_embedder import TorchEmbedder
    from embcc.pipeline import artifacts_in

    root = Path(artifact_path)
    bundle = reference if isinstance(reference, Bundle) else load(reference)
    rows: list[TaskParity] = []
    lengths: list[int] = []
    for art in artifacts_in(root):
        spec = ModelSpec.read(art)
        length = min(spec.max_length, VERIFY_MAX_TOKENS)
        lengths.append(length)
        ref = TorchEmbedder(bundle, rope_theta=spec.rope_theta, max_length=length, task=spec.task)
        tasks: list[str | None] = [spec.task] if spec.task is not None else [t.name for t in spec.tasks] or [None]
        name = str(art.relative_to(root)) if art != root else "."
        forms = onnx_forms(art)
        for form in forms or [None]:  # every graph an artifact ships is held to the bar
            label = f"{name} [{form}]" if len(forms) > 1 else name
            rows += parity(open_artifact(art, model_file=form, max_length=length), ref, tasks=tasks,
                           bar=BARS[spec.precision], name=label, texts=texts, role=spec.role)
    notes = {}
    for r in rows:
        art = root if r.artifact.split(" [")[0] == "." else root / r.artifact.split(" [")[0]
        if not r.passed and (art / "precision.json").is_file() and r.artifact not in notes:
            notes[r.artifact] = precision_notes(json.loads((art / "precision.json").read_text()))
    manifest = root / MANIFEST
    source = json.loads(manifest.read_text()).get("source_sha256") if manifest.is_file() else None
    report = {
        "embcc_version": __version__,
        "reference": str(bundle.path),
        "reference_sha256": bundle.source_sha256,
        "reference_is_source": source == bundle.source_sha256,
        "probe_texts": len(texts if texts is not None else PROBES),
        "probe_max_tokens": max(lengths),
        "passed": all(r.passed for r in rows),
        "results": [asdict(r) for r in rows],
        "diagnosis": notes,
    }
    if write:
        (root / PARITY).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def precision_notes(precision: dict) -> list[str]:
    """What a reduced-precision artifact kept in float and which layers hurt most (from its precision.json)."""
    lines = []
    for k in precision.get("layers_hurting_most", [])[:5]:
        lines.append(f"hurts most: {k['layer']} ({k['op']} {k['node']}) adds {k['added_error']:.3g} relative error")
    for k in precision.get("kept_fp32", [])[:8]:
        lines.append(f"kept fp32: {k['layer']} ({k['op']} {k['node']}): {k['reason']}")
    kept = precision.get("kept_float")
    if kept:
        lines.append(f"kept float: activation MatMuls {kept.get('activation_matmuls')}; {kept.get('op_types')}")
    return lines


def format_table(report: dict) -> str:
    head = f"{'artifact':<22} {'task':<18} {'min cos':>10} {'mean cos':>10} {'max |d|':>9} {'rank@10':>8}  result"
    lines = [head, "-" * len(head)]
    for r in report["results"]:
        lines.append(
            f"{r['artifact']:<22} {r['task'] or '-'!s:<18} {r['min_cosine']:>10.7f} {r['mean_cosine']:>10.7f} "
            f"{r['max_abs_diff']:>9.2e} {r['ranking_agreement']:>8.3f}  "
            f"{('pass' if r['passed'] else 'FAIL') if r['bar'] else 'report (not gated)'}"
        )
    for artifact, notes in report.get("diagnosis", {}).items():
        lines += [f"{artifact}: {n}" for n in notes]
    lines.append(f"parity: {'PASSED' if report['passed'] else 'FAILED'} ({report['probe_texts']} probe texts per task)")
    return "\n".join(lines)
