"""Parity: an artifact's runtime against the independent PyTorch reference on the built-in probe set.

The reference (embcc.reference) is built from the checkpoint's own files by transformers + PEFT (or, for
JinaBERT, a separate float64 re-implementation) and shares no code with the export path: not the loader, not the
LoRA merge, not the prefixing or tokenisation. What the user asked for at export (a RoPE base, a role, a max
length: manifest.json's options) is given to the reference as the user's request; everything else the reference
reads from the checkpoint itself, so a wrong theta, prefix, pooling or adapter inside the artifact shows up.

Bars: docs/parity-bars.md (SPEC.md section 4), per artifact precision, in BARS below. Ranking agreement is the
mean overlap of each text's 10 nearest neighbours under both, on mean-centred embeddings (random-weight models
put every text at cosine 0.96-0.98 from every other, so uncentred neighbours would be noise).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from embcc import __version__
from embcc.core import progress
from embcc.core.bundle import Bundle
from embcc.core.errors import EmbccError
from embcc.core.files import hash_tree
from embcc.core.spec import ModelSpec
from embcc.export.artifact import MANIFEST, PARITY
from embcc.probes import PROBES
from embcc.runtimes import onnx_forms, open_artifact
from embcc.runtimes.base import Embedder, maxsim

# Probes are truncated at the artifact's max length, but at most here for graphs without tiled attention: ONNX
# Runtime's unfused attention holds heads x L^2 scores, 17 GB for one 32,768-token text even on a tiny v5 fixture.
# A fused model.onnx (mha, gqa) is verified to the family's whole context (v5, v4: 32,768).
VERIFY_MAX_TOKENS = 8192
# ...and at most what fits in memory. Such a graph's peak is a multiple of one [batch, heads, L, L] fp32 score tensor
# (scores, mask, softmax, ONNX Runtime's arena across batches): full-size v5-nano (12 heads) peaked at 15.9 GiB for
# one 8,192-token text (5.3x), at 19.4 GiB over the probe set capped at 7,168 with the reference loaded (7.4x beyond
# the ~2.5 GB the process held before; killed for memory on a 24 GB machine) and at 10.5 GiB capped at 4,096, where
# the runtime's batches of shorter texts (batch x L^2 <= runtimes.batching.ATTENTION_BUDGET) dominate (7.0x).
# Probes stop where SCORE_COPIES such tensors fill MEMORY_SHARE of the memory available when the graph opens
# (measured 2026-12-02, 2-core AMD EPYC, 24 GB).
SCORE_COPIES = 8
MEMORY_SHARE = 0.75

# precision -> bar: min cosine, max abs diff, mean cosine, ranking agreement; an empty bar: reported, not gated
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
                             "q4_k_m", "q5_k_s", "q5_k_m", "q6_k")})


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
    result: str = ""  # "pass" | "FAIL" | "reported (not gated)"
    graph: str | None = None  # which graph of the artifact (model.onnx, model.ort.onnx ...), where it has several
    runtime: str = ""
    finite: bool = True
    failed: list[str] = field(default_factory=list)  # the bar entries that were missed
    max_tokens: int = 0  # probes were truncated here (the graph's budget: see VERIFY_MAX_TOKENS)
    # per probe (the report's plots: embcc.report): cosine to the reference, max |diff|, and the tokens the
    # artifact saw (empty for images); a multi-vector row has one entry per text (its worst token)
    cosines: list[float] = field(default_factory=list)
    abs_diffs: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    # what the row cost: seconds in the reference's and in the artifact's encode calls (what verify at a family's
    # full context costs, per runtime)
    reference_s: float = 0.0
    artifact_s: float = 0.0


def timed(call, *args, **kwargs) -> tuple[object, float]:
    """`call(*args, **kwargs)` and its wall-clock seconds (a report figure; nothing is gated on it)."""
    start = time.perf_counter()
    out = call(*args, **kwargs)
    return out, time.perf_counter() - start


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


def top_k_agreement(ref_scores: np.ndarray, got_scores: np.ndarray, k: int) -> float:
    """Mean overlap of each row's k best-scored columns under the two score matrices [rows, columns]."""
    k = min(k, ref_scores.shape[1])

    def top(s: np.ndarray) -> np.ndarray:
        return np.argsort(-s, axis=1, kind="stable")[:, :k]

    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top(ref_scores), top(got_scores))]))


def compare(ref: np.ndarray, got: np.ndarray, bar: dict, ranking: bool = True) -> dict:
    """Parity figures and the verdict; a non-finite value in the artifact's output fails any bar. `ranking`
    False: no neighbour agreement (per-token rows: an N^2 matrix over tens of thousands of tokens)."""
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    finite = bool(np.isfinite(got64).all())
    got64 = np.nan_to_num(got64, nan=0.0, posinf=0.0, neginf=0.0)
    norms = np.linalg.norm(ref64, axis=1) * np.linalg.norm(got64, axis=1)
    cos = (ref64 * got64).sum(1) / np.maximum(norms, 1e-30)
    m = {
        "cosines": cos,
        "abs_diffs": np.abs(ref64 - got64).reshape(len(ref64), -1).max(1),
        "min_cosine": float(cos.min()),
        "mean_cosine": float(cos.mean()),
        "max_abs_diff": float(np.abs(ref64 - got64).max()),
        "ranking_agreement": ranking_agreement(ref64, got64) if ranking else None,
    }
    failed = [key for key, limit in bar.items() if (m[key] > limit if key == "max_abs_diff" else m[key] < limit)]
    if not finite:
        failed.insert(0, "finite")
    passed = finite and not failed
    result = "FAIL" if not passed else ("pass" if bar else "reported (not gated)")
    return {**m, "passed": passed, "finite": finite, "failed": failed, "result": result}


def parity(artifact: Embedder, reference, *, tasks: list[str | None], bar: dict, name: str, max_length: int,
           texts: list[str] | None = None, role: str | None = None, reference_role: str | None = None,
           graph: str | None = None) -> list[TaskParity]:
    """One row per task: `artifact` (its own preprocessing, default role) against `reference` (its own)."""
    texts = PROBES if texts is None else texts
    rows = []
    for n, task in enumerate(tasks, 1):
        progress.step(f"verifying {name}{f' [{graph}]' if graph else ''}: {len(texts)} probes, task {task or '-'}",
                      n, len(tasks))
        ref, ref_s = timed(reference.encode, texts, task=task, role=reference_role, max_length=max_length)
        got, art_s = timed(artifact.encode, texts, task=task, role=role)
        m = compare(ref, got, bar)
        rows.append(TaskParity(name, task, len(texts), m["min_cosine"], m["mean_cosine"], m["max_abs_diff"],
                               m["ranking_agreement"], bar, m["passed"], m["result"], graph, artifact.runtime,
                               m["finite"], m["failed"], **_per_probe(m, _token_counts(artifact, texts, task, role)),
                               reference_s=ref_s, artifact_s=art_s))
    return rows


def _token_counts(artifact, texts: list[str], task: str | None, role: str | None) -> list[int]:
    """How many tokens the artifact's preprocessing gave each text (prefix and truncation included)."""
    token_ids = getattr(artifact, "token_ids", None)
    if token_ids is None:
        return []
    try:
        return [len(ids) for ids in token_ids(texts, task, role)]
    except EmbccError:  # a runtime that cannot say: the report's per-length plot leaves the row out
        return []


def _per_probe(m: dict, tokens: list[int]) -> dict:
    return {"cosines": [float(c) for c in m["cosines"]], "abs_diffs": [float(d) for d in m["abs_diffs"]],
            "tokens": tokens}


def token_gate(bar: dict) -> dict:
    """The bar for per-token multi-vectors. SPEC's bars are for sentence vectors: fp32 and fp16 hold every token
    to theirs (cosine, abs diff). The int8 bar is a mean, a worst case and neighbours over sentence vectors; its
    counterpart for late interaction is the MaxSim ranking (multi_parity gates it), and the per-token cosines are
    reported: on the tiny random fixtures a static-int8 token turns by several degrees (mean token cosine
    0.97-0.995 measured) while the MaxSim order holds."""
    if "mean_cosine" in bar:
        return {}
    return {k: v for k, v in bar.items() if k != "ranking_agreement"}


def compare_tokens(ref: list[np.ndarray], got: list[np.ndarray], bar: dict) -> tuple[dict, dict]:
    """Per-token parity of two lists of multi-vectors [n_i, D] under token_gate(bar), and per item (text or
    image) its worst token's cosine and largest difference (the report's plots)."""
    if [len(r) for r in ref] != [len(g) for g in got]:
        raise AssertionError("the artifact's multi-vectors have other token counts than the reference's")
    tokens = compare(np.concatenate(ref), np.concatenate(got), token_gate(bar), ranking=False)
    ends = np.cumsum([len(r) for r in ref])[:-1]
    per_item = {"cosines": [c.min() for c in np.split(tokens["cosines"], ends)],
                "abs_diffs": [d.max() for d in np.split(tokens["abs_diffs"], ends)]}
    return tokens, per_item


def multi_parity(artifact: Embedder, reference, *, tasks: list[str | None], bar: dict, name: str,
                 graph: str | None, max_length: int, texts: list[str] | None = None,
                 reference_role: str | None = None, queries: int = 16) -> list[TaskParity]:
    """Multi-vector rows (jina-embeddings-v4): per-token cosines of the two multi-vectors, and MaxSim scores of
    the first probe texts (queries) against the rest (documents) with each query's ranking of them."""
    texts = (PROBES if texts is None else texts)[: queries + 48]
    rows = []
    for task in tasks:
        ref, ref_s = timed(reference.encode, texts, task=task, role=reference_role, max_length=max_length,
                           vectors="multi")
        got, art_s = timed(artifact.encode, texts, task=task, vectors="multi")
        tokens, per_text = compare_tokens(ref, got, bar)
        s_ref, s_got = maxsim(ref[:queries], ref[queries:]), maxsim(got[:queries], got[queries:])
        agree = top_k_agreement(s_ref, s_got, 10)
        passed = tokens["passed"] and agree >= bar.get("ranking_agreement", 0.0)
        failed = tokens["failed"] + ([] if agree >= bar.get("ranking_agreement", 0.0) else ["ranking_agreement"])
        result = "FAIL" if not passed else ("pass" if bar else "reported (not gated)")
        gated = {**token_gate(bar), **{k: v for k, v in bar.items() if k == "ranking_agreement"}}
        rows.append(TaskParity(name, f"{task} (multi)", len(texts), tokens["min_cosine"], tokens["mean_cosine"],
                               tokens["max_abs_diff"], agree, gated, passed, result, graph, artifact.runtime,
                               tokens["finite"], failed, **_per_probe(per_text, [len(r) for r in ref]),
                               reference_s=ref_s, artifact_s=art_s))
    return rows


def image_parity(artifact: Embedder, reference, *, bar: dict, name: str, graph: str | None, cross_modal: bool,
                 max_length: int, images: list | None = None, tasks: list[str | None] | None = None,
                 multi: bool = False) -> list[TaskParity]:
    """Image rows: the built-in probe images through both, per task where the images pass through a decoder
    with adapters (jina-embeddings-v4; `multi`: also its multi-vectors per token, on the first 8 images); with
    `cross_modal`, text-to-image retrieval on the generated caption/image pairs (similarities and each caption's
    top-3 images under both)."""
    from embcc.core.probe_images import caption_pairs, probe_images

    images = probe_images() if images is None else images
    rows = []
    for task in tasks or [None]:
        kw = {} if task is None else {"task": task}
        ref, ref_s = timed(reference.encode_images, images, **kw)
        got, art_s = timed(artifact.encode_images, images, **kw)
        m = compare(ref, got, bar)
        rows.append(TaskParity(name, "images" if task is None else f"{task} (images)", len(images), m["min_cosine"],
                               m["mean_cosine"], m["max_abs_diff"], m["ranking_agreement"], bar, m["passed"],
                               m["result"], graph, artifact.runtime, m["finite"], m["failed"], **_per_probe(m, []),
                               reference_s=ref_s, artifact_s=art_s))
        if multi:
            few = images[:8]
            ref = reference.encode_images(few, vectors="multi", **kw)
            got = artifact.encode_images(few, vectors="multi", **kw)
            gate = token_gate(bar)
            t, per = compare_tokens(ref, got, bar)
            # the images' MaxSim scores against each other; each image's top-3 under both (reported)
            agree = top_k_agreement(maxsim(ref, ref), maxsim(got, got), 3)
            rows.append(TaskParity(name, f"{task} (images, multi)", len(few), t["min_cosine"], t["mean_cosine"],
                                   t["max_abs_diff"], agree, gate, t["passed"], t["result"], graph, artifact.runtime,
                                   t["finite"], t["failed"], **_per_probe(per, [len(r) for r in ref])))
    if cross_modal:
        pairs = caption_pairs()
        captions, pictures = [c for c, _ in pairs], [i for _, i in pairs]
        ref_sim = reference.encode(captions, max_length=max_length) @ reference.encode_images(pictures).T
        got_sim = artifact.encode(captions) @ artifact.encode_images(pictures).T
        # gated on the similarity rows (cosine and abs diff as the bar says); the top-3 overlap over so few images
        # is reported: one swapped neighbour among 8 pairs moves it by 0.04
        gate = {k: v for k, v in bar.items() if k != "ranking_agreement"}
        x = compare(ref_sim, got_sim, gate)
        agree = top_k_agreement(ref_sim, got_sim, 3)
        rows.append(TaskParity(name, "text->image", len(pairs), x["min_cosine"], x["mean_cosine"], x["max_abs_diff"],
                               agree, gate, x["passed"], x["result"], graph, artifact.runtime, x["finite"],
                               x["failed"], **_per_probe(x, [])))
    return rows


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), None where there is none."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def attention_heads(*dirs: Path) -> int | None:
    """The most attention heads any tower declares in the first config.json found (a nested text_config or
    vision_config counts: the widest score tensor is the one that matters)."""
    def heads(node: object) -> list[int]:
        if isinstance(node, dict):
            here = node.get("num_attention_heads")
            return ([here] if isinstance(here, int) else []) + [h for v in node.values() for h in heads(v)]
        return []

    for d in dirs:
        try:
            found = heads(json.loads((d / "config.json").read_text()))
        except (OSError, ValueError):
            continue
        if found:
            return max(found)
    return None


def untiled_tokens(cap: int, heads: int | None, available: int | None) -> int:
    """Probe length for a graph or runtime that materialises heads x L^2 scores: `cap`, or less where
    SCORE_COPIES fp32 score tensors of `heads` would not fit in MEMORY_SHARE of `available` bytes (multiples of
    512, at least 512)."""
    if not heads or not available:
        return cap
    fits = int((MEMORY_SHARE * available / (SCORE_COPIES * heads * 4)) ** 0.5)
    return min(cap, max(512, fits // 512 * 512))


def _manifest(root: Path, art: Path) -> dict:
    for where in (art, root):
        f = where / MANIFEST
        if f.is_file():
            try:
                m = json.loads(f.read_bytes().decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise EmbccError(f"{f} is not readable JSON ({e})", "the artifact is damaged; export it again") from e
            if not isinstance(m, dict) or not isinstance(m.get("options", {}), dict):
                raise EmbccError(f"{f} is not an embcc manifest", "the artifact is damaged; export it again")
            return m
    return {}


def verify(artifact_path: str | Path, reference: str | Path | Bundle, *, texts: list[str] | None = None,
           write: bool = True, max_tokens: int = VERIFY_MAX_TOKENS, full_context: bool = True,
           device: str | None = None) -> dict:
    """Verify every artifact under `artifact_path` against the checkpoint `reference`; writes parity.json beside
    them (parity-<checkpoint sha256[:12]>.json when the checkpoint is not the artifact's source). A loaded Bundle
    stands for its checkpoint directory: the reference is always built afresh from the files. `device` (cpu |
    cuda; None: the artifact's own) goes to open_artifact. Beside the JSON, embcc.report writes the same name as
    .md and .html with PNG plots (report["report_files"])."""
    from embcc.pipeline import artifacts_in
    from embcc.reference import reference_for

    root = Path(artifact_path).resolve()
    checkpoint = Path(reference.path if isinstance(reference, Bundle) else reference).resolve()
    arts = artifacts_in(root)
    if device == "cuda" and onnx_forms(arts[0]):  # no CUDA provider: one line before the reference loads
        from embcc.runtimes.onnxrt import providers

        providers("cuda")
    elif device not in (None, "cpu", "cuda"):
        raise EmbccError(f"unknown device {device!r}", "choose cpu or cuda")
    manifest = _manifest(root, arts[0])
    options = manifest.get("options", {})
    reference_sha = hash_tree(checkpoint)
    is_source = manifest.get("source_sha256") == reference_sha
    ref = reference_for(checkpoint, rope_theta=options.get("rope_theta"))
    rows: list[TaskParity] = []
    lengths: list[int] = []
    try:
        for art in arts:
            spec = ModelSpec.read(art)
            asked = _manifest(root, art).get("options", {}).get("max_length") or spec.max_length
            tasks: list[str | None] = [spec.task] if spec.task is not None else [t.name for t in spec.tasks] or [None]
            if spec.task_optional and spec.task is None:
                tasks = [None, *[t.name for t in spec.tasks]]  # no task (no prefix), and each task's prefix
            name = str(art.relative_to(root)) if art != root else "."
            forms = onnx_forms(art)
            for form in forms or [None]:  # every graph an artifact ships is held to the bar
                # tiled attention (a fused model.onnx) runs the family's whole context in bounded memory; every
                # other graph and runtime materialises heads x L^2 scores, so its probes stop at max_tokens
                tiled = form == "model.onnx" and spec.attention in ("mha", "gqa")
                budget = max_tokens if tiled else untiled_tokens(max_tokens, attention_heads(art, checkpoint),
                                                                 available_bytes())
                length = min(asked, spec.max_length if tiled and full_context else budget)
                lengths.append(length)
                embedder = open_artifact(art, model_file=form, max_length=length, device=device)
                graph = form if len(forms) > 1 else None
                first = len(rows)
                if spec.part in ("text", "combined"):
                    rows += parity(embedder, ref, tasks=tasks, bar=BARS[spec.precision], name=name, texts=texts,
                                   max_length=length, reference_role=options.get("role"), graph=graph)
                if spec.multi_vector_dim and spec.part == "text":
                    rows += multi_parity(embedder, ref, tasks=tasks, bar=BARS[spec.precision], name=name,
                                         graph=graph, max_length=length, texts=texts,
                                         reference_role=options.get("role"))
                if spec.part in ("vision", "combined"):
                    vl = (spec.image or {}).get("kind") == "qwen2-vl"  # images through the decoder and its adapters
                    rows += image_parity(embedder, ref, bar=BARS[spec.precision], name=name, graph=graph,
                                         cross_modal=spec.part == "combined", max_length=length,
                                         tasks=[t for t in tasks if t is not None] if vl else None,
                                         multi=vl and bool(spec.multi_vector_dim))
                for r in rows[first:]:
                    r.max_tokens = length
                if hasattr(embedder, "close"):
                    embedder.close()
        described = ref.describe()
    finally:
        ref.close()
    notes = {}
    for r in rows:
        art = root if r.artifact == "." else root / r.artifact
        label = r.artifact + (f" [{r.graph}]" if r.graph else "")
        if not r.passed and (art / "precision.json").is_file() and label not in notes:
            notes[label] = precision_notes(json.loads((art / "precision.json").read_text()))
    gated = [r for r in rows if r.bar or not r.passed]
    report = {
        "embcc_version": __version__,
        "artifact": str(root),
        "reference": str(checkpoint),
        "reference_sha256": reference_sha,
        "reference_is_source": is_source,
        "reference_model": described,
        "runtimes": sorted({r.runtime for r in rows}),
        "probe_texts": len(texts if texts is not None else PROBES),
        "probe_max_tokens": max(lengths),
        "probe_tokens_per_row": "each row's graph: a fused model.onnx to the artifact's max length, other graphs "
                                f"to {max_tokens} or what memory allows (each row's max_tokens)",
        "passed": all(r.passed for r in rows),
        "gated_rows": len(gated),
        "reported_rows": len(rows) - len(gated),
        "results": [asdict(r) for r in rows],
        "diagnosis": notes,
    }
    if write:
        target = root / (PARITY if is_source else f"parity-{reference_sha[:12]}.json")
        target.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        report["written_to"] = str(target)
        from embcc.report import write_report

        report["report_files"] = [str(f) for f in write_report(report, target)]
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
    from embcc.report import seconds_cell, tokens_cell

    rows = report["results"]
    own = Path(report.get("artifact") or ".").name or "."  # a single artifact at the path itself: show its name

    def shown(r: dict) -> str:
        return own if r["artifact"] == "." else r["artifact"]

    width = max([len("artifact")] + [len(shown(r)) for r in rows])
    gwidth = max([len("graph")] + [len(r.get("graph") or "-") for r in rows])
    head = (f"{'artifact':<{width}} {'graph':<{gwidth}} {'task':<18} {'tokens':>6} {'min cos':>10} {'mean cos':>10} "
            f"{'max |d|':>9} {'rank@10':>8} {'ref s':>7} {'art s':>7}  result")
    ref = report.get("reference_model") or {}
    lines = [f"reference: {ref.get('class', '?')} ({ref.get('library', '?')}; adapters: {ref.get('adapters', '-')})",
             f"           from {report['reference']}",
             f"artifact:  {report.get('artifact', '')} run by {', '.join(report.get('runtimes', []))}"]
    if not report.get("reference_is_source", True):
        lines.append("NOTE: the reference checkpoint is not the one this artifact was exported from "
                     "(source sha256 differs); the artifact's own parity.json is left as it was")
    lines += [head, "-" * len(head)]
    for r in rows:
        why = f" ({', '.join(r.get('failed') or [])})" if r.get("failed") else ""
        lines.append(
            f"{shown(r):<{width}} {r.get('graph') or '-':<{gwidth}} {r['task'] or '-'!s:<18} "
            f"{tokens_cell(r):>6} {r['min_cosine']:>10.7f} {r['mean_cosine']:>10.7f} "
            f"{r['max_abs_diff']:>9.2e} {r['ranking_agreement']:>8.3f} {seconds_cell(r, 'reference_s'):>7} "
            f"{seconds_cell(r, 'artifact_s'):>7}  {r.get('result') or ('pass' if r['passed'] else 'FAIL')}{why}"
        )
    for artifact, notes in report.get("diagnosis", {}).items():
        lines += [f"{artifact}: {n}" for n in notes]
    reported = report.get("reported_rows", 0)
    tail = f"; {reported} row(s) reported, not gated" if reported else ""
    if report["passed"] and not report.get("gated_rows", 1):
        verdict = "REPORTED (no bar applies to this precision; nothing gated)"
    else:
        verdict = "PASSED" if report["passed"] else "FAILED"
    lines.append(f"parity: {verdict} ({report['probe_texts']} probe texts per task, up to "
                 f"{report['probe_max_tokens']} tokens{tail})")
    return "\n".join(lines)
