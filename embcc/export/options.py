"""Export options, checked once, here, with one message per mistake; the rest of embcc trusts the Plan.

Common options: task, lora, rope_theta, max_length, role. Everything else belongs to a format (its `options`);
an option of another format is refused naming the format it belongs to. Messages name options as the caller
wrote them: CLI flags from the command line (`cli=True`), keyword arguments from Python.
"""

from __future__ import annotations

from typing import Any

from embcc.core.bundle import Bundle
from embcc.core.errors import EmbccError
from embcc.export.base import Format, Option, Plan

LORA_MODES = ("merge", "keep")
COMMON = (
    Option("task", "--task", "task name, or 'all' (default: every task; merge mode)"),
    Option("lora", "--lora", "merge: one artifact per task with its adapter folded in (default); keep: all adapters, "
           "chosen per call", LORA_MODES),
    Option("rope_theta", "--rope-theta", "RoPE base (default: the checkpoint's inference value)", type=float),
    Option("max_length", "--max-length", "truncation length recorded in the artifact", type=int),
    Option("role", "--role", "input role recorded as the artifact's default (v5: query | document)",
           ("query", "document")),
    Option("part", "--part", "parts of a multi-part model, comma-separated (jina-clip-v2: text, vision, combined); "
           "default: every part the format can hold"),
)


def _name(option: Option, cli: bool) -> str:
    return option.flag if cli else option.name


def resolve(bundle: Bundle, fmt: Format, given: dict[str, Any], *, cli: bool = False,
            formats: dict[str, Format] | None = None) -> Plan:
    """Check `given` (only the options the caller set) for `bundle` and format `fmt`; returns the Plan."""
    from embcc.export import FORMATS

    formats = formats or FORMATS
    common = {o.name: o for o in COMMON}
    own = {o.name: o for o in fmt.options}
    everyone: dict[str, list[str]] = {}
    flags: dict[str, Option] = {}
    for name, f in formats.items():
        for o in f.options:
            everyone.setdefault(o.name, []).append(name)
            flags[o.name] = o
    for key in given:
        if key in common or key in own:
            continue
        if key in everyone:
            owners = everyone[key]
            flag = _name(flags[key], cli)
            if cli:
                raise EmbccError(f"{flag} is an option of --format {' / '.join(owners)}, not {fmt.name}",
                                 f"add --format {owners[0]}, or leave out {flag}")
            raise EmbccError(f"{flag} is an option of fmt={' / '.join(repr(o) for o in owners)}, not {fmt.name!r}",
                             f"pass fmt={owners[0]!r}, or leave out {flag}")
        raise EmbccError(f"unknown export option {key!r}", f"choose from: {', '.join([*common, *own])}")
    fmt.supports(bundle)
    spec = bundle.spec
    task, lora = given.get("task"), given.get("lora")
    n = {k: _name(o, cli) for k, o in common.items()}
    if lora is not None and lora not in LORA_MODES:
        raise EmbccError(f"unknown {n['lora']} mode {lora!r}", "choose merge or keep")
    names = [t.name for t in spec.tasks]
    if bundle.lora is None:
        if lora is not None:
            raise EmbccError(f"{spec.family} has no task adapters, so {n['lora']} does not apply",
                             f"leave out {n['lora']}")
        if not names and task is not None:
            raise EmbccError(f"{spec.family} has no tasks, so {n['task']} does not apply", f"leave out {n['task']}")
    max_length = given.get("max_length")
    if max_length is not None and not 1 < max_length <= spec.max_length:
        raise EmbccError(f"{n['max_length']} {max_length} is outside 2..{spec.max_length} for {spec.family}",
                         f"pass at most {spec.max_length}")
    theta = given.get("rope_theta")
    if theta is not None and spec.position != "rope":
        raise EmbccError(f"{spec.family} uses {spec.position} positions, so {n['rope_theta']} does not apply",
                         f"leave out {n['rope_theta']}")
    if theta is not None and not theta > 0:
        raise EmbccError(f"{n['rope_theta']} must be positive, got {theta}", f"pass e.g. {n['rope_theta']} 20000")
    mode = None if bundle.lora is None else (lora or "merge")
    if mode == "keep" and not fmt.keep_takes_tasks and task not in (None, "all"):
        raise EmbccError(f"{n['lora']} keep puts every task in one artifact, so {n['task']} does not apply",
                         f"leave out {n['task']}, or use {n['lora']} merge")
    tasks = _tasks(bundle, task, n["task"])
    role = given.get("role")
    if role is not None:
        _check_role(bundle, role, tasks, keep=mode == "keep" and not fmt.keep_takes_tasks, cli=cli)
    parts = _parts(bundle, fmt, given.get("part"), n["part"], cli)
    values = fmt.check(bundle, {k: v for k, v in given.items() if k in own}, cli=cli)
    if mode == "merge":
        merged: list[tuple[str, str | None]] = [(t, t) for t in tasks]
    else:  # kept adapters, no adapters, or a pre-merged checkpoint (one task, named by --task)
        merged = [("", tasks[0] if mode is None and spec.task is not None else None)]
    units = [("/".join(x for x in (sub, part if len(parts) > 1 else "") if x), task, part)
             for sub, task in merged for part in parts]
    return Plan(fmt.name, mode, tasks, units, theta, max_length, role, values)


def _parts(bundle: Bundle, fmt: Format, asked: str | None, flag: str, cli: bool = False) -> list[str]:
    family, held = bundle.family.parts(bundle), fmt.parts(bundle)
    if asked is None:
        return [p for p in family if p in held]
    parts = [p.strip() for p in str(asked).split(",") if p.strip()]
    for p in parts:
        if p not in family:
            raise EmbccError(f"{bundle.spec.family} has no {p!r} part", f"choose {flag} from: {', '.join(family)}")
        if p not in held:
            raise EmbccError(*fmt.part_refusal(bundle, p, cli))
    if not parts:
        raise EmbccError(f"{flag} names no part", f"choose from: {', '.join(family)}")
    return list(dict.fromkeys(parts))


def _tasks(bundle: Bundle, task: str | None, flag: str) -> list[str]:
    """--task NAME|all -> the task names, checked against the family."""
    spec = bundle.spec
    names = [t.name for t in spec.tasks]
    if not names:
        return []
    if bundle.lora is None and spec.task is not None:  # pre-merged: one task, the one --task names
        if task == "all":
            raise EmbccError(f"this checkpoint has one task merged in, so {flag} all does not apply",
                             f"pass {flag} NAME (one of: {', '.join(names)}; default {spec.task})")
        task = task or spec.task
    if task is None or task == "all":
        return names
    if task not in names:
        raise EmbccError(f"unknown task {task!r} for {spec.family}", f"choose one of: {', '.join(names)}, all")
    return [task]


def _check_role(bundle: Bundle, role: str, tasks: list[str], *, keep: bool, cli: bool) -> None:
    spec = bundle.spec
    flag = "--role" if cli else "role"
    if not any(t.roles for t in spec.tasks):
        raise EmbccError(f"{spec.family} inputs have no roles, but {flag} {role!r} was given", f"leave out {flag}")
    for t in spec.tasks if keep else [t for t in spec.tasks if t.name in tasks]:
        if role not in (t.roles or {}):
            if keep:  # kept adapters: the role is every task's default
                raise EmbccError(f"the artifact keeps every task, and task {t.name!r} has no {role!r} role",
                                 f"leave out {flag} (pass role per encode call), or export one task with lora merge")
            raise EmbccError(f"task {t.name!r} has no {role!r} role",
                             f"choose one of: {', '.join(t.roles or {})} (or another task)")


def recorded(bundle: Bundle, fmt: Format, plan: Plan) -> dict[str, Any]:
    """manifest.json's `options`: what was asked for, after checking."""
    out: dict[str, Any] = {"format": plan.format, "lora": plan.lora, "tasks": plan.tasks,
                           "rope_theta": plan.rope_theta, "max_length": plan.max_length}
    parts = sorted({u[2] for u in plan.units})
    if parts != ["text"]:
        out["parts"] = parts
    out.update(fmt.recorded(plan))
    if plan.role is not None:
        out["role"] = plan.role
    out.update(family=bundle.spec.family, layout=bundle.layout)
    return out


def option_values(namespace: object) -> dict[str, Any]:
    """The export options set on an argparse namespace (every option the formats and COMMON declare)."""
    from embcc.export import FORMATS

    names = {o.name for o in COMMON} | {o.name for f in FORMATS.values() for o in f.options}
    return {k: v for k, v in vars(namespace).items() if k in names and v is not None}
