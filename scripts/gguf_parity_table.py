"""Parity and file size of GGUF exports per type, in llama.cpp, against one torch fp32 reference.

    python scripts/gguf_parity_table.py CHECKPOINT [--types f32,f16,q8_0,...] [--task NAME] [--max-length N] [--work DIR]

Each type is exported (LoRA merged for one task where the family has adapters), run by llama.cpp on the probe
set and compared with the torch reference (computed once); the bar column is verify's. The torch side is
embcc.reference (transformers + PEFT built from the checkpoint's own files, as `embcc verify` uses), not embcc's
export-side graph, so an export bug cannot hide in both columns.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from embcc.families import load
from embcc.pipeline import export
from embcc.probes import PROBES
from embcc.reference import reference_for
from embcc.verify import BARS, VERIFY_MAX_TOKENS, compare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--types", default="f32,f16,bf16,q8_0,q5_1,q5_0,q4_1,q4_0,q6_k,q5_k_m,q4_k_m,q3_k_m")
    ap.add_argument("--task", default=None)
    ap.add_argument("--max-length", type=int, default=None)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="embcc-gguf-types-"))
    bundle = load(args.checkpoint)
    task = args.task or (bundle.spec.tasks[0].name if bundle.spec.tasks else None)
    with reference_for(args.checkpoint) as reference:
        ref = reference.encode(PROBES, task=task, max_length=args.max_length or min(bundle.spec.max_length,
                                                                                  VERIFY_MAX_TOKENS))
    from embcc.runtimes.llamacpp import LlamaCppEmbedder  # llama-cpp-python: only where the table is made

    print("| type | GGUF bytes | min cos | mean cos | max abs diff | rank@10 | bar |")
    print("|---|---|---|---|---|---|---|")
    for t in args.types.split(","):
        art = export(args.checkpoint, work / t, fmt="gguf", gguf_type=t, bundle=bundle, max_length=args.max_length,
                     **({"lora": "merge", "task": task} if bundle.lora else {}))
        d = art / task if bundle.lora else art
        emb = LlamaCppEmbedder(d, max_length=args.max_length)
        m = compare(ref, emb.encode(PROBES, task=task), BARS[t])
        emb.close()
        verdict = ("pass" if m["passed"] else "FAIL") if BARS[t] else "reported"
        print(f"| {t} | {(d / 'model.gguf').stat().st_size:,} | {m['min_cosine']:.6f} | {m['mean_cosine']:.6f} | "
              f"{m['max_abs_diff']:.1e} | {m['ranking_agreement']:.3f} | {verdict} |", flush=True)


if __name__ == "__main__":
    main()
