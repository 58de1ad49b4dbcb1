"""`embcc build RECIPE.toml`: a matrix of artifacts (checkpoints x formats x precisions x LoRA modes x tasks), each
exported and verified, with one summary (table, summary.json, summary.junit.xml). Schema: docs/recipe.md.

Three phases:
1. parse and check the recipe (stdlib tomllib) without touching the disk: unknown keys, formats, precisions,
   option types, missing checkpoints; then write the fixture checkpoints and check every artifact's export
   options against its checkpoint (export.options.resolve). Any mistake: one EmbccError line (CLI exit 2) and
   nothing this run wrote is left on disk.
2. run every artifact, in this process or as one Ray task each (`ray=True` / an address): an artifact whose
   directory exists with a manifest that matches the entry (checkpoint sha256, recorded options, embcc version,
   every file's sha256) and a parity.json for that checkpoint is "up to date" and not rebuilt; one whose files or
   inputs differ is removed and rebuilt. Half-written exports never appear at the artifact's path (staged_dir).
3. summary: PASS / FAIL (a parity bar missed) / ERROR (export or verify raised), exit 1 unless all PASS.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import time
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from embcc import __version__
from embcc.core import progress
from embcc.core.errors import EmbccError
from embcc.core.files import hash_tree, sha256_file, write_atomic
from embcc.export import FORMATS, get_format
from embcc.export.artifact import MANIFEST, PARITY
from embcc.export.gguf_tensors import GGUF_TYPES
from embcc.export.options import COMMON, LORA_MODES, recorded, resolve
from embcc.families import load
from embcc.fixtures import fixture_names, write_fixture

SUMMARY_JSON = "summary.json"
SUMMARY_JUNIT = "summary.junit.xml"
FIXTURES_DIR = "fixtures"
DEFAULT_OUT = "embcc-recipe"
DEFAULT_NUM_CPUS = 1.0
DEFAULT_MEMORY = 2 << 30  # bytes a Ray task declares unless the entry says otherwise
LOCAL_OBJECT_STORE = 256 << 20  # --ray's own local Ray: only results (small dicts) go through the object store

TOP_KEYS = ("out", "checkpoints", "defaults", "build")
CHECKPOINT_KEYS = ("path", "fixture", "size", "layout", "seed")
MATRIX_KEYS = ("checkpoints", "formats", "precisions", "gguf_types", "lora", "tasks")
OWN_KEYS = ("min_cosine", "num_cpus", "memory")  # not export options: a tighter bar, Ray resources
# export options a recipe may set per entry (the matrix keys above cover task, lora and the precisions)
OPTION_KEYS = tuple(dict.fromkeys(
    [o.name for o in COMMON if o.name not in ("task", "lora")]
    + [o.name for f in FORMATS.values() for o in f.options if o.name not in ("precision", "gguf_type")]))
ENTRY_KEYS = (*MATRIX_KEYS, *OPTION_KEYS, *OWN_KEYS)
PATH_OPTIONS = ("calibration", "cache_dir")  # relative to the recipe file


def _precision_option(fmt: str) -> str:
    return "gguf_type" if any(o.name == "gguf_type" for o in FORMATS[fmt].options) else "precision"


def _precision_choices(fmt: str) -> tuple[str, ...]:
    name = _precision_option(fmt)
    if name == "gguf_type":
        return GGUF_TYPES
    return next(o.choices for o in FORMATS[fmt].options if o.name == name) or ()


def _matrix_key(fmt: str) -> str:
    return "gguf_types" if _precision_option(fmt) == "gguf_type" else "precisions"


@dataclass
class Checkpoint:
    name: str
    path: Path
    fixture: dict | None = None  # write_fixture's arguments when the checkpoint is a built-in fixture


@dataclass
class Job:
    """One artifact of the matrix: everything a worker (this process or a Ray task) needs to build it."""

    name: str  # its directory under the recipe's out, e.g. v3/onnx-fp32-merge-retrieval.query
    entry: int  # 1-based index of the [[build]] entry it came from
    checkpoint: str
    checkpoint_path: Path
    fmt: str
    precision: str
    lora: str | None
    task: str | None
    options: dict[str, Any]  # export keyword options (task, lora, the precision option and the entry's others)
    min_cosine: float | None = None
    num_cpus: float = DEFAULT_NUM_CPUS
    memory: int = DEFAULT_MEMORY


@dataclass
class Recipe:
    path: Path
    out: Path
    checkpoints: dict[str, Checkpoint]
    jobs: list[Job] = field(default_factory=list)


# ---------------------------------------------------------------- parsing


def _err(where: str, problem: str, fix: str) -> EmbccError:
    return EmbccError(f"{where}: {problem}", fix)


def _unknown(where: str, key: str, allowed: tuple[str, ...]) -> EmbccError:
    close = difflib.get_close_matches(key, allowed, n=1)
    fix = f"did you mean {close[0]!r}?" if close else f"choose from: {', '.join(allowed)}"
    return _err(where, f"unknown key {key!r}", fix + " (docs/recipe.md)")


def _strings(where: str, key: str, value: Any) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        raise _err(where, f"{key} must be a name or a non-empty list of names, got {value!r}",
                   f'write e.g. {key} = ["{key[:-1] if key.endswith("s") else key}-name"]')
    return list(dict.fromkeys(values))


def parse_memory(value: Any, where: str = "memory") -> int:
    """Bytes from an int or a string such as "2GiB", "512MB", "1.5G"."""
    units = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30,
             "ti": 1 << 40}
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]i?)?b?\s*", str(value).lower()) if isinstance(value, str) else None
    if m is None or float(m.group(1)) <= 0:
        raise _err(where, f"memory {value!r} is not a size", 'write bytes or e.g. memory = "2GiB"')
    return int(float(m.group(1)) * units[m.group(2) or ""])


def _option_value(where: str, key: str, value: Any, base: Path) -> Any:
    option = next((o for o in COMMON if o.name == key), None) or next(
        o for f in FORMATS.values() for o in f.options if o.name == key)
    if key in PATH_OPTIONS:
        if not isinstance(value, str):
            raise _err(where, f"{key} must be a path string, got {value!r}", f'write {key} = "path/to/file"')
        return (base / value).resolve()
    if option.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif option.type is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise _err(where, f"{key} must be {option.type.__name__}, got {value!r}", f"see `embcc export --help`: {option.help}")
    if option.choices and value not in option.choices:
        raise _err(where, f"{key} {value!r} is not one of {', '.join(option.choices)}", f"choose one of: {', '.join(option.choices)}")
    return value


def parse(recipe_path: str | Path, out: str | Path | None = None) -> Recipe:
    """Read and check a recipe (nothing is written). `out` overrides the recipe's own `out`."""
    path = Path(recipe_path)
    name = path.name
    if not path.is_file():
        raise EmbccError(f"recipe {path} does not exist", "pass a RECIPE.toml file or a checkpoint directory")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise EmbccError(f"{name} is not valid TOML ({e})", "fix the syntax (https://toml.io)") from e
    base = path.resolve().parent
    for key in data:
        if key not in TOP_KEYS:
            raise _unknown(name, key, TOP_KEYS)
    out_value = data.get("out", DEFAULT_OUT)
    if not isinstance(out_value, str) or not out_value:
        raise _err(name, f"out must be a directory path, got {out_value!r}", 'write out = "build"')
    out_dir = Path(out) if out is not None else base / out_value

    tables = data.get("checkpoints")
    if not isinstance(tables, dict) or not tables:
        raise _err(name, "no [checkpoints.NAME] table", 'add e.g. [checkpoints.v3] with fixture = "jina-v3" or path = "..."')
    checkpoints: dict[str, Checkpoint] = {}
    for ck, table in tables.items():
        where = f"{name} [checkpoints.{ck}]"
        if not isinstance(table, dict):
            raise _err(where, "must be a table", 'write [checkpoints.NAME] with path = "..." or fixture = "..."')
        for key in table:
            if key not in CHECKPOINT_KEYS:
                raise _unknown(where, key, CHECKPOINT_KEYS)
        if ("path" in table) == ("fixture" in table):
            raise _err(where, "needs exactly one of path and fixture",
                       f'write path = "dir/of/checkpoint" or fixture = "{fixture_names()[0]}"')
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", ck):
            raise _err(where, f"checkpoint name {ck!r} is not a plain name", "use letters, digits, '.', '_' and '-'")
        if "path" in table:
            extra = [k for k in ("size", "layout", "seed") if k in table]
            if extra:
                raise _err(where, f"{extra[0]} applies to fixture checkpoints only", f"leave out {extra[0]}")
            if not isinstance(table["path"], str):
                raise _err(where, f"path must be a string, got {table['path']!r}", 'write path = "dir/of/checkpoint"')
            p = (base / table["path"]).resolve()
            if not p.is_dir():
                raise _err(where, f"checkpoint {p} does not exist (path = {table['path']!r})",
                           "fix path (relative to the recipe file), or use a built-in fixture = \"jina-v3\"")
            checkpoints[ck] = Checkpoint(ck, p)
        else:
            fx = table["fixture"]
            if fx not in fixture_names():
                raise _err(where, f"unknown fixture {fx!r}", f"choose one of: {', '.join(fixture_names())}")
            args = {"name": fx, "size": table.get("size", "tiny"), "layout": table.get("layout"),
                    "seed": table.get("seed", 0)}
            if not isinstance(args["seed"], int) or isinstance(args["seed"], bool):
                raise _err(where, f"seed must be an integer, got {args['seed']!r}", "write seed = 0")
            checkpoints[ck] = Checkpoint(ck, (out_dir / FIXTURES_DIR / ck).resolve(), args)

    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise _err(name, "[defaults] must be a table", "write [defaults] with entry keys (docs/recipe.md)")
    for key in defaults:
        if key not in ENTRY_KEYS:
            raise _unknown(f"{name} [defaults]", key, ENTRY_KEYS)
    entries = data.get("build")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise _err(name, "no [[build]] entry", 'add [[build]] with checkpoints = ["NAME"] and formats = ["onnx"]')
    recipe = Recipe(path.resolve(), out_dir.resolve(), checkpoints)
    for i, raw in enumerate(entries, 1):
        where = f"{name} [[build]] #{i}"
        for key in raw:
            if key not in ENTRY_KEYS:
                raise _unknown(where, key, ENTRY_KEYS)
        recipe.jobs += _expand(where, i, {**defaults, **raw}, checkpoints, base)
    seen: dict[str, int] = {}
    for job in recipe.jobs:
        if job.name in seen:
            raise _err(f"{name} [[build]] #{job.entry}", f"artifact {job.name} is also built by entry #{seen[job.name]}",
                       "remove the duplicate from one of the entries")
        seen[job.name] = job.entry
    return recipe


def _expand(where: str, index: int, entry: dict, checkpoints: dict[str, Checkpoint], base: Path) -> list[Job]:
    if "checkpoints" not in entry:
        raise _err(where, "names no checkpoints", f"add checkpoints = [\"{next(iter(checkpoints))}\"]")
    cks = _strings(where, "checkpoints", entry["checkpoints"])
    for ck in cks:
        if ck not in checkpoints:
            raise _err(where, f"unknown checkpoint {ck!r}", f"define [checkpoints.{ck}] or choose from: {', '.join(checkpoints)}")
    formats = _strings(where, "formats", entry.get("formats", ["onnx"]))
    for fmt in formats:
        if fmt not in FORMATS:
            raise _err(where, f"unknown format {fmt!r} in formats", f"choose from: {', '.join(FORMATS)}")
    for key in ("precisions", "gguf_types"):
        if key in entry and not any(_matrix_key(f) == key for f in formats):
            users = [f for f in FORMATS if _matrix_key(f) == key]
            raise _err(where, f"{key} applies to formats {', '.join(users)}, which this entry does not build",
                       f"add one of them to formats, or leave out {key}")
    loras: list[str | None] = [None]
    if "lora" in entry:
        loras = list(_strings(where, "lora", entry["lora"]))
        for mode in loras:
            if mode not in LORA_MODES:
                raise _err(where, f"lora {mode!r} is not one of {', '.join(LORA_MODES)}", 'write lora = "merge" or ["merge", "keep"]')
    tasks: list[str | None] = list(_strings(where, "tasks", entry["tasks"])) if "tasks" in entry else [None]
    options = {k: _option_value(where, k, v, base) for k, v in entry.items() if k in OPTION_KEYS}
    min_cosine = entry.get("min_cosine")
    if min_cosine is not None and (isinstance(min_cosine, bool) or not isinstance(min_cosine, int | float)):
        raise _err(where, f"min_cosine must be a number, got {min_cosine!r}", "write e.g. min_cosine = 0.99999")
    num_cpus = entry.get("num_cpus", DEFAULT_NUM_CPUS)
    if isinstance(num_cpus, bool) or not isinstance(num_cpus, int | float) or num_cpus <= 0:
        raise _err(where, f"num_cpus must be a positive number, got {num_cpus!r}", "write e.g. num_cpus = 1")
    memory = parse_memory(entry.get("memory", DEFAULT_MEMORY), where)
    jobs = []
    for ck in cks:
        for fmt in formats:
            key = _matrix_key(fmt)
            precisions = _strings(where, key, entry[key]) if key in entry else [_precision_choices(fmt)[0]]
            for prec in precisions:
                if prec not in _precision_choices(fmt):
                    raise _err(where, f"{key}: {prec!r} is not a precision of format {fmt}",
                               f"choose from: {', '.join(_precision_choices(fmt))}")
                for lora in loras:
                    for task in tasks:
                        name = "-".join(x for x in (fmt, prec, lora, task) if x)
                        given = {**options, _precision_option(fmt): prec, "lora": lora, "task": task}
                        jobs.append(Job(f"{ck}/{name}", index, ck, checkpoints[ck].path, fmt, prec, lora, task,
                                        {k: v for k, v in given.items() if v is not None},
                                        None if min_cosine is None else float(min_cosine), float(num_cpus), memory))
    return jobs


def prepare(recipe: Recipe) -> None:
    """Write the fixture checkpoints, then check every artifact's options against its checkpoint. On any error
    what this call wrote is removed (the out directory too, if this call created it)."""
    created_out = not recipe.out.exists()
    written: list[Path] = []
    try:
        for ck in recipe.checkpoints.values():
            if ck.fixture is None:
                continue
            record = ck.path.parent / f"{ck.name}.fixture.json"
            want = json.dumps(ck.fixture, sort_keys=True)
            if ck.path.is_dir() and record.is_file() and record.read_text() == want:
                continue  # written by an earlier run of this recipe, with the same arguments
            if ck.path.exists():
                shutil.rmtree(ck.path)
            written += [ck.path, record]
            progress.step(f"writing fixture {ck.fixture['name']} for checkpoint {ck.name}")
            write_fixture(ck.fixture["name"], ck.path, size=ck.fixture["size"], layout=ck.fixture["layout"],
                          seed=ck.fixture["seed"])
            record.write_text(want)
        bundles = {}
        for job in recipe.jobs:
            if job.checkpoint not in bundles:
                bundles[job.checkpoint] = load(job.checkpoint_path)
            try:
                resolve(bundles[job.checkpoint], get_format(job.fmt), job.options)
            except EmbccError as e:
                raise EmbccError(f"{recipe.path.name} [[build]] #{job.entry} ({job.name}): {e}") from e
    except BaseException:
        if created_out:
            shutil.rmtree(recipe.out, ignore_errors=True)
        else:
            for p in written:
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                elif p.exists():
                    p.unlink()
        raise


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
            root = str(Path(__file__).resolve().parents[1])
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


# ---------------------------------------------------------------- summary


def format_summary(results: list[dict]) -> str:
    cols = [("artifact", lambda r: r["artifact"]), ("format", lambda r: r["format"]),
            ("precision", lambda r: r["precision"]), ("task", lambda r: r["task"] or "-"),
            ("min cosine", lambda r: "-" if r["min_cosine"] is None else f"{r['min_cosine']:.7f}"),
            ("bar", lambda r: r["bar"] or "-"), ("result", lambda r: r["status"])]
    table = [[c[0] for c in cols]] + [[c[1](r) for c in cols] for r in results]
    widths = [max(len(row[j]) for row in table) for j in range(len(cols))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "-" * len(lines[0]))
    counts = {s: sum(r["status"] == s for r in results) for s in ("PASS", "FAIL", "ERROR")}
    fresh = sum(r.get("action") == "up to date" for r in results)
    lines.append(f"{len(results)} artifact(s): {counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['ERROR']} ERROR"
                 f" ({fresh} up to date)")
    for r in results:
        if r["status"] != "PASS":
            lines.append(f"{r['status']} {r['artifact']}: {r['reason']}")
    return "\n".join(lines)


def junit_xml(results: list[dict], name: str) -> str:
    suite = ET.Element("testsuite", name=name, tests=str(len(results)),
                       failures=str(sum(r["status"] == "FAIL" for r in results)),
                       errors=str(sum(r["status"] == "ERROR" for r in results)), skipped="0",
                       time=f"{sum(r.get('seconds', 0.0) for r in results):.3f}")
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=f"embcc.{r['checkpoint']}", name=r["artifact"],
                             time=f"{r.get('seconds', 0.0):.3f}")
        if r["status"] == "FAIL":
            ET.SubElement(case, "failure", message=r["reason"], type="parity").text = r["reason"]
        elif r["status"] == "ERROR":
            ET.SubElement(case, "error", message=r["reason"], type="error").text = r["reason"]
        cos = "-" if r["min_cosine"] is None else f"{r['min_cosine']:.7f}"
        ET.SubElement(case, "system-out").text = (f"{r.get('action') or 'not built'}; format {r['format']}, precision "
                                                  f"{r['precision']}, task {r['task'] or '-'}, min cosine {cos}, bar "
                                                  f"{r['bar'] or '-'}")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def run_recipe(recipe_path: str | Path, *, out: str | Path | None = None, ray: bool = False,
               ray_address: str | None = None) -> dict:
    """Build, verify and summarise every artifact of the recipe. Returns the summary (also written as
    summary.json and summary.junit.xml under the out directory); `summary["passed"]` is the verdict. Raises
    EmbccError, leaving nothing on disk, for a recipe mistake."""
    recipe = parse(recipe_path, out)
    prepare(recipe)
    print(f"recipe {recipe.path.name}: {len(recipe.jobs)} artifact(s) under {recipe.out}", flush=True)
    if ray or ray_address:
        results = _run_ray(recipe.jobs, recipe.out, ray_address)
    else:
        results = _run_local(recipe.jobs, recipe.out)
    summary = {"embcc_version": __version__, "recipe": str(recipe.path), "out": str(recipe.out),
               "runner": "ray" if (ray or ray_address) else "local",
               "passed": all(r["status"] == "PASS" for r in results),
               "counts": {s: sum(r["status"] == s for r in results) for s in ("PASS", "FAIL", "ERROR")},
               "artifacts": results, "jobs": [_job_record(j) for j in recipe.jobs]}
    recipe.out.mkdir(parents=True, exist_ok=True)
    write_atomic(recipe.out / SUMMARY_JSON, json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    write_atomic(recipe.out / SUMMARY_JUNIT, junit_xml(results, f"embcc build {recipe.path.name}"))
    print(format_summary(results))
    print(f"wrote {recipe.out / SUMMARY_JSON} and {recipe.out / SUMMARY_JUNIT}")
    return summary


def _job_record(job: Job) -> dict:
    record = asdict(job)
    record["checkpoint_path"] = str(job.checkpoint_path)
    record["options"] = {k: str(v) if isinstance(v, Path) else v for k, v in job.options.items()}
    return record
