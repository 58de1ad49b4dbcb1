"""Benchmark embcc's ONNX artifacts against the torch reference on full-size random-weight fixtures,
at every ONNX precision, and check the artifact sizes against issue 4's limits.

    .venv/bin/python scripts/bench_fixtures.py [--work DIR] [--models jina-v2-small,jina-v3:base]
        [--precisions fp32,fp16,int8,int8-dynamic] [--seconds 5] [--sizes-only]

Writes DIR/<model>-<precision>.json (the `embcc bench` result) and DIR/sizes.json, and prints the tables
README.md quotes. Sizes: the graph bytes (ONNX files and their external data, not the tokenizer) relative to
fp32; int8 must be at most 0.3x and fp16 at most 0.55x, or the script exits 1.
Random weights cost the same time as real ones; fixtures and artifacts are made once and reused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from embcc.bench import bench, format_bench
from embcc.fixtures import write_fixture
from embcc.pipeline import artifacts_in, export

LIMITS = {"fp16": 0.55, "int8": 0.30, "int8-dynamic": 0.30}
GRAPH_SUFFIXES = (".onnx", ".onnx_data", ".data")


def graph_bytes(artifact: Path) -> dict[str, int]:
    """Bytes of the graph files of one artifact: every form, and the largest single form."""
    files = {p.name: p.stat().st_size for p in artifact.iterdir() if p.name.endswith(GRAPH_SUFFIXES)}
    return {"all": sum(files.values()), "files": files}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--work", type=Path, default=Path(".bench"))
    p.add_argument("--models", default="jina-v2-small,jina-v3:base")
    p.add_argument("--precisions", default="fp32,fp16,int8,int8-dynamic")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--sizes-only", action="store_true", help="export and check sizes, skip the timing")
    args = p.parse_args()
    sizes: dict[str, dict] = {}
    ok = True
    for item in args.models.split(","):
        name, _, size = item.partition(":")
        size = size or "full"
        ckpt = args.work / f"{name}-{size}"
        if not ckpt.exists():
            write_fixture(name, ckpt, size=size)
        task = "retrieval.query" if name == "jina-v3" else None
        row: dict[str, dict] = {}
        for precision in args.precisions.split(","):
            prec, _, mode = precision.partition("-")
            art = args.work / f"{name}-{size}-{precision}"
            if not art.exists():
                export(ckpt, art, task=task, precision=prec, int8_mode=mode or None)
            one = artifacts_in(art)[0]
            row[precision] = graph_bytes(one)
            if not args.sizes_only:
                result = bench(art, ckpt, threads=args.threads, seconds=args.seconds)
                (args.work / f"{name}-{size}-{precision}.json").write_text(json.dumps(result, indent=2) + "\n")
                print(f"## {name} ({size}) {precision}\n{format_bench(result)}\n", flush=True)
        base = row.get("fp32", {}).get("all")
        for precision, b in row.items():
            if base and precision != "fp32":
                b["ratio_to_fp32"] = b["all"] / base
                limit = LIMITS.get(precision)
                b["limit"] = limit
                if limit is not None and b["ratio_to_fp32"] > limit:
                    ok = False
        sizes[f"{name}-{size}"] = row
    (args.work / "sizes.json").write_text(json.dumps(sizes, indent=2) + "\n")
    print("## graph bytes (ONNX files + external data) relative to fp32")
    for model, row in sizes.items():
        for precision, b in row.items():
            ratio = b.get("ratio_to_fp32")
            verdict = "" if ratio is None else f"{ratio:.3f}x (limit {b['limit']}) {'ok' if ratio <= b['limit'] else 'OVER'}"
            print(f"{model:<24} {precision:<13} {b['all'] / 1e6:>10.1f} MB  {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
