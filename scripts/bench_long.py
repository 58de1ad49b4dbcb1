"""Long inputs: embcc's fused ONNX graph (model.onnx, ORT attention ops) against torch SDPA and the portable graph.

    .venv/bin/python scripts/bench_long.py [--work DIR] [--threads 2] [--runs 5] [--only long,pad,short,v5,v2,passes]

Fixtures (random weights, written once by embcc's own writers into DIR): a 4-layer, 512-wide jina-v3 in the
original layout (8 heads of 64, intermediate 2048: the writer's SIZES with one more entry), and the tiny v5-small /
v5-nano and v2-small fixtures. Each long-input measurement runs in its own child process (time of one call after a
warm-up call at 64 tokens, peak RSS of the child (VmHWM), RSS before the call); the short-input throughput
runs the portable and fused graphs interleaved in one process, median of --runs rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHORT_SHAPES = ["32x128", "1x16"]
V3_BENCH_SIZE = ("l4h512", (4, 512, 8, 2048, 1000))  # layers, hidden, heads, intermediate, vocab


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    return _status_mb("VmRSS")


def peak_mb() -> float:
    """Peak RSS of this process image: VmHWM (getrusage's ru_maxrss would count the parent's RSS at fork)."""
    return _status_mb("VmHWM")


# ---------------------------------------------------------------------------------------------------- set-up

def fixture(work: Path, name: str) -> Path:
    from embcc.fixtures import jina_v3, write_fixture

    out = work / "ckpt" / name
    if out.exists():
        return out
    if name == "v3-l4h512":
        jina_v3.SIZES.setdefault(*V3_BENCH_SIZE)
        return write_fixture("jina-v3", out, size=V3_BENCH_SIZE[0], layout="original", seed=0)
    fx = {"v5-small": "jina-v5-small", "v5-nano": "jina-v5-nano", "v2-small": "jina-v2-small"}[name]
    return write_fixture(fx, out, seed=0)


def graphs(work: Path, name: str, lora: str | None = "merge") -> dict[str, Path]:
    """model.portable.onnx (standard ops) and model.onnx (fused attention) of one fixture, as `embcc export`
    writes them; made once."""
    from embcc.families import load
    from embcc.pipeline import artifacts_in, export

    out = work / "onnx" / f"{name}-{lora}"
    ckpt = fixture(work, name)
    bundle = load(ckpt)
    task = bundle.spec.tasks[0].name if (bundle.lora is not None and lora == "merge") else None
    if not out.exists():
        export(ckpt, out, lora=lora if bundle.lora is not None else None, task=task)
    art = artifacts_in(out)[0]
    return {"portable": art / "model.portable.onnx", "fused": art / "model.onnx"}


# ---------------------------------------------------------------------------------------------------- children

def feeds_for(lengths: list[int], inputs: set[str], vocab: int = 900) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    width = max(lengths)
    ids = np.zeros((len(lengths), width), np.int64)
    mask = np.zeros((len(lengths), width), np.int64)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(5, vocab, size=n)
        mask[i, :n] = 1
    f = {"input_ids": ids, "attention_mask": mask}
    if "task_id" in inputs:
        f["task_id"] = np.array(0, np.int64)
    return f


def child(engine: str, target: str, lengths: list[int], threads: int, split: bool) -> dict:
    """One measurement in this (fresh) process: warm-up at 64 tokens, then one timed call."""
    import numpy as np

    if engine.startswith("torch"):
        import torch

        torch.set_num_threads(threads)
        from embcc.families import load
        from embcc.reference import reference_for
        from embcc.reference.common import pool

        bundle = load(Path(target))  # only for the task's name: the torch side is the reference, not the export
        task = bundle.spec.tasks[0].name if bundle.lora is not None else None
        ref = reference_for(Path(target))

        def run(f: dict) -> np.ndarray:
            ids, mask = torch.from_numpy(f["input_ids"]), torch.from_numpy(f["attention_mask"])
            with torch.inference_mode():
                return pool(ref._states(ids, mask, task).float(), mask, ref.pooling.mode).numpy()
        inputs = {"input_ids", "attention_mask"}
    else:
        import onnxruntime as ort

        from embcc.runtimes.onnxrt import session_options

        sess = ort.InferenceSession(target, session_options(threads), providers=["CPUExecutionProvider"])
        inputs = {i.name for i in sess.get_inputs()}

        def run(f: dict) -> np.ndarray:
            return sess.run(["sentence_embedding"], f)[0]

    run(feeds_for([64], inputs))
    before = rss_mb()
    t = time.perf_counter()
    if split:  # what embcc.runtimes.batching does with these lengths: one unpadded call per length
        out = np.concatenate([run(feeds_for([n], inputs)) for n in lengths])
    else:
        out = run(feeds_for(lengths, inputs))
    seconds = time.perf_counter() - t
    return {"engine": engine, "lengths": lengths, "split": split, "seconds": seconds, "rss_before_mb": before,
            "peak_rss_mb": peak_mb(), "finite": bool(np.isfinite(out).all()), "vector0": out[0, :4].tolist()}


def measure(engine: str, target: Path, lengths: list[int], threads: int, split: bool = False,
            timeout: float = 1800) -> dict:
    cmd = [sys.executable, __file__, "child", engine, str(target), ",".join(map(str, lengths)), str(threads)]
    if split:
        cmd.append("--split")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"engine": engine, "lengths": lengths, "error": f"timeout {timeout}s"}
    if p.returncode != 0:
        return {"engine": engine, "lengths": lengths, "error": f"exit {p.returncode}: {p.stderr.strip()[-300:]}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def show(r: dict) -> None:
    if "error" in r:
        print(f"  {r['engine']:<13} {str(r['lengths']):<16} ERROR {r['error']}", flush=True)
        return
    how = " (split)" if r.get("split") else ""
    print(f"  {r['engine'] + how:<21} {str(r['lengths']):<16} {r['seconds']:8.2f} s   peak RSS {r['peak_rss_mb']:8.0f} MB"
          f"   (before call {r['rss_before_mb']:6.0f} MB)", flush=True)


# ---------------------------------------------------------------------------------------------------- short inputs

def shape_lengths(label: str) -> list[int]:
    """"32x128" -> 32 texts of 128 tokens; "32x64-128" -> 32 texts, lengths spread evenly over 64..128 (padded)."""
    batch, _, seq = label.partition("x")
    lo, _, hi = seq.partition("-")
    if not hi:
        return [int(lo)] * int(batch)
    b, a, z = int(batch), int(lo), int(hi)
    return [a + (z - a) * i // max(1, b - 1) for i in range(b)]


def throughput(paths: dict[str, Path], shapes: list[str], threads: int, rounds: int, seconds: float = 2.0) -> dict:
    """texts/s of each graph from the median time of single calls, the graphs alternating call by call (order
    reversed every round, so load drift on a shared machine hits both alike); about `seconds` of calls per graph
    per round, `rounds` rounds."""
    import numpy as np
    import onnxruntime as ort

    from embcc.runtimes.onnxrt import session_options

    def options() -> ort.SessionOptions:
        o = session_options(threads)
        # no spinning: alternating sessions would otherwise run each call against the last one's spinning threads
        o.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return o

    sessions = {k: ort.InferenceSession(str(p), options(), providers=["CPUExecutionProvider"])
                for k, p in paths.items()}
    out: dict = {}
    for label in shapes:
        lengths = shape_lengths(label)
        feeds = {k: feeds_for(lengths, {i.name for i in s.get_inputs()}) for k, s in sessions.items()}
        for k, s in sessions.items():  # warm-up
            for _ in range(2):
                s.run(["sentence_embedding"], feeds[k])
        t0 = time.perf_counter()
        for k, s in sessions.items():
            s.run(["sentence_embedding"], feeds[k])
        per_call = (time.perf_counter() - t0) / len(sessions)
        calls = max(3, int(seconds * rounds / max(per_call, 1e-4)))
        times: dict[str, list[float]] = {k: [] for k in sessions}
        order = list(sessions)
        for i in range(calls):
            for k in order if i % 2 == 0 else order[::-1]:
                t = time.perf_counter()
                sessions[k].run(["sentence_embedding"], feeds[k])
                times[k].append(time.perf_counter() - t)
        out[label] = {k: len(lengths) / statistics.median(v) for k, v in times.items()}
        out[label + " p10 texts/s"] = {k: len(lengths) / float(np.percentile(v, 10)) for k, v in times.items()}
        row = "  ".join(f"{k} {v:8.1f}" for k, v in out[label].items())
        base = out[label].get("portable")
        ratios = "  ".join(f"{k}/portable {v / base:5.3f}" for k, v in out[label].items() if base and k != "portable")
        print(f"  {label:<10} texts/s (median of {calls} alternating calls): {row}   {ratios}", flush=True)
    return out


def interleaved(pairs: list[tuple[str, Path]], lengths: list[int], threads: int, rounds: int,
                split: bool = False) -> list[dict]:
    """Children run alternately, `rounds` times each: medians of time and peak RSS, and per-round ratios."""
    runs: dict[str, list[dict]] = {e: [] for e, _ in pairs}
    for _ in range(rounds):
        for engine, target in pairs:
            r = measure(engine, target, lengths, threads, split=split)
            runs[engine].append(r)
            if "error" in r:
                show(r)
    rows = []
    for rs in runs.values():
        ok = [r for r in rs if "error" not in r]
        if not ok:
            rows.append(rs[0])
            continue
        row = dict(ok[0], seconds=statistics.median(r["seconds"] for r in ok),
                   peak_rss_mb=statistics.median(r["peak_rss_mb"] for r in ok),
                   rss_before_mb=statistics.median(r["rss_before_mb"] for r in ok),
                   all_seconds=[round(r["seconds"], 3) for r in ok], rounds=len(ok))
        rows.append(row)
        show(row)
    first = runs[pairs[0][0]]
    for engine, rs in list(runs.items())[1:]:
        ratios = [b["seconds"] / a["seconds"] for a, b in zip(first, rs) if "error" not in a and "error" not in b]
        if ratios:
            print(f"    {engine} / {pairs[0][0]} time, median of per-round ratios: {statistics.median(ratios):.2f}"
                  f" ({', '.join(f'{x:.2f}' for x in ratios)})", flush=True)
            rows.append({"ratio": f"{engine}/{pairs[0][0]}", "median": statistics.median(ratios), "all": ratios})
    return rows


def without_guard(src: Path, dst: Path) -> Path:
    """Ablation: the fused graph with every If replaced by its then-branch (only valid for unpadded batches)."""
    import onnx

    m = onnx.load(str(src))
    nodes = []
    for n in m.graph.node:
        if n.op_type != "If":
            nodes.append(n)
            continue
        then = next(a.g for a in n.attribute if a.name == "then_branch")
        for inner in then.node:
            inner.name = f"{n.name}/{inner.name}"
            inner.output[0] = n.output[0] if inner.output[0] == then.output[0].name else inner.output[0]
            nodes.append(inner)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    onnx.save(m, str(dst))
    return dst


def with_onnxscript_fusions(src: Path, dst: Path) -> Path:
    """Ablation: onnxscript's other ort_fusions rules (norms, GELU) on top of the fused graph."""
    import onnx
    import onnx_ir as ir
    from onnxscript.rewriter.ort_fusions import _core as rules

    m = ir.from_proto(onnx.load(str(src)))
    for fuse in (rules.fuse_erfgelu, rules.fuse_rms_normalization, rules.fuse_skip_layer_normalization,
                 rules.fuse_skip_rms_normalization, rules.fuse_gelu, rules.fuse_bias_gelu):
        fuse(m)
    onnx.save(ir.to_proto(m), str(dst))
    return dst


# ---------------------------------------------------------------------------------------------------- main

def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--work", type=Path, default=ROOT / ".bench-long")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--only", default="long,pad,short,v5,v2")
    p.add_argument("--long", type=int, default=8192)
    p.add_argument("--v5-long", type=int, default=32768)
    p.add_argument("--long-rounds", type=int, default=3)
    args = p.parse_args()
    only = set(args.only.split(","))
    import onnxruntime

    results: dict = {"onnxruntime": onnxruntime.__version__, "threads": args.threads}
    print(f"onnxruntime {onnxruntime.__version__}, {args.threads} threads", flush=True)
    v3 = graphs(args.work, "v3-l4h512") if only & {"long", "pad", "short", "passes"} else None
    ck = fixture(args.work, "v3-l4h512")
    if "long" in only:
        print(f"## v3 4x512, 1 x {args.long} tokens", flush=True)
        results["long"] = interleaved([("ort-fused", v3["fused"]), ("torch-sdpa", ck)], [args.long], args.threads,
                                      args.long_rounds)
        print(f"## v3 4x512, 1 x {args.long // 2} tokens: today's graph for contrast (it materialises L x L)",
              flush=True)
        results["long-portable"] = [measure(e, t, [args.long // 2], args.threads) for e, t in
                                    (("ort-portable", v3["portable"]), ("ort-fused", v3["fused"]),
                                     ("torch-sdpa", ck))]
        for r in results["long-portable"]:
            show(r)
    if "pad" in only:
        print(f"## v3 4x512, padded pair {args.long} + {args.long // 2}", flush=True)
        pair = [args.long, args.long // 2]
        rows = [measure("ort-fused", v3["fused"], pair, args.threads, split=True),
                measure("ort-fused", v3["fused"], pair, args.threads),
                measure("torch-sdpa", ck, pair, args.threads, split=True),
                measure("torch-sdpa", ck, pair, args.threads)]
        for r in rows:
            show(r)
        results["pad"] = rows
    if "short" in only:
        print("## v3 4x512 short inputs (portable = today's graph)", flush=True)
        results["short"] = throughput({"portable": v3["portable"], "fused": v3["fused"]}, SHORT_SHAPES,
                                      args.threads, args.runs)
    if "passes" in only:
        print("## v3 4x512, what each pass buys (portable -> +MHA/If -> no If -> + onnxscript norm/GELU rules)",
              flush=True)
        d = v3["fused"].parent
        variants = {"portable": v3["portable"], "fused": v3["fused"],
                    "fused-noif": without_guard(v3["fused"], d / "ablation-noif.onnx"),
                    "fused+rules": with_onnxscript_fusions(v3["fused"], d / "ablation-rules.onnx")}
        results["passes"] = throughput(variants, ["32x128", "1x16"], args.threads, args.runs)
        results["passes-padded"] = throughput({k: variants[k] for k in ("portable", "fused", "fused+rules")},
                                              ["32x64-128", "4x512-1024"], args.threads, args.runs)
        print("  long (1 x 4096): fused vs no If", flush=True)
        results["passes-long"] = interleaved([("ort-fused", v3["fused"]), ("ort-noif", variants["fused-noif"])],
                                             [4096], args.threads, args.long_rounds)
    if "v5" in only:
        for name in ("v5-nano", "v5-small"):
            g = graphs(args.work, name)
            print(f"## {name} tiny, 1 x {args.v5_long} tokens", flush=True)
            results[name] = interleaved([("ort-fused", g["fused"]), ("torch-sdpa", fixture(args.work, name))],
                                        [args.v5_long], args.threads, args.long_rounds)
    if "v2" in only:
        g = graphs(args.work, "v2-small", lora=None)
        print("## v2-small tiny (ALiBi: attention_bias, never tiled)", flush=True)
        rows = []
        for n in (2048, 4096):
            for engine, target in (("ort-fused", g["fused"]), ("ort-portable", g["portable"]),
                                   ("torch-sdpa", fixture(args.work, "v2-small"))):
                rows.append(measure(engine, target, [n], args.threads))
                show(rows[-1])
        results["v2"] = rows
        results["v2-short"] = throughput({"portable": g["portable"], "fused": g["fused"]}, SHORT_SHAPES + ["32x64-128"],
                                         args.threads, args.runs)
    (args.work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        engine, target, lengths, threads = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
        print(json.dumps(child(engine, target, [int(x) for x in lengths.split(",")], threads, "--split" in sys.argv)))
        sys.exit(0)
    sys.exit(main())
