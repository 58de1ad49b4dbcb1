"""Which ONNX Runtime releases run embcc's fused graphs (model.onnx with com.microsoft attention), and tiled?

    .venv/bin/python scripts/ort_versions.py [--work DIR] [--versions 1.17.3,1.20.1,...] [--venv DIR]

Uses the graphs scripts/bench_long.py writes under DIR/onnx (v3 4x512: MultiHeadAttention; v5-small tiny:
GroupQueryAttention; v2-small tiny: MultiHeadAttention + attention_bias). For each release: pip-installs it into
one scratch venv, then in a child process per graph: does it load; does the fused graph match the portable graph
run by the same release (unpadded 300 tokens, a padded pair, and a padded pair past 512 tokens: every branch); and the peak RSS growth
of one long call, made first in the child (tiled when far below one heads x L x L fp32 matrix).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, numpy as np, onnxruntime as ort
fused, portable, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
o = ort.SessionOptions(); o.intra_op_num_threads = 2; o.log_severity_level = 3
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
out = {"ort": ort.__version__}
try:
    s = ort.InferenceSession(fused, o, providers=["CPUExecutionProvider"])
except Exception as e:
    print(json.dumps({**out, "load": str(e).splitlines()[0][:200]})); sys.exit(0)
rng = np.random.default_rng(0)
def feeds(lengths):
    w = max(lengths); ids = np.ones((len(lengths), w), np.int64); m = np.zeros_like(ids)
    for i, k in enumerate(lengths):
        ids[i, :k] = rng.integers(5, 900, size=k); m[i, :k] = 1
    return {"input_ids": ids, "attention_mask": m}
s.run(["sentence_embedding"], feeds([64])); before = hwm()  # the long call first: nothing else raised the peak
try:
    s.run(["sentence_embedding"], feeds([n])); out["grew_mb_at_%d" % n] = round(hwm() - before)
except Exception as e:
    out["long"] = str(e).splitlines()[0][:200]
p = ort.InferenceSession(portable, o, providers=["CPUExecutionProvider"])
diffs = {}
for lengths in ([300], [300, 120], [700, 300]):
    f = feeds(lengths)
    try:
        a = s.run(["sentence_embedding"], f)[0]
        diffs[str(lengths)] = float(np.abs(a - p.run(["sentence_embedding"], f)[0]).max())
    except Exception as e:
        diffs[str(lengths)] = str(e).splitlines()[0][:200]
out["max_abs_diff_vs_portable"] = diffs
print(json.dumps(out))
"""
DEFAULT = "1.17.3,1.18.1,1.19.2,1.20.1,1.22.1,1.24.4,1.26.0,1.27.0,1.28.0,1.30.0,1.32.0"
GRAPHS = {"v3 (MHA)": "v3-l4h512-merge", "v5-nano (MHA)": "v5-nano-merge", "v5-small (GQA)": "v5-small-merge", "v2 (MHA+bias)": "v2-small-None"}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--work", type=Path, default=Path(__file__).resolve().parents[1] / ".bench-long")
    p.add_argument("--versions", default=DEFAULT)
    p.add_argument("--venv", type=Path, default=Path("/tmp/embcc-ort-versions"))
    p.add_argument("--long", type=int, default=8192)
    p.add_argument("--graphs", default=",".join(GRAPHS), help="labels of GRAPHS to check, comma-separated")
    args = p.parse_args()
    py = args.venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(args.venv)], check=True)
    results = {}
    for version in args.versions.split(","):
        numpy = "numpy<2" if tuple(int(x) for x in version.split(".")[:2]) < (1, 19) else "numpy"
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            f"onnxruntime=={version}", numpy], capture_output=True, text=True)
        if r.returncode != 0:
            results[version] = {"install": r.stderr.strip().splitlines()[-1][:200]}
            print(version, results[version], flush=True)
            continue
        row = {}
        for label, name in GRAPHS.items():
            if label not in args.graphs.split(","):
                continue
            d = args.work / "onnx" / name
            c = subprocess.run([str(py), "-c", CHILD, str(d / "model.onnx"), str(d / "model.portable.onnx"),
                                str(args.long)], capture_output=True, text=True, timeout=900)
            row[label] = json.loads(c.stdout.strip().splitlines()[-1]) if c.returncode == 0 and c.stdout.strip() \
                else {"error": c.stderr.strip()[-300:]}
            print(version, label, row[label], flush=True)
        results[version] = row
    (args.work / "ort_versions.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
