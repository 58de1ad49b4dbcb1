"""embcc on a GPU machine: fp16 parity on every family, and speed at 1x16, 32x128 and 1x8192 tokens.

Run it through scripts/gpu_check.sh (which puts embcc beside the machine's own torch first). What it does:

  parity  tiny random-weight fixtures of v2-small, v3 (original layout, adapters kept), v5-nano and v5-small
          (adapters kept), exported to fp16 ONNX; each runtime below is compared with the torch fp32 reference on
          the CPU (embcc's probe set, every task) against SPEC section 4's fp16 bar (min cosine >= 0.999):
            onnxruntime-cuda fp16   the fp16 graph on CUDAExecutionProvider (needs onnxruntime-gpu)
            onnxruntime-cpu  fp16   the same graph on the CPU (tells a graph problem from a CUDA one)
            torch-cuda fp32 / fp16  the reference module itself on the GPU (TF32 off; fp16 = module.half()); fp16
                                    is gated where onnxruntime-gpu is missing, reported otherwise; fp32 reported
            tensorrt fp16 [fp32 int8]  `embcc export --format tensorrt` engines (needs TensorRT)
  speed   a full-size random-weight fixture (default jina-v2-small), fp16 ONNX at max length 8192: ms per batch of
          onnxruntime-cuda fp16, tensorrt fp16, torch-cuda fp32 and fp16 at 1x16, 32x128, 1x8192 (numpy in, numpy
          out for every runtime: host-device copies included on all sides), speedup over torch-cuda fp32.

Everything it could not run is listed with the reason. Results: a table on stdout and OUT/gpu_check.json; exit 1
if a gated parity row failed, 0 otherwise (rows that could not run do not fail it: they are listed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np

FAMILIES = {  # name: (fixture, layout, lora)
    "v2": ("jina-v2-small", None, None),
    "v3": ("jina-v3", "original", "keep"),
    "v5-nano": ("jina-v5-nano", None, "keep"),
    "v5-small": ("jina-v5-small", None, "keep"),
}
SHAPES = [(1, 16), (32, 128), (1, 8192)]
FP16_BAR = {"min_cosine": 0.999}
FP32_BAR = {"min_cosine": 0.9999, "max_abs_diff": 1e-4}


class Check:
    def __init__(self, out: Path):
        self.out = out
        self.parity: list[dict] = []
        self.speed: list[dict] = []
        self.not_run: list[str] = []
        self.log = open(out / "gpu_check.log", "a")  # noqa: SIM115 - open for the whole run

    def skip(self, what: str, why: str) -> None:
        line = f"{what}: {why}"
        self.not_run.append(line)
        print(f"  not run: {line}", flush=True)

    def failed(self, what: str, e: BaseException) -> None:
        self.log.write(f"\n==== {what}\n{traceback.format_exc()}\n")
        self.log.flush()
        first = (str(e).splitlines() or [type(e).__name__])[0][:300]
        self.skip(what, f"{type(e).__name__}: {first} (traceback in gpu_check.log)")


def environment() -> dict:
    env: dict = {"python": sys.version.split()[0], "platform": platform.platform()}
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_cuda"] = torch.version.cuda
        env["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
            env["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    except Exception as e:  # noqa: BLE001 - report whatever this machine has
        env["torch"] = f"unavailable ({e})"
    try:
        import onnxruntime as ort

        env["onnxruntime"] = ort.__version__
        env["onnxruntime_providers"] = ort.get_available_providers()
        try:
            from onnxruntime.capi import build_and_package_info as info

            env["onnxruntime_built_for_cuda"] = getattr(info, "cuda_version", None)
        except ImportError:
            pass
    except Exception as e:  # noqa: BLE001
        env["onnxruntime"] = f"unavailable ({e})"
    try:
        from embcc.core.trt_env import tensorrt_module

        env["tensorrt"] = tensorrt_module().__version__
    except Exception as e:  # noqa: BLE001
        env["tensorrt"] = f"unavailable ({str(e).split(';')[0]})"
    return env


def calibration_file(where: Path, n: int) -> Path:
    """An even spread of `n` texts from embcc's built-in calibration corpus (fp16 islands are measured on it)."""
    from embcc.calibration.data import builtin

    texts = builtin()
    step = max(1, len(texts) // n)
    path = where / "calibration.jsonl"
    path.write_text("".join(json.dumps({"text": t.text}, ensure_ascii=False) + "\n" for t in texts[::step][:n]))
    return path


def torch_cuda_embedder(bundle, *, half: bool, max_length: int | None, device: str):
    """embcc's adapted torch graph on `device`, fp32 or fp16, numpy in and out: the torch side of the speed table
    and a CUDA fp16 row checked against the reference (never itself the reference)."""
    import torch

    from embcc.export.torch_embedder import TorchEmbedder

    class OnDevice(TorchEmbedder):
        runtime = f"torch-{device} {'fp16' if half else 'fp32'}"

        def __init__(self) -> None:
            super().__init__(bundle, max_length=max_length)
            self._moved: tuple[int | None, object] | None = None

        def on_device(self, task_id: int | None):
            if self._moved is None or self._moved[0] != task_id:
                self._moved = None
                g = self.graph(task_id).to(device)
                self._moved = (task_id, g.half() if half else g)
            return self._moved[1]

        def _embed(self, input_ids, attention_mask, task_id):
            g = self.on_device(task_id)
            with torch.inference_mode():
                _, s = g(torch.from_numpy(input_ids).to(device), torch.from_numpy(attention_mask).to(device))
            return s.float().cpu().numpy()

    return OnDevice()


def parity_rows(check: Check, name: str, runtime: str, embedder, ref, tasks, bar: dict, gated: bool,
                max_length: int) -> None:
    from embcc.verify import parity

    for r in parity(embedder, ref, tasks=tasks, bar=bar, name=name, role=embedder.spec.role, max_length=max_length):
        row = {"family": name, "runtime": runtime, "task": r.task, "min_cosine": r.min_cosine,
               "mean_cosine": r.mean_cosine, "max_abs_diff": r.max_abs_diff, "bar": bar, "passed": r.passed,
               "gated": gated}
        check.parity.append(row)
        print(f"  {name:<9} {runtime:<22} {str(r.task or '-'):<18} min cos {r.min_cosine:.6f} "
              f"max|d| {r.max_abs_diff:.2e} {'pass' if r.passed else 'FAIL'}{'' if gated else ' (reported)'}", flush=True)


def run_parity(check: Check, args, work: Path, calib: Path, caps: dict) -> None:
    from embcc.families import load
    from embcc.fixtures import write_fixture
    from embcc.pipeline import export
    from embcc.reference import reference_for
    from embcc.runtimes import open_artifact

    for fam in args.families:
        fixture, layout, lora = FAMILIES[fam]
        print(f"parity: {fam}", flush=True)
        try:
            ck = work / f"ck-{fam}"
            if not ck.exists():
                write_fixture(fixture, ck, size="tiny", layout=layout, seed=0)
            bundle = load(ck)
            art = work / f"{fam}-onnx-fp16"
            if not art.exists():
                export(ck, art, precision="fp16", lora=lora, max_length=args.max_length, calibration=str(calib),
                       calibration_max_length=128, cache_dir=work / "cache")
        except Exception as e:  # noqa: BLE001
            check.failed(f"{fam}: fixture / fp16 ONNX export", e)
            continue
        ref = reference_for(ck)  # transformers + PEFT (or the float64 JinaBERT) from the checkpoint's files
        tasks = [t.name for t in bundle.spec.tasks] or [None]
        if caps["ort_cuda"]:
            try:
                parity_rows(check, fam, "onnxruntime-cuda fp16", open_artifact(art, device="cuda",
                                                                               max_length=args.max_length),
                            ref, tasks, FP16_BAR, True, args.max_length)
            except Exception as e:  # noqa: BLE001
                check.failed(f"{fam}: onnxruntime-cuda fp16", e)
        else:
            check.skip(f"{fam}: onnxruntime-cuda fp16", caps["ort_cuda_why"])
        try:
            parity_rows(check, fam, "onnxruntime-cpu fp16", open_artifact(art, max_length=args.max_length), ref, tasks,
                        FP16_BAR, True, args.max_length)
        except Exception as e:  # noqa: BLE001
            check.failed(f"{fam}: onnxruntime-cpu fp16", e)
        if caps["cuda"]:
            for half in (False, True):
                label = f"torch-cuda {'fp16' if half else 'fp32'}"
                try:
                    emb = torch_cuda_embedder(bundle, half=half, max_length=args.max_length, device="cuda")
                    # fp16 on torch is the CUDA fp16 check where onnxruntime-gpu is missing; fp32 is a sanity row
                    parity_rows(check, fam, label, emb, ref, tasks, FP16_BAR if half else FP32_BAR,
                                half and not caps["ort_cuda"], args.max_length)
                except Exception as e:  # noqa: BLE001
                    check.failed(f"{fam}: {label}", e)
        else:
            check.skip(f"{fam}: torch-cuda fp32/fp16", caps["cuda_why"])
        if caps["tensorrt"]:
            for precision in args.trt_precisions:
                label = f"tensorrt {precision}"
                try:
                    eng = work / f"{fam}-trt-{precision}"
                    if not eng.exists():
                        export(ck, eng, fmt="tensorrt", precision=precision, lora=lora, max_length=args.max_length,
                               calibration=None if precision == "fp32" else str(calib),
                               calibration_max_length=None if precision == "fp32" else 128, cache_dir=work / "cache")
                    from embcc.verify import BARS

                    parity_rows(check, fam, label, open_artifact(eng, max_length=args.max_length), ref, tasks,
                                BARS[precision], True, args.max_length)
                except Exception as e:  # noqa: BLE001
                    check.failed(f"{fam}: {label}", e)
        else:
            check.skip(f"{fam}: tensorrt", caps["tensorrt_why"])


def _timed(fn, seconds: float, min_runs: int = 5, warmup: int = 5) -> float:
    """Median seconds per call. Warm-up first: torch's first calls at a new shape run several times slower
    (measured: 4 calls at ~0.33 s, then 0.3 ms, on a tiny v2 on CPU); CUDA adds kernel selection and allocation."""
    for _ in range(warmup):
        fn()
    runs: list[float] = []
    start = time.perf_counter()
    while len(runs) < min_runs or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return float(np.median(runs))


def run_speed(check: Check, args, work: Path, calib: Path, caps: dict) -> None:
    from embcc.families import load
    from embcc.fixtures import write_fixture
    from embcc.pipeline import export
    from embcc.runtimes import open_artifact

    device = "cuda" if caps["cuda"] else "cpu"
    if device == "cpu" and not args.dry_run:
        check.skip("speed", caps["cuda_why"])
        return
    size = "tiny" if args.dry_run else args.speed_size
    shapes = [(1, 16), (2, 32)] if args.dry_run else SHAPES
    max_length = max(length for _, length in shapes)
    print(f"speed: {args.speed_model} ({size}) on {device}", flush=True)
    try:
        ck = work / f"speed-{args.speed_model}-{size}"
        if not ck.exists():
            write_fixture(args.speed_model, ck, size=size, seed=0)
        bundle = load(ck)
        art = work / f"speed-{args.speed_model}-{size}-onnx-fp16"
        if not art.exists():
            export(ck, art, precision="fp16", max_length=max_length, calibration=str(calib), calibration_max_length=128,
                   cache_dir=work / "cache", **({"lora": "merge", "task": bundle.spec.tasks[0].name}
                                                if bundle.lora is not None else {}))
    except Exception as e:  # noqa: BLE001
        check.failed("speed: fixture / fp16 ONNX export", e)
        return
    runners: dict[str, object] = {}
    for half in (False, True):
        try:
            runners[f"torch-{device} {'fp16' if half else 'fp32'}"] = torch_cuda_embedder(
                bundle, half=half, max_length=max_length, device=device)
        except Exception as e:  # noqa: BLE001
            check.failed(f"speed: torch-{device}", e)
    if caps["ort_cuda"]:
        try:
            runners["onnxruntime-cuda fp16"] = open_artifact(art, device="cuda", max_length=max_length)
        except Exception as e:  # noqa: BLE001
            check.failed("speed: onnxruntime-cuda fp16", e)
    else:
        check.skip("speed: onnxruntime-cuda fp16", caps["ort_cuda_why"])
        if args.dry_run:
            runners["onnxruntime-cpu fp16"] = open_artifact(art, max_length=max_length)
    if caps["tensorrt"]:
        try:
            eng = work / f"speed-{args.speed_model}-{size}-trt-fp16"
            if not eng.exists():
                export(ck, eng, fmt="tensorrt", precision="fp16", max_length=max_length, calibration=str(calib),
                       calibration_max_length=128, cache_dir=work / "cache",
                       **({"lora": "merge", "task": bundle.spec.tasks[0].name} if bundle.lora is not None else {}))
            runners["tensorrt fp16"] = open_artifact(eng, max_length=max_length)
        except Exception as e:  # noqa: BLE001
            check.failed("speed: tensorrt fp16", e)
    else:
        check.skip("speed: tensorrt fp16", caps["tensorrt_why"])
    rng = np.random.default_rng(0)
    task = bundle.spec.tasks[0].id if bundle.spec.tasks else None
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(ck / "tokenizer.json")).get_vocab_size()
    for batch, length in shapes:
        ids = rng.integers(5, min(vocab, 30000), size=(batch, length)).astype(np.int64)
        mask = np.ones_like(ids)
        base = None
        for name, emb in runners.items():
            try:
                t = _timed(lambda emb=emb, ids=ids, mask=mask: emb._embed(ids, mask, task), args.seconds)
            except Exception as e:  # noqa: BLE001
                check.failed(f"speed: {name} at {batch}x{length}", e)
                continue
            if name.endswith("fp32") and name.startswith("torch"):
                base = t
            row = {"runtime": name, "batch": batch, "length": length, "ms": t * 1e3,
                   "tokens_per_s": batch * length / t}
            check.speed.append(row)
        for row in check.speed:
            if row["batch"] == batch and row["length"] == length and base:
                row["speedup_vs_torch_fp32"] = base / (row["ms"] / 1e3)
    check.speed_model = f"{args.speed_model} ({size}), fp16 ONNX, max length {max_length}, on {device}"


def capabilities(args) -> dict:
    caps = {"cuda": False, "cuda_why": "", "ort_cuda": False, "ort_cuda_why": "", "tensorrt": False,
            "tensorrt_why": ""}
    try:
        import torch

        caps["cuda"] = torch.cuda.is_available()
        caps["cuda_why"] = "" if caps["cuda"] else f"torch {torch.__version__} sees no CUDA device"
        if caps["cuda"]:
            torch.backends.cuda.matmul.allow_tf32 = False  # an honest fp32 denominator
            torch.backends.cudnn.allow_tf32 = False
    except Exception as e:  # noqa: BLE001
        caps["cuda_why"] = f"torch unavailable ({e})"
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        caps["ort_cuda"] = True
    else:
        caps["ort_cuda_why"] = (f"onnxruntime {ort.__version__} here is the CPU package (no CUDAExecutionProvider); "
                                "carry onnxruntime-gpu in parts (scripts/gpu_check.sh wheelhouse)")
    if args.no_tensorrt:
        caps["tensorrt_why"] = "--no-tensorrt"
    else:
        try:
            from embcc.core.trt_env import gpu_info, tensorrt_module

            tensorrt_module()
            gpu_info()
            caps["tensorrt"] = True
        except Exception as e:  # noqa: BLE001
            caps["tensorrt_why"] = str(e).split(";")[0]
    return caps


def print_tables(check: Check, env: dict) -> None:
    print("\n== environment")
    for k, v in env.items():
        print(f"  {k}: {v}")
    if check.parity:
        print("\n== parity (fp16 bar: min cosine >= 0.999 vs torch fp32 on the CPU; worst task per row)")
        head = f"  {'family':<9} {'runtime':<22} {'tasks':>5} {'min cos':>10} {'max |d|':>9}  result"
        print(head + "\n  " + "-" * (len(head) - 2))
        seen: dict[tuple[str, str], list[dict]] = {}
        for r in check.parity:
            seen.setdefault((r["family"], r["runtime"]), []).append(r)
        for (fam, rt), rows in seen.items():
            worst = min(rows, key=lambda r: r["min_cosine"])
            ok = all(r["passed"] for r in rows)
            print(f"  {fam:<9} {rt:<22} {len(rows):>5} {worst['min_cosine']:>10.6f} "
                  f"{max(r['max_abs_diff'] for r in rows):>9.2e}  "
                  f"{('pass' if ok else 'FAIL') if rows[0]['gated'] else ('within bar' if ok else 'outside bar') + ' (reported)'}")
    if check.speed:
        print(f"\n== speed: {getattr(check, 'speed_model', '')}; median ms per batch (numpy in/out on every side)")
        print(f"  {'runtime':<22} {'shape':>9} {'ms':>9} {'tokens/s':>11} {'vs torch fp32':>14}")
        for r in check.speed:
            sp = r.get("speedup_vs_torch_fp32")
            print(f"  {r['runtime']:<22} {r['batch']:>4}x{r['length']:<4} {r['ms']:>9.3f} {r['tokens_per_s']:>11.0f} "
                  f"{(f'{sp:.2f}x' if sp else '-'):>14}")
    print("\n== could not run" if check.not_run else "\n== everything ran")
    for line in check.not_run:
        print(f"  - {line}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(os.environ.get("EMBCC_GPU_OUT", "gpu-check-out")),
                   help="results (gpu_check.json, gpu_check.log)")
    p.add_argument("--work", type=Path, default=Path(os.environ.get("EMBCC_GPU_WORK", ".gpu-work")),
                   help="fixtures, exports, engines and caches; reused by a later run (split a long check in calls)")
    p.add_argument("--dry-run", action="store_true", help="CPU fallback: v2 only, tiny speed model, short timings")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    p.add_argument("--max-length", type=int, default=512, help="parity artifacts' max length")
    p.add_argument("--speed-model", default="jina-v2-small")
    p.add_argument("--speed-size", default="full")
    p.add_argument("--seconds", type=float, default=1.5, help="measuring time per runtime and shape")
    p.add_argument("--calibration-texts", type=int, default=48)
    p.add_argument("--trt-precisions", nargs="+", default=["fp16"], choices=["fp32", "fp16", "int8"])
    p.add_argument("--no-tensorrt", action="store_true")
    p.add_argument("--no-speed", action="store_true")
    args = p.parse_args()
    if args.dry_run:
        args.families, args.seconds = ["v2"], min(args.seconds, 0.2)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    check = Check(args.out)
    env = environment()
    caps = capabilities(args)
    print("environment:", json.dumps(env), flush=True)
    calib = calibration_file(work, args.calibration_texts)
    run_parity(check, args, work, calib, caps)
    parity_s = time.perf_counter() - started
    if args.no_speed:
        check.skip("speed", "--no-speed")
    else:
        run_speed(check, args, work, calib, caps)
    print_tables(check, env)
    elapsed = time.perf_counter() - started
    print(f"\ntook {elapsed:.0f} s (parity {parity_s:.0f} s, speed {elapsed - parity_s:.0f} s); exports and engines stay "
          f"in {work} for a next run")
    result = {"environment": env, "capabilities": caps, "parity": check.parity, "speed": check.speed,
              "speed_model": getattr(check, "speed_model", None), "not_run": check.not_run,
              "seconds": {"parity": parity_s, "total": elapsed},
              "passed": all(r["passed"] for r in check.parity if r["gated"])}
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresults: {args.out / 'gpu_check.json'} (tracebacks: {args.out / 'gpu_check.log'})")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
