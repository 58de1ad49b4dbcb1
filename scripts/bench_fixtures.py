"""Benchmark embcc's ONNX artifacts against the torch reference on full-size random-weight fixtures.

    .venv/bin/python scripts/bench_fixtures.py [--work DIR] [--models jina-v2-small,jina-v3:base] [--seconds 5]

Writes DIR/<model>.json (the `embcc bench` result) and prints the tables that README.md quotes.
Random weights cost the same time as real ones; fixtures and artifacts are made once and reused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from embcc.bench import bench, format_bench
from embcc.families import write_fixture
from embcc.pipeline import export


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--work", type=Path, default=Path(".bench"))
    p.add_argument("--models", default="jina-v2-small,jina-v3:base")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    for item in args.models.split(","):
        name, _, size = item.partition(":")
        size = size or "full"
        ckpt = args.work / f"{name}-{size}"
        art = args.work / f"{name}-{size}-onnx"
        if not ckpt.exists():
            write_fixture(name, ckpt, size=size)
        if not art.exists():
            export(ckpt, art, task="retrieval.query" if name == "jina-v3" else None)
        result = bench(art, ckpt, threads=args.threads, seconds=args.seconds)
        (args.work / f"{name}-{size}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"## {name} ({size})\n{format_bench(result)}\n", flush=True)


if __name__ == "__main__":
    main()
