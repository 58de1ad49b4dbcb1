"""Peak memory of `embcc export`, summed over its whole process tree, against the fp32 weight bytes.

    .venv/bin/python scripts/measure_export_memory.py CHECKPOINT [--work DIR] [--limit 1.5]
        [--export "onnx:--task retrieval.query" --export "gguf:--format gguf --type q8_0 --task retrieval.query"]
    .venv/bin/python scripts/measure_export_memory.py --fixture jina-v3 --size full --work DIR

Each export runs as `python -m embcc.cli export ...` in a child process. A watcher thread samples /proc every
20 ms: the export process and every descendant (llama.cpp's load check and quantizer children included), and
sums their resident set sizes (statm resident: anonymous + file-backed + shared pages) every 2 ms (the process
set is refreshed every 0.1 s). Also measured, exact rather than sampled: the export process's own high-water mark
(ru_maxrss from wait4; for a tree it is the largest single process, not a sum). The figure held against the limit
is the larger of the two: sampling can miss a short peak, the high-water mark misses children running beside it.

fp32 weight bytes: 4 bytes per element of every tensor in the checkpoint's safetensors files (task adapters
included), read from the file headers. Exit 1 when a peak exceeds limit x that.
The machine may be shared: RSS does not depend on other processes' load, wall time does (reported, not judged).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
DEFAULT_EXPORTS = ["onnx:--task retrieval.query", "gguf-q8_0:--format gguf --type q8_0 --task retrieval.query"]


def fp32_weight_bytes(ckpt: Path) -> int:
    """4 bytes per element of every tensor in the checkpoint's safetensors files, from their headers (read here
    without importing torch or safetensors: see measure() on why this process stays small)."""
    total = 0
    for f in sorted(ckpt.rglob("*.safetensors")):
        with open(f, "rb") as h:
            (n,) = struct.unpack("<Q", h.read(8))
            header = json.loads(h.read(n))
        for k, v in header.items():
            if k != "__metadata__":
                total += 4 * math.prod(v["shape"])
    return total


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(d))
    return tree


def _descendants(root: int) -> list[int]:
    tree = _children()
    todo, out = [root], []
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += tree.get(pid, [])
    return out


class Watcher(threading.Thread):
    """Samples the tree's summed RSS every `interval` s; the set of processes is refreshed every `refresh` s."""

    def __init__(self, pid: int, interval: float = 0.002, refresh: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.interval, self.refresh = pid, interval, refresh
        self.peak, self.peak_procs, self.samples = 0, 0, 0
        self.stop = threading.Event()

    def run(self) -> None:
        pids, at = [self.pid], 0.0
        while not self.stop.is_set():
            if time.monotonic() - at > self.refresh:
                pids, at = _descendants(self.pid), time.monotonic()
            total = n = 0
            for pid in pids:
                try:
                    with open(f"/proc/{pid}/statm") as f:
                        total += int(f.read().split()[1]) * PAGE
                    n += 1
                except OSError:
                    pass
            self.samples += 1
            if total > self.peak:
                self.peak, self.peak_procs = total, n
            time.sleep(self.interval)


def measure(ckpt: Path, out: Path, args: list[str]) -> dict:
    """One export in a child process. This process must stay small: a forked child starts with its parent's
    RSS high-water mark (Linux copies it with the address space and keeps it across exec), so ru_maxrss would
    report this process's peak if it were the larger; fixtures are written in a child process for that reason."""
    cmd = [sys.executable, "-m", "embcc.cli", "export", str(ckpt), "--out", str(out), *args]
    t0 = time.perf_counter()
    # output to a file, not a pipe: nobody reads a pipe while wait4 waits, and a chatty export would block on it
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, text=True)
        w = Watcher(proc.pid)
        w.start()
        _, status, usage = os.wait4(proc.pid, 0)
        w.stop.set()
        w.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        stderr = log.read()
    return {"command": shlex.join(cmd[3:]), "exit": proc.returncode, "seconds": round(time.perf_counter() - t0, 1),
            "peak_tree_rss": w.peak, "processes_at_peak": w.peak_procs, "samples": w.samples,
            "export_process_maxrss": usage.ru_maxrss * 1024, "stderr_tail": stderr.strip().splitlines()[-1:]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, nargs="?")
    p.add_argument("--fixture", default=None, help="write this fixture into --work first (e.g. jina-v3)")
    p.add_argument("--size", default="full")
    p.add_argument("--layout", default=None)
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--export", action="append", default=None,
                   help="NAME:ARGS, the export options (default: ONNX merge of retrieval.query, GGUF q8_0)")
    p.add_argument("--limit", type=float, default=1.5, help="allowed peak / fp32 weight bytes")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="embcc-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    ckpt = a.checkpoint
    if ckpt is None:
        if a.fixture is None:
            p.error("pass a CHECKPOINT or --fixture NAME")
        ckpt = work / f"{a.fixture}-{a.size}"
        if not ckpt.exists():  # in a child process (see measure())
            layout = ["--layout", a.layout] if a.layout else []
            subprocess.run([sys.executable, "-m", "embcc.cli", "fixture", a.fixture, str(ckpt), "--size", a.size, *layout],
                           check=True)
    weights = fp32_weight_bytes(ckpt)
    gib = 1 << 30
    print(f"{ckpt}: fp32 weight bytes {weights / gib:.3f} GiB; limit {a.limit}x = {a.limit * weights / gib:.3f} GiB")
    results, ok = [], True
    for spec in a.export or DEFAULT_EXPORTS:
        name, _, args = spec.partition(":")
        out = work / f"out-{name}"
        if out.exists():
            import shutil

            shutil.rmtree(out)
        r = measure(ckpt, out, shlex.split(args))
        # the figure held to the limit: the sampled tree sum, or the export process's exact high-water mark where
        # sampling missed a short peak (it is a lower bound of the tree's peak)
        r["peak"] = max(r["peak_tree_rss"], r["export_process_maxrss"])
        r["name"], r["ratio"] = name, r["peak"] / weights
        r["within_limit"] = r["exit"] == 0 and r["ratio"] <= a.limit
        ok &= r["within_limit"]
        results.append(r)
        print(f"{name:12s} exit {r['exit']}  peak {r['peak'] / gib:.3f} GiB = {r['ratio']:.2f}x  (sampled tree sum "
              f"{r['peak_tree_rss'] / gib:.3f} GiB over {r['processes_at_peak']} processes, {r['samples']} samples; "
              f"export process high-water mark {r['export_process_maxrss'] / gib:.3f} GiB)"
              f"  {r['seconds']} s  {'ok' if r['within_limit'] else 'OVER'}", flush=True)
        if r["exit"] != 0:
            print("   ", *r["stderr_tail"])
    if a.json:
        a.json.write_text(json.dumps({"checkpoint": str(ckpt), "fp32_weight_bytes": weights, "limit": a.limit,
                                      "exports": results}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
