"""Parity of every ONNX precision on the tiny fixtures, as README.md quotes it.

    .venv/bin/python scripts/parity_precisions.py [--work DIR] [--max-length 1024]

For v2-small, v3 (merge and keep) and v5 small/nano (merge): export fp32, fp16, int8 static and int8 dynamic,
run `embcc verify` (104 probe texts per task, every ONNX form an artifact ships) and print one row per
artifact form: worst task's min cosine, mean cosine, max abs diff and ranking agreement, and the bar verdict.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from embcc.fixtures import write_fixture
from embcc.pipeline import export
from embcc.verify import verify

MODELS = {"v2-small": ("jina-v2-small", None), "v3": ("jina-v3", None), "v5-small": ("jina-v5-small", None),
          "v5-nano": ("jina-v5-nano", None)}
PRECISIONS = [("fp16", None), ("int8", "static"), ("int8", "dynamic")]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--work", type=Path, default=Path(".parity"))
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--only", default=None, help="e.g. int8-static: only that precision and mode")
    args = p.parse_args()
    print("| model | LoRA | precision | graph | min cos | mean cos | max abs diff | rank@10 | bar |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (fixture, _) in MODELS.items():
        ckpt = args.work / name
        if not ckpt.exists():
            write_fixture(fixture, ckpt)
        modes = ["merge", "keep"] if name == "v3" else ["merge"] if name.startswith("v5") else [None]
        for lora in modes:
            for precision, mode in PRECISIONS:
                if args.only and args.only != (f"{precision}-{mode}" if mode else precision):
                    continue
                label = f"{name}-{lora or 'none'}-{precision}-{mode or ''}"
                art = args.work / label
                if not art.exists():
                    export(ckpt, art, lora=lora, precision=precision, int8_mode=mode, max_length=args.max_length,
                           cache_dir=args.work / "cache")
                report = verify(art, ckpt)
                forms: dict[str, list[dict]] = {}
                for r in report["results"]:
                    form = r["artifact"].split("[")[-1].rstrip("]") if "[" in r["artifact"] else "model.onnx"
                    forms.setdefault(form, []).append(r)
                for form, rows in forms.items():
                    worst = min(rows, key=lambda r: r["min_cosine"])
                    print(f"| {name} | {lora or '-'} | {precision} {mode or ''} | {form} | {worst['min_cosine']:.7f} | "
                          f"{min(r['mean_cosine'] for r in rows):.7f} | {max(r['max_abs_diff'] for r in rows):.2e} | "
                          f"{min(r['ranking_agreement'] for r in rows):.3f} | "
                          f"{'pass' if all(r['passed'] for r in rows) else 'FAIL'} |", flush=True)


if __name__ == "__main__":
    main()
