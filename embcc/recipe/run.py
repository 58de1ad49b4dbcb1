"""One artifact and the fan-out (phase 2): `run_job` builds (or finds up to date) and verifies one artifact;
the jobs run one after another in this process or as one Ray task each. Ray pickles `run_job` by its module path
(embcc.recipe.run.run_job), so its workers import it from here."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from embcc import __version__
from embcc.core import progress
from embcc.core.errors import EmbccError
from embcc.core.files import hash_tree, sha256_file
from embcc.export import get_format
from embcc.export.artifact import MANIFEST, PARITY
from embcc.export.options import recorded, resolve
from embcc.families import load
from embcc.recipe.schema import Job

LOCAL_OBJECT_STORE = 256 << 20  # --ray's own local Ray: only results (small dicts) go through the object store


# ---------------------------------------------------------------- one artifact


def _stale(where: Path, job: Job, bundle: Any) -> str | None:
    """None when the artifact at `where` was built from these inputs and its files are intact; else why not."""
    f = where / MANIFEST
    if not f.is_file():
        return f"no {MANIFEST}"
    try:
        manifest = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"{MANIFEST} is damaged"
    if manifest.get("source_sha256") != bundle.source_sha256:
        return "the checkpoint changed"
    if manifest.get("embcc_version") != __version__:
        return f"built by embcc {manifest.get('embcc_version')}"
    fmt = get_format(job.fmt)
    want = json.loads(json.dumps(recorded(bundle, fmt, resolve(bundle, fmt, job.options)), default=str))
    if manifest.get("options") != want:
        changed = sorted(k for k in set(want) | set(manifest.get("options") or {})
                         if want.get(k) != (manifest.get("options") or {}).get(k))
        return f"options changed ({', '.join(changed)})"
    for rel, sha in sorted((manifest.get("files") or {}).items()):
        p = where / rel
        if not p.is_file():
            return f"{rel} is missing"
        if sha256_file(p) != sha:
            return f"{rel} does not match its sha256"
    if not manifest.get("files"):
        return f"{MANIFEST} lists no files"
    return None


def _parity(where: Path, job: Job) -> dict | None:
    f = where / PARITY
    if not f.is_file():
        return None
    try:
        report = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if report.get("embcc_version") != __version__ or report.get("reference_sha256") != hash_tree(job.checkpoint_path):
        return None
    return report if isinstance(report.get("results"), list) else None


def _bar_text(report: dict, job: Job) -> str:
    bars = [r.get("bar") or {} for r in report.get("results", [])]
    bar = next((b for b in bars if b), {})
    parts = [f"{k}{'<=' if k == 'max_abs_diff' else '>='}{v:g}" for k, v in bar.items()]
    if job.min_cosine is not None:
        parts.append(f"min_cosine>={job.min_cosine:g} (recipe)")
    return ", ".join(parts) or "reported, not gated"


def _verdict(report: dict, job: Job) -> tuple[str, str]:
    rows = report.get("results", [])
    reasons = []
    for r in rows:
        if not r.get("passed"):
            label = " ".join(x for x in (r.get("artifact"), r.get("graph"), r.get("task")) if x and x != ".")
            reasons.append(f"{label or job.name}: missed {', '.join(r.get('failed') or ['the bar'])} "
                           f"(min cosine {r['min_cosine']:.7f}, max |d| {r['max_abs_diff']:.2e})")
        elif job.min_cosine is not None and r["min_cosine"] < job.min_cosine:
            label = " ".join(x for x in (r.get("artifact"), r.get("graph"), r.get("task")) if x and x != ".")
            reasons.append(f"{label or job.name}: min cosine {r['min_cosine']:.7f} below the recipe's "
                           f"min_cosine {job.min_cosine:g}")
    return ("FAIL", "; ".join(reasons)) if reasons or not rows else ("PASS", "")


def run_job(job: Job, out: Path) -> dict:
    """Build (or find up to date) and verify one artifact; never raises for the artifact's own problems."""
    from embcc.pipeline import export
    from embcc.verify import verify

    where = Path(out) / job.name
    start = time.monotonic()
    result: dict[str, Any] = {"artifact": job.name, "checkpoint": job.checkpoint, "format": job.fmt,
                              "precision": job.precision, "lora": job.lora, "task": job.task, "path": str(where),
                              "entry": job.entry, "min_cosine": None, "bar": "", "status": "ERROR", "reason": "",
                              "action": ""}
    try:
        bundle = load(job.checkpoint_path)
        stale = _stale(where, job, bundle) if where.exists() else "new"
        report = _parity(where, job) if stale is None else None
        if stale is None and report is not None:
            result["action"] = "up to date"
        else:
            if stale is None:
                result["action"] = f"verified ({PARITY} missing)"
            else:
                result["action"] = "built" if stale == "new" else f"rebuilt ({stale})"
                if where.exists():
                    shutil.rmtree(where)
                progress.step(f"exporting {job.name}")
                export(job.checkpoint_path, where, fmt=job.fmt, bundle=bundle, **job.options)
            progress.step(f"verifying {job.name}")
            report = verify(where, job.checkpoint_path)
        rows = report.get("results", [])
        result["min_cosine"] = min((r["min_cosine"] for r in rows), default=None)
        result["bar"] = _bar_text(report, job)
        result["status"], result["reason"] = _verdict(report, job)
        result["parity"] = str(where / PARITY)
    except EmbccError as e:
        result["reason"] = str(e)
    except Exception as e:  # a bug or an environment problem in one artifact: reported, the others still run
        result["reason"] = f"{type(e).__name__}: {' '.join(str(e).split())[:500]}"
    result["seconds"] = round(time.monotonic() - start, 3)
    return result


# ---------------------------------------------------------------- fan-out


def _run_local(jobs: list[Job], out: Path) -> list[dict]:
    results = []
    for i, job in enumerate(jobs, 1):
        progress.step(f"artifact {job.name}", i, len(jobs))
        results.append(run_job(job, out))
        _print_line(results[-1], i, len(jobs))
    return results


def _run_ray(jobs: list[Job], out: Path, address: str | None) -> list[dict]:
    try:
        import ray
    except ImportError as e:
        raise EmbccError("--ray needs Ray, which is not installed", "pip install 'embcc[ray]' (ray>=2.40)") from e
    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:  # local: workers inherit this environment, so they import this embcc
            root = str(Path(__file__).resolve().parents[2])  # the directory holding this embcc package
            saved = os.environ.get("PYTHONPATH")
            os.environ["PYTHONPATH"] = os.pathsep.join(x for x in (root, saved) if x)
            try:
                ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, _node_ip_address="127.0.0.1",
                         object_store_memory=LOCAL_OBJECT_STORE, log_to_driver=False)
            finally:
                if saved is None:
                    os.environ.pop("PYTHONPATH", None)
                else:
                    os.environ["PYTHONPATH"] = saved
    try:
        have = ray.cluster_resources()
        remote = ray.remote(run_job)
        pending: dict[Any, int] = {}
        results: list[dict | None] = [None] * len(jobs)
        for i, job in enumerate(jobs):
            short = [f"{job.num_cpus:g} CPUs > {have.get('CPU', 0):g}"] if job.num_cpus > have.get("CPU", 0) else []
            if job.memory > have.get("memory", 0):
                short.append(f"memory {job.memory:,} > {int(have.get('memory', 0)):,} bytes")
            if short:
                results[i] = {**_error_row(job, out), "reason": f"the Ray cluster cannot run it ({'; '.join(short)}); "
                              "lower num_cpus / memory in the recipe or add nodes"}
                print(f"{job.name}: not run: {results[i]['reason']}", flush=True)
                continue
            ref = remote.options(num_cpus=job.num_cpus, memory=job.memory, max_retries=0,
                                 name=f"embcc:{job.name}").remote(job, out)
            pending[ref] = i
        done = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ready[0])
            try:
                results[i] = ray.get(ready[0])
            except Exception as e:  # the worker died (memory, a signal) or could not import embcc
                results[i] = {**_error_row(jobs[i], out), "reason": f"Ray task failed: {' '.join(str(e).split())[:500]}"}
            done += 1
            _print_line(results[i], done, len(jobs))
        return [r for r in results if r is not None]
    finally:
        if started:
            ray.shutdown()


def _error_row(job: Job, out: Path) -> dict:
    return {"artifact": job.name, "checkpoint": job.checkpoint, "format": job.fmt, "precision": job.precision,
            "lora": job.lora, "task": job.task, "path": str(Path(out) / job.name), "entry": job.entry,
            "min_cosine": None, "bar": "", "status": "ERROR", "reason": "", "action": "", "seconds": 0.0}


def _print_line(r: dict, i: int, n: int) -> None:
    cos = f", min cos {r['min_cosine']:.7f}" if r.get("min_cosine") is not None else ""
    why = f": {r['reason']}" if r.get("reason") else ""
    print(f"[{i}/{n}] {r['artifact']}: {r.get('action') or 'not built'}, {r['status']}{cos}{why}", flush=True)
