"""Peak memory of one side, in a fresh process: `python -m embcc.bench.child '<json>'` prints one JSON line.

The parent starts this with subprocess (fork + exec of a new interpreter), so the high-water mark read here
(VmHWM of /proc/self/status) is this process image's own: ru_maxrss of a forked child would start at the
parent's. The side is loaded, every shape is run once, and VmHWM is read; VmRSS after loading is reported too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(job: dict) -> dict:
    import torch

    from embcc.bench import runners

    threads, device = int(job["threads"]), job.get("device") or "cpu"
    torch.set_num_threads(threads)
    side = job["side"]
    if side == "artifact":
        emb = runners.open_side(Path(job["artifact"]), threads=threads, device=job.get("device"),
                                max_length=job.get("max_length"))
        prepare = runners.artifact_runner(emb, job.get("task"))
    elif side == "torch":
        from embcc.reference import reference_for

        ref = reference_for(Path(job["reference"]), rope_theta=job.get("rope_theta"))
        runners.reference_fp32(ref)
        if device == "cuda":
            ref.model.to("cuda")
        prepare = runners.torch_runner(ref, job.get("task"), device)
    else:
        session = runners.ort_session(Path(job["plain"]), threads, device)
        prepare = runners.plain_runner(session, job["pooling"], int(job["pad_id"]))
    loaded = _status_mb("VmRSS")
    for lengths in job["shapes"]:
        prepare(runners.token_ids(lengths, int(job["vocab"])))()
    return {"side": side, "loaded_rss_mb": loaded, "peak_rss_mb": _status_mb("VmHWM")}


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
