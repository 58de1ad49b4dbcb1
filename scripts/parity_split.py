"""Parity of an artifact against the torch reference with the two in separate processes, for models too large to
hold both at once (full-size jina-embeddings-v4: 15 GB of fp32 reference beside a 3-6 GB GGUF on a 24 GB machine).

    python scripts/parity_split.py CHECKPOINT ARTIFACT [--task NAME] [--texts 32] [--max-length 128]

A child process builds embcc.reference from the checkpoint, encodes the first probe texts and writes the vectors to
a scratch .npy; it exits (its memory returns) before the artifact is opened in this process. Printed: the figures
`embcc verify` computes and whether they meet its bar for the artifact's precision; each process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys
import numpy as np
from embcc.probes import PROBES
from embcc.reference import reference_for
ckpt, task, n, length, out = sys.argv[1], sys.argv[2] or None, int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
ref = reference_for(ckpt)
np.save(out, ref.encode(list(PROBES[:n]), task=task, max_length=length))
ref.close()
print(json.dumps({"reference_peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--task", default=None)
    ap.add_argument("--texts", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="embcc-parity-split-") as tmp:
        vectors = Path(tmp) / "reference.npy"
        child = subprocess.run([sys.executable, "-c", CHILD, str(a.checkpoint), a.task or "", str(a.texts),
                                str(a.max_length), str(vectors)], capture_output=True, text=True)
        if child.returncode:
            print(child.stderr.strip().splitlines()[-1] if child.stderr.strip() else "reference failed")
            return 2
        facts = json.loads(child.stdout.strip().splitlines()[-1])
        import numpy as np

        from embcc.probes import PROBES
        from embcc.runtimes import open_artifact
        from embcc.verify import BARS, compare

        ref = np.load(vectors)
        emb = open_artifact(a.artifact, max_length=a.max_length)
        got = emb.encode(list(PROBES[: a.texts]), task=a.task)
        precision = emb.spec.precision
        bar = BARS.get(precision, {})
        m = compare(ref, got, {k: v for k, v in bar.items() if k != "ranking_agreement"})
    result = {"artifact": str(a.artifact), "runtime": emb.runtime, "precision": precision, "task": a.task,
              "texts": a.texts, "max_length": a.max_length, "min_cosine": m["min_cosine"],
              "mean_cosine": m["mean_cosine"], "max_abs_diff": m["max_abs_diff"], "bar": m["result"],
              "failed": m["failed"], **facts,
              "artifact_peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    print(json.dumps(result, indent=2))
    return 0 if m["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
