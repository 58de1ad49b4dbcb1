"""The summary (phase 3): the table, summary.json and summary.junit.xml, and `run_recipe`, the entry that
parses, prepares, runs every artifact and writes them."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path

from embcc import __version__
from embcc.core.files import write_atomic
from embcc.recipe.run import _run_local, _run_ray
from embcc.recipe.schema import Job, parse, prepare

SUMMARY_JSON = "summary.json"
SUMMARY_JUNIT = "summary.junit.xml"


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
