"""`embcc bench`: an artifact against the torch reference and against the plain ONNX path, in one run.

Three sides, the same token ids, the same thread count (torch.set_num_threads, ONNX Runtime intra-op threads):
- artifact: the artifact's runtime (open_artifact(device=...)), batched as Embedder.encode batches;
- torch: the reference model of embcc.reference (transformers + PEFT from the checkpoint, SDPA, inference mode);
- plain: what a user gets without embcc: torch.onnx.export(dynamo=True) of that same reference model, run by ONNX
  Runtime (quantize_dynamic of it for an int8 artifact); "plain export failed: <reason>" where it does not export.
The sides alternate call by call (order reversed every round), so load drift on a shared machine hits them alike;
each figure is a median. Ratios are texts/s of the artifact over texts/s of the other side (>1: artifact faster).

Regimes: short (1x16, 32x128 tokens) and long (1x8192, and 4 texts of 512..8192 tokens), capped at the artifact's
max length. Peak memory: each side once more in a fresh process (bench/child.py) on the first task's shapes.
Every text artifact under the path is benched (a merged export's task dirs), every task of each (kept adapters).
Methodology and columns: docs/bench.md.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# No spinning on either side: ONNX Runtime sessions run with allow_spinning 0 (runners.py); torch's OpenMP pool
# waits passively, which only takes effect before torch is first imported (the CLI, the memory children). Under a
# shared machine's load a spinning pool slows the other side's next call (and its own: 3-5x measured here).
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
OMP_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY", "unset (OpenMP default: spin, then sleep)")

import torch  # noqa: E402

from embcc import __version__  # noqa: E402
from embcc.bench import runners  # noqa: E402
from embcc.bench.plain import PlainFailed, export_plain  # noqa: E402
from embcc.core import progress  # noqa: E402
from embcc.core.errors import EmbccError  # noqa: E402
from embcc.core.spec import ModelSpec  # noqa: E402

SHAPES: dict[str, list[list[int]]] = {
    "short": [[16], [128] * 32],
    "long": [[8192], [512, 3072, 5632, 8192]],
}
SIDES = ("artifact", "torch", "plain")
MIN_RUNS = {"short": 5, "long": 3}  # timed calls per side at least (a long call takes seconds)


def shape_label(lengths: list[int]) -> str:
    lo, hi = min(lengths), max(lengths)
    return f"{len(lengths)}x{hi}" if lo == hi else f"{len(lengths)}x{lo}..{hi}"


def shapes_for(regime: str, cap: int) -> list[tuple[str, list[int], bool]]:
    """(label, lengths, capped) of a regime at the artifact's max length (capped shapes that coincide run once)."""
    out, seen = [], set()
    for lengths in SHAPES[regime]:
        got = [min(n, cap) for n in lengths]
        key = tuple(got)
        if key not in seen:
            seen.add(key)
            out.append((shape_label(got), got, got != lengths))
    return out


def _error(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {(text.splitlines()[0] if text else '')[:240]}"


def alternate(calls: dict[str, Callable[[], object]], seconds: float, min_runs: int = 5) -> dict[str, dict]:
    """Median seconds per call of each side, sides alternating (order reversed every round) after one warm-up call
    each, until every side has `min_runs` calls and `seconds` x sides have passed. A side that raises gets
    {"error": ...} and leaves the rotation."""
    out: dict[str, dict] = {}
    live = {}
    for name, call in calls.items():
        try:
            call()
            live[name] = call
        except Exception as e:  # a runtime's own failure (memory, shape) is the row's finding
            out[name] = {"error": _error(e)}
    runs: dict[str, list[float]] = {k: [] for k in live}
    start, rnd = time.perf_counter(), 0
    while live and (min(len(r) for r in runs.values()) < min_runs
                    or time.perf_counter() - start < seconds * len(live)):
        order = list(live) if rnd % 2 == 0 else list(reversed(live))
        for name in order:
            t = time.perf_counter()
            live[name]()
            runs[name].append(time.perf_counter() - t)
        rnd += 1
    for name, r in runs.items():
        out[name] = {"median_s": statistics.median(r), "min_s": min(r), "runs": len(r)}
    return out


def _manifest_options(root: Path, art: Path) -> dict:
    from embcc.export.artifact import MANIFEST

    for where in (art, root):
        f = where / MANIFEST
        if f.is_file():
            try:
                return dict(json.loads(f.read_text()).get("options") or {})
            except (ValueError, AttributeError, TypeError):
                return {}
    return {}


def _memory(jobs: dict[str, dict], threads: int, timeout: float = 900) -> dict[str, dict]:
    """Each side's job in a fresh interpreter (subprocess: exec, not a bare fork), one after the other."""
    import embcc

    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    here = str(Path(embcc.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([here, *filter(None, [env.get("PYTHONPATH")])])
    out = {}
    for side, job in jobs.items():
        try:
            p = subprocess.run([sys.executable, "-m", "embcc.bench.child", json.dumps(job)], capture_output=True,
                               text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            out[side] = {"error": f"timeout after {timeout:.0f}s"}
            continue
        lines = p.stdout.strip().splitlines()
        if p.returncode != 0 or not lines:
            tail = [x for x in p.stderr.strip().splitlines() if x.strip()]
            out[side] = {"error": f"exit {p.returncode}: {tail[-1][:240] if tail else ''}"}
        else:
            out[side] = json.loads(lines[-1])
    return out


def bench(artifact: str | Path, reference: str | Path, *, threads: int | None = None, seconds: float = 3.0,
          regimes: str | list[str] = ("short",), device: str | None = None, memory: bool = True,
          work: str | Path | None = None) -> dict:
    """Rows (artifact dir, task, regime, shape) with each side's median time and texts/s, and the ratios."""
    from embcc.pipeline import artifacts_in
    from embcc.reference import reference_for

    regimes = [r.strip() for r in regimes.split(",")] if isinstance(regimes, str) else list(regimes)
    unknown = [r for r in regimes if r not in SHAPES]
    if unknown or not regimes:
        raise EmbccError(f"unknown regime {', '.join(unknown) or '(none)'}", f"choose from {', '.join(SHAPES)}")
    if device not in (None, "cpu", "cuda"):
        raise EmbccError(f"unknown device {device!r}", "choose cpu or cuda")
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    root = Path(artifact).resolve()
    checkpoint = Path(reference).resolve()
    arts = artifacts_in(root)
    text_arts = [a for a in arts if ModelSpec.read(a).part in ("text", "combined")]
    image_arts = [a for a in arts if ModelSpec.read(a).part == "vision"]
    skipped = [str(a.relative_to(root)) for a in arts if a not in text_arts and a not in image_arts]
    if not text_arts:
        if image_arts:
            return bench_images(root, image_arts, checkpoint, threads=threads, seconds=seconds, device=device)
        raise EmbccError(f"{root} holds no text artifact", "bench times text embedding; point at a text part")
    arena = "long" not in regimes  # long inputs: no ORT arena (runners.no_spin_options), sides free their peaks
    first = runners.open_side(text_arts[0], threads=threads, device=device, arena=arena)  # device errors first
    options = _manifest_options(root, text_arts[0])
    ref = reference_for(checkpoint, rope_theta=options.get("rope_theta"))
    result: dict = {
        **_header(root, checkpoint, threads=threads, device=device, regimes=regimes, seconds=seconds),
        "ort_cpu_arena": arena, "skipped": skipped, "rows": [],
    }
    tmp = None if work is not None else tempfile.TemporaryDirectory(prefix="embcc-bench-")
    work_dir = Path(work) if work is not None else Path(tmp.name)
    try:
        result["reference_model"] = ref.describe()
        result["torch_dtype"] = runners.reference_fp32(ref)
        torch_device, torch_error = "cpu", None
        if device == "cuda":
            if not torch.cuda.is_available():
                torch_error = "torch here has no CUDA"
            elif not isinstance(getattr(ref, "model", None), torch.nn.Module):
                torch_error = f"the {type(ref).__name__} reference does not move to CUDA"
            else:
                ref.model.to("cuda")
                torch_device = "cuda"
        memory_jobs: dict[str, dict] = {}
        for art in text_arts:
            emb = first if art == text_arts[0] else runners.open_side(art, threads=threads, device=device,
                                                                       arena=arena)
            spec = emb.spec
            name = str(art.relative_to(root)) if art != root else "."
            tasks: list[str | None] = [spec.task] if spec.task is not None else [t.name for t in spec.tasks] or [None]
            vocab = emb.tokenizer.get_vocab_size()
            cap = emb.max_length
            is_onnx = emb.runtime.startswith("onnxruntime")
            int8 = spec.precision == "int8"
            plain_kind = ("torch.onnx.export(dynamo=True) + onnxruntime" + (", quantize_dynamic int8" if int8 else
                                                                            " fp32")) if is_onnx else None
            for task in tasks:
                prep: dict[str, Callable | str] = {"artifact": runners.artifact_runner(emb, task)}
                try:
                    prep["torch"] = torch_error or runners.torch_runner(ref, task, torch_device)
                except RuntimeError as e:
                    prep["torch"] = str(e)
                plain_path = None
                if not is_onnx:
                    prep["plain"] = (f"n/a: the plain path bench compares is ONNX (torch.onnx.export + ONNX Runtime); "
                                     f"for {emb.runtime} see scripts/compare_llamacpp_converter.py")
                else:
                    try:
                        plain_path = export_plain(ref, task, work_dir / (task or "no-task") / "model.onnx",
                                                  max_length=cap, int8=int8)
                        session = runners.ort_session(plain_path, threads, device or "cpu", arena)
                        prep["plain"] = runners.plain_runner(session, ref.pooling.mode, ref.tokens.pad_id)
                    except PlainFailed as e:
                        prep["plain"] = f"plain export failed: {e}"
                    except Exception as e:  # ONNX Runtime refusing the plain graph is a plain-path finding too
                        prep["plain"] = f"plain graph does not load in onnxruntime: {_error(e)}"
                if memory and not memory_jobs:
                    base = {"threads": threads, "device": device, "task": task, "vocab": vocab,
                            "shapes": [s[1] for r in regimes for s in shapes_for(r, cap)], "name": name}
                    memory_jobs["artifact"] = {**base, "side": "artifact", "artifact": str(art)}
                    if callable(prep["torch"]):
                        memory_jobs["torch"] = {**base, "side": "torch", "reference": str(checkpoint),
                                                "rope_theta": options.get("rope_theta")}
                    if callable(prep["plain"]):
                        memory_jobs["plain"] = {**base, "side": "plain", "plain": str(plain_path),
                                                "pooling": ref.pooling.mode, "pad_id": ref.tokens.pad_id}
                modes = [(regime, regime, prep) for regime in regimes]
                if spec.multi_vector_dim and "short" in regimes:  # v4's multi-vector output, short shapes
                    modes.append(("multi", "short", {
                        "artifact": runners.artifact_runner(emb, task, vectors="multi"),
                        "torch": prep["torch"] if isinstance(prep["torch"], str)
                        else runners.torch_multi_runner(ref, task),
                        "plain": "n/a: the plain path has no multi-vector output"}))
                for regime, shape_regime, sides in modes:
                    for label, lengths, capped in shapes_for(shape_regime, cap):
                        progress.step(f"bench {name} {task or ''} {regime}: {label}".replace("  ", " "))
                        ids = runners.token_ids(lengths, vocab)
                        calls, errors = {}, {}
                        for side in SIDES:
                            p = sides[side]
                            if callable(p):
                                try:
                                    calls[side] = p(ids)
                                except Exception as e:
                                    errors[side] = {"error": _error(e)}
                            else:
                                errors[side] = {"error": p}
                        times = {**alternate(calls, seconds, MIN_RUNS[shape_regime]), **errors}
                        row = {"name": name, "task": task, "runtime": emb.runtime, "precision": spec.precision,
                               "graph": getattr(emb, "model_file", None), "plain_kind": plain_kind, "regime": regime,
                               "shape": label, "lengths": lengths, "capped": capped, "tokens": sum(lengths)}
                        for side in SIDES:
                            t = times[side]
                            if "median_s" in t:
                                t["texts_per_s"] = len(lengths) / t["median_s"]
                                t["tokens_per_s"] = sum(lengths) / t["median_s"]
                            row[side] = t
                        a = times["artifact"].get("median_s")
                        for side in ("torch", "plain"):
                            o = times[side].get("median_s")
                            row[f"vs_{side}"] = o / a if a and o else None
                        result["rows"].append(row)
            if hasattr(emb, "close"):
                emb.close()
        if image_arts:
            result["rows"] += bench_images(root, image_arts, ref, threads=threads, seconds=seconds,
                                           device=device)["rows"]
        if memory_jobs:
            first_job = next(iter(memory_jobs.values()))
            result["memory"] = {"artifact": first_job["name"], "task": first_job["task"],
                                "shapes": [shape_label(s) for s in first_job["shapes"]],
                                "sides": _memory(memory_jobs, threads)}
    finally:
        ref.close()
        if tmp is not None:
            tmp.cleanup()
    return result


IMAGE_BATCHES = (1, 8)  # images per call: latency and a small batch


def bench_images(root: Path, arts: list[Path], reference, *, threads: int, seconds: float,
                 device: str | None, batches: tuple[int, ...] = IMAGE_BATCHES) -> dict:
    """Images/s of image parts (jina-clip-v2's vision tower; v4's image graph, for the artifact's task or the
    first of kept ones) against the reference's image tower in torch, the
    sides alternating on the same built-in probe images (preprocessing included on both sides). There is no plain
    side: no published plain export of the tower exists to compare with. `reference` is a checkpoint path or an
    open reference. `batches`: images per call (full size: `(1,)` keeps an EVA02-L run to minutes)."""
    from embcc.core.probe_images import probe_images
    from embcc.reference import reference_for

    own = not hasattr(reference, "encode_images")
    ref = reference_for(Path(reference)) if own else reference
    images = probe_images(max(batches))
    rows = []
    described = ref.describe() if own else None  # before close(): a closed reference describes nothing
    try:
        for art in arts:
            emb = runners.open_side(art, threads=threads, device=device)
            name = str(art.relative_to(root)) if art != root else "."
            spec = emb.spec
            vl = (spec.image or {}).get("kind") == "qwen2-vl"  # v4: images through the decoder, per task
            task = (spec.task or spec.tasks[0].name) if vl else None
            kw = {"task": task} if vl else {}
            for n in batches:
                batch = images[:n]
                calls = {"artifact": lambda batch=batch, emb=emb, kw=kw: emb.encode_images(batch, **kw),
                         "torch": lambda batch=batch, kw=kw: ref.encode_images(batch, **kw)}
                times = alternate(calls, seconds, MIN_RUNS["short"])
                row = {"name": name, "task": task, "runtime": emb.runtime, "precision": emb.spec.precision,
                       "graph": getattr(emb, "model_file", None), "plain_kind": None, "regime": "images",
                       "shape": f"{n} image{'s' if n > 1 else ''}", "lengths": [], "capped": False, "tokens": 0,
                       "plain": {"error": "n/a: no plain image-tower export to compare with"}}
                for side in ("artifact", "torch"):
                    t = times[side]
                    if "median_s" in t:
                        t["texts_per_s"] = t["images_per_s"] = n / t["median_s"]
                    row[side] = t
                a, o = times["artifact"].get("median_s"), times["torch"].get("median_s")
                row["vs_torch"], row["vs_plain"] = (o / a if a and o else None), None
                rows.append(row)
            if hasattr(emb, "close"):
                emb.close()
    finally:
        if own:
            ref.close()
    return {**_header(root, getattr(ref, "path", reference), threads=threads, device=device, regimes=["images"],
                      seconds=seconds),
            "rows": rows, "skipped": [], "reference_model": described}


def _header(root: Path, reference, *, threads: int, device: str | None, regimes: list[str], seconds: float) -> dict:
    """What every bench result records about the run: paths, settings, machine and library versions."""
    import onnxruntime as ort

    return {"embcc_version": __version__, "artifact": str(root), "reference": str(reference), "threads": threads,
            "device": device or "default", "regimes": regimes, "seconds": seconds,
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "onnxruntime": ort.__version__, "omp_wait_policy": OMP_WAIT_POLICY}


def _cell(x: dict, key: str = "texts_per_s") -> str:
    if key not in x:
        return "failed"
    return f"{x[key]:.1f}" if x[key] >= 10 else f"{x[key]:.3f}"


def format_bench(r: dict) -> str:
    ref = r.get("reference_model") or {}
    lines = [f"embcc bench {r['artifact']}: {r['threads']} threads, device {r['device']}, {r['machine']} "
             f"({r['cpus']} CPUs); torch {r['torch']} (OMP_WAIT_POLICY {r.get('omp_wait_policy')}), onnxruntime "
             f"{r['onnxruntime']} (no spinning)",
             f"torch: the reference {ref.get('class', '?')} ({ref.get('library', '?')}), SDPA, inference mode, "
             f"{r.get('torch_dtype', 'float32')}; plain: torch.onnx.export(dynamo=True) of it + onnxruntime",
             "ratios: artifact texts/s over the other side's (>1: the artifact is faster); medians, sides alternating"]
    rows = r["rows"]
    aw = max([8] + [len(x["name"]) for x in rows])
    tw = max([4] + [len(str(x["task"] or "-")) for x in rows])
    sw = max([5] + [len(x["shape"]) for x in rows])
    head = (f"{'artifact':<{aw}} {'task':<{tw}} {'regime':<6} {'shape':<{sw}} {'artifact/s':>11} {'torch/s':>9} "
            f"{'plain/s':>9} {'vs torch':>9} {'vs plain':>9}")
    lines += [head, "-" * len(head)]
    notes: dict[str, int] = {}
    def ratio(x: dict, k: str) -> str:
        return f"{x[k]:.2f}x" if x.get(k) else "-"

    for x in rows:
        shape = x["shape"] + ("*" if x.get("capped") else "")
        lines.append(f"{x['name']:<{aw}} {str(x['task'] or '-'):<{tw}} {x['regime']:<6} {shape:<{sw}} "
                     f"{_cell(x['artifact']):>11} {_cell(x['torch']):>9} {_cell(x['plain']):>9} "
                     f"{ratio(x, 'vs_torch'):>9} {ratio(x, 'vs_plain'):>9}")
        for side in SIDES:
            if "error" in x[side]:
                notes.setdefault(f"{side}: {x[side]['error']}", len(notes))
    if any(x.get("capped") for x in rows):
        lines.append("* capped at the artifact's max length")
    lines += list(notes)
    m = r.get("memory")
    if m:
        parts = [f"{k} {v['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in v else f"{k} failed ({v.get('error')})"
                 for k, v in m["sides"].items()]
        lines.append(f"peak RSS (fresh process each, VmHWM; {m['artifact']} {m['task'] or ''} on "
                     f"{', '.join(m['shapes'])}): " + ", ".join(parts))
    if r.get("skipped"):
        lines.append(f"not benched (no text tower): {', '.join(r['skipped'])}")
    return "\n".join(lines)
