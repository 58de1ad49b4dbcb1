"""`embcc bench`: an artifact's runtime against the torch reference, in one run, same threads.

Two regimes: latency (batch 1 x 16 tokens) and throughput (batch 32 x 128 tokens). The torch side is the
fastest honest torch: SDPA attention, inference mode, the same thread count. Also measured in the same run:
the machine's fp32 GEMM peak, and the fraction of it each runtime reaches (model FLOPs / time / peak).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from embcc.core.spec import ModelSpec
from embcc.export.torch_embedder import TorchEmbedder
from embcc.families import load
from embcc.pipeline import artifacts_in
from embcc.runtimes import open_artifact

REGIMES = {"latency": (1, 16), "throughput": (32, 128)}


def _time(fn: Callable[[], object], seconds: float, min_runs: int = 3) -> float:
    """Median seconds per call after one warm-up, over at least `seconds` of calls."""
    fn()
    runs: list[float] = []
    start = time.perf_counter()
    while len(runs) < min_runs or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return float(np.median(runs))


GEMM = (4096, 768, 3072)  # a base-sized encoder's MLP at batch 32 x 128


def _best(fn: Callable[[], object], runs: int = 12) -> float:
    fn()
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def gemm_peak(threads: int) -> dict[str, float]:
    """Best fp32 GEMM GFLOP/s at `threads` on a 4096x768x3072 product, for torch (MKL) and for ONNX Runtime
    (MLAS); the peak is the better of the two."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from embcc.runtimes.onnxrt import session_options

    m, k, n = GEMM
    flops = 2.0 * m * k * n
    torch.set_num_threads(threads)
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    torch_gflops = flops / _best(lambda: torch.matmul(a, b, out=out)) / 1e9
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(b.numpy(), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    sess = ort.InferenceSession(model.SerializeToString(),
                                session_options(threads), providers=["CPUExecutionProvider"])
    feeds = {"a": a.numpy()}
    ort_gflops = flops / _best(lambda: sess.run(None, feeds)) / 1e9
    return {"torch": torch_gflops, "onnxruntime": ort_gflops, "peak": max(torch_gflops, ort_gflops)}


def model_flops(weights: dict[str, torch.Tensor], spec: ModelSpec, batch: int, length: int, layers: int) -> float:
    """Matmul FLOPs of one forward: 2 x (non-embedding matrix params) per token, plus attention's 4 L^2 H."""
    matrix = sum(w.numel() for k, w in weights.items() if w.ndim == 2 and "embed" not in k)  # no token tables
    return 2.0 * matrix * batch * length + 4.0 * batch * length * length * spec.dim * layers


def bench(artifact: str | Path, reference: str | Path, *, threads: int | None = None, seconds: float = 3.0) -> dict:
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    art_dir = artifacts_in(Path(artifact))[0]
    embedder = open_artifact(art_dir, threads=threads)
    spec = embedder.spec
    bundle = load(reference)
    ref = TorchEmbedder(bundle, rope_theta=spec.rope_theta)
    task = spec.task_by_name(None)
    task_id = task.id if task else None
    layers = 1 + max(int(k.split(".")[i + 1]) for k in bundle.weights for i, part in enumerate(k.split("."))
                     if part in ("layers", "layer") and k.split(".")[i + 1].isdigit())
    gemm = gemm_peak(threads)
    peak = gemm["peak"]
    rng = np.random.default_rng(0)
    vocab = embedder.tokenizer.get_vocab_size()
    results = {"artifact": str(art_dir), "runtime": embedder.runtime, "threads": threads, "gemm_peak_gflops": peak,
               "precision": spec.precision, "graph": getattr(embedder, "model_file", None),
               "gemm_gflops": gemm,
               "machine": platform.processor() or platform.machine(), "torch": torch.__version__, "regimes": {}}
    graph = ref.graph(task_id)
    for name, (batch, length) in REGIMES.items():
        ids = rng.integers(5, min(vocab, 30000), size=(batch, length)).astype(np.int64)
        mask = np.ones_like(ids)
        t_art = _time(lambda ids=ids, mask=mask: embedder._embed(ids, mask, task_id), seconds)
        tids, tmask = torch.from_numpy(ids), torch.from_numpy(mask)

        def run_torch(tids: torch.Tensor = tids, tmask: torch.Tensor = tmask) -> None:
            with torch.inference_mode():
                graph(tids, tmask)

        t_ref = _time(run_torch, seconds)
        flops = model_flops(bundle.weights, spec, batch, length, layers)
        results["regimes"][name] = {
            "batch": batch, "length": length,
            "artifact_texts_per_s": batch / t_art, "torch_texts_per_s": batch / t_ref,
            "artifact_tokens_per_s": batch * length / t_art, "torch_tokens_per_s": batch * length / t_ref,
            "speedup": t_ref / t_art,
            "artifact_gemm_fraction": flops / t_art / 1e9 / peak, "torch_gemm_fraction": flops / t_ref / 1e9 / peak,
        }
    return results


def format_bench(r: dict) -> str:
    lines = [f"{r['runtime']} {r.get('precision', 'fp32')} ({r.get('graph') or '-'}) vs torch fp32 (SDPA, inference mode), {r['threads']} threads; "
             f"fp32 GEMM peak {r['gemm_peak_gflops']:.0f} GFLOP/s measured in this run "
             f"(torch {r['gemm_gflops']['torch']:.0f}, onnxruntime {r['gemm_gflops']['onnxruntime']:.0f}; {GEMM[0]}x{GEMM[1]}x{GEMM[2]})",
             f"{'regime':<11} {'shape':>8} {'artifact texts/s':>17} {'torch texts/s':>14} {'tokens/s':>10} "
             f"{'speedup':>8} {'peak frac':>10} {'torch frac':>10}"]
    for name, x in r["regimes"].items():
        lines.append(f"{name:<11} {x['batch']:>3}x{x['length']:<4} {x['artifact_texts_per_s']:>17.1f} "
                     f"{x['torch_texts_per_s']:>14.1f} {x['artifact_tokens_per_s']:>10.0f} {x['speedup']:>7.2f}x "
                     f"{x['artifact_gemm_fraction']:>10.2f} {x['torch_gemm_fraction']:>10.2f}")
    return "\n".join(lines)
