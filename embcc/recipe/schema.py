"""A recipe's schema (docs/recipe.md): read and check a RECIPE.toml into its checkpoints and jobs (phase 1:
parse without touching the disk, then `prepare` writes the fixture checkpoints and checks every artifact's export
options against its checkpoint)."""

from __future__ import annotations

import difflib
import json
import re
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embcc.core import progress
from embcc.core.errors import EmbccError
from embcc.export import FORMATS, get_format
from embcc.export.gguf_tensors import GGUF_TYPES
from embcc.export.options import COMMON, LORA_MODES, resolve
from embcc.families import load
from embcc.fixtures import fixture_names, write_fixture

FIXTURES_DIR = "fixtures"
DEFAULT_OUT = "embcc-recipe"
DEFAULT_NUM_CPUS = 1.0
DEFAULT_MEMORY = 2 << 30  # bytes a Ray task declares unless the entry says otherwise

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
