"""The shape of the code (docs/architecture.md): each module's embcc imports (top-level and inside functions)
go only to its own layer or below, families and runtimes never import each other, the reference imports
nothing but the core, and there is no import circle anywhere."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "embcc"
LAYERS = {  # top-level package or module -> layer (lowest first)
    "core": 0, "errors": 0, "probes": 0,
    "families": 1, "runtimes": 1, "reference": 1,
    "fixtures": 2, "export": 2, "calibration": 2,
    "pipeline": 3, "verify": 3, "report": 3, "bench": 3, "build": 3, "package": 3, "recipe": 3,
    "cli": 4,
}
FORBIDDEN = [("families", "runtimes"), ("runtimes", "families"), ("families", "fixtures"), ("export", "fixtures"),
             ("calibration", "export"), ("calibration", "fixtures")]  # (room, room it must not import)


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in ROOT.rglob("*.py")}
    out: dict[str, set[str]] = {}
    for name, path in paths.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("embcc"):
                subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in paths]
                found.update(subs)  # `from pkg import submodule` imports the submodule (and runs pkg's __init__)
                if len(subs) < len(node.names):
                    found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("embcc"))
        out[name] = found
    return {m: {i for i in deps if i in paths and i != m} for m, deps in out.items()}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "embcc"


def test_every_module_has_a_layer():
    rooms = {_room(m) for m in _imports()} - {"embcc", "__main__"}
    assert rooms <= set(LAYERS), rooms - set(LAYERS)


def test_no_import_goes_up_a_layer():
    bad = []
    for module, deps in _imports().items():
        if _room(module) not in LAYERS:
            continue
        for dep in deps:
            if _room(dep) in LAYERS and LAYERS[_room(dep)] > LAYERS[_room(module)]:
                bad.append(f"{module} -> {dep}")
    assert not bad, bad


def test_rooms_that_stay_apart():
    bad = [f"{m} -> {d}" for m, deps in _imports().items() for d in deps
           for a, b in FORBIDDEN if _room(m) == a and _room(d) == b]
    assert not bad, bad
    ref = {d for m, deps in _imports().items() if _room(m) == "reference" for d in deps}
    assert {_room(d) for d in ref} <= {"core", "reference"}, ref


def test_no_import_circle():
    graph = _imports()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, circles
