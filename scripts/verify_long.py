"""`embcc verify` at a family's whole context on full-size checkpoints, and what it costs.

    .venv/bin/python scripts/verify_long.py [--work DIR] [--models jina-v5-nano,jina-v5-small] [--task retrieval]

For each model: a full-size random-weight fixture in the published layout (embcc's writer; random weights cost
the same time as real ones), one task exported merged at fp32 (`embcc export`), then `embcc verify` as a user runs
it: the fused model.onnx probed to the family's full context (v5: 32,768 tokens; the longest probe text is
54,751 tokens under the v5 tokenizers, so one probe is cut at the limit), model.portable.onnx to 8,192 or what memory allows. Export and
verify each run in their own child; their wall time and peak RSS (the child's own, from wait4) are recorded, and
verify's per-row seconds (reference and artifact encode calls) come from its parity.json.

Writes DIR/verify_long.json. tests/test_verify_long.py (marker `heavy`) runs it on v5-nano.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EMBCC = [sys.executable, "-m", "embcc.cli"]


def child(args: list[str], log: Path) -> dict:
    """Run `args`, stderr/stdout to `log`; its wall seconds, peak RSS (GiB) and exit code."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": round(time.perf_counter() - start, 1), "peak_gib": round(usage.ru_maxrss / 2**20, 2),
            "rc": proc.returncode}


def run_model(work: Path, model: str, task: str) -> dict:
    ckpt, art = work / "ckpt" / model, work / "art" / f"{model}-{task}"
    work.joinpath("logs").mkdir(parents=True, exist_ok=True)
    out: dict = {"model": model, "task": task}
    if not ckpt.exists():
        out["fixture"] = child([*EMBCC, "fixture", model, str(ckpt), "--size", "full"], work / "logs" / f"{model}-fixture.log")
    if not art.exists():
        out["export"] = child([*EMBCC, "export", str(ckpt), "--out", str(art), "--task", task, "-q"],
                              work / "logs" / f"{model}-export.log")
        if out["export"]["rc"]:
            return out
    out["verify"] = child([*EMBCC, "verify", str(art), "--reference", str(ckpt)], work / "logs" / f"{model}-verify.log")
    parity = art / "parity.json"
    if parity.is_file():
        report = json.loads(parity.read_text())
        out["passed"] = report["passed"]
        out["probe_max_tokens"] = report["probe_max_tokens"]
        out["rows"] = [{k: r.get(k) for k in ("graph", "task", "max_tokens", "min_cosine", "max_abs_diff", "result",
                                              "reference_s", "artifact_s")} for r in report["results"]]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=ROOT / ".verify-long")
    p.add_argument("--models", default="jina-v5-nano,jina-v5-small")
    p.add_argument("--task", default="retrieval")
    a = p.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    results = []
    for model in a.models.split(","):
        r = run_model(a.work, model, a.task)
        results.append(r)
        print(json.dumps(r), flush=True)
        (a.work / "verify_long.json").write_text(json.dumps({"threads": os.cpu_count(), "results": results},
                                                            indent=1) + "\n")
    return 0 if all(r.get("passed") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
