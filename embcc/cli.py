"""embcc command line: parses, calls the library, prints. Bad input: one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from embcc import __version__
from embcc.core.errors import EmbccError

PATH_OPTIONS = ("calibration", "cache_dir")
DESCRIPTION = """Export Jina embedding checkpoints to ONNX (ONNX Runtime), GGUF (llama.cpp) and TensorRT
artifacts, and prove each artifact's parity against an independent PyTorch reference (transformers + PEFT):
`embcc verify` writes parity.json, parity.md and parity.html."""
EPILOG = """exit codes:
  0  done (verify: every parity bar met)
  1  a parity bar failed (verify, build)
  2  bad input (a usage error, a bad checkpoint, artifact or option), or a crash of native code
     (llama.cpp) contained in its child process
  130, 143  interrupted (SIGINT, SIGTERM); nothing half-written is left behind"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: one line, exit 2
        self.exit(2, f"embcc: error: {message}; see `{self.prog} --help`\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="embcc", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"embcc {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    f = sub.add_parser("fixture", help="write a random-weight checkpoint in a published layout")
    f.add_argument("name", help="jina-v2-small | jina-v2-base | jina-v3 | jina-v5-small | jina-v5-nano")
    f.add_argument("out", type=Path, help="directory to write the checkpoint into")
    f.add_argument("--size", default="tiny", choices=["tiny", "tiny256", "full", "base"],
                   help="tiny for tests (tiny256: sizes that are multiples of 256, for K-quants), full for benchmarks")
    f.add_argument("--layout", default=None, help="original | hf (v3); base | premerged (v5)")
    f.add_argument("--seed", type=int, default=0, help="random seed of the weights (default 0)")

    def export_options(q: argparse.ArgumentParser) -> None:
        from embcc.export import FORMATS
        from embcc.export.options import COMMON

        q.add_argument("--format", dest="fmt", default="onnx", choices=list(FORMATS),
                       help="artifact format (default onnx)")
        for o in COMMON:
            q.add_argument(o.flag, dest=o.name, type=o.type, default=None, choices=o.choices, help=o.help)
        seen: set[str] = set()
        for name, f in FORMATS.items():
            group = q.add_argument_group(f"--format {name}")
            for o in f.options:
                if o.name in seen:
                    continue
                seen.add(o.name)
                group.add_argument(o.flag, dest=o.name, type=Path if o.name in PATH_OPTIONS else o.type,
                                   default=None, choices=o.choices, help=o.help)

    e = sub.add_parser("export", help="export a checkpoint to an artifact directory")
    e.add_argument("checkpoint", type=Path, help="the checkpoint directory (a Hugging Face snapshot or a fixture)")
    e.add_argument("--out", type=Path, required=True, help="artifact directory to create (must not exist)")
    e.add_argument("--source", default=None, help="where the checkpoint came from (e.g. jinaai/jina-embeddings-v3), "
                   "recorded in manifest.json and README.md")
    e.add_argument("--revision", default=None, help="the checkpoint's revision (e.g. a commit), recorded likewise")
    export_options(e)

    v = sub.add_parser("verify", help="compare an artifact with the torch reference; writes parity.json, "
                       "parity.md and parity.html")
    v.add_argument("artifact", type=Path, help="the artifact directory (what export wrote)")
    v.add_argument("--reference", type=Path, required=True, help="the checkpoint directory")
    v.add_argument("--device", default=None, choices=["cpu", "cuda"],
                   help="where the artifact runs (default: its own: TensorRT on the GPU, the rest on the CPU)")

    b = sub.add_parser("build", help="export (LoRA merged and kept) and verify; a built-in v3 fixture by default")
    b.add_argument("checkpoint", type=Path, nargs="?", default=None,
                   help="a checkpoint directory, or a RECIPE.toml (a matrix of artifacts: docs/recipe.md); "
                   "default: a built-in tiny v3 fixture")
    b.add_argument("--out", type=Path, default=None, help="output directory (default: embcc-build, or the recipe's `out`)")
    b.add_argument("--rope-theta", type=float, default=None, help="RoPE base (default: the checkpoint's)")
    b.add_argument("--max-length", type=int, default=None, help="truncation length recorded in the artifacts")
    b.add_argument("--ray", action="store_true", help="recipe: one Ray task per artifact on a local Ray")
    b.add_argument("--ray-address", default=None, help="recipe: run the artifacts on the Ray cluster at ADDR")
    for q in (e, v, b):
        q.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")

    k = sub.add_parser("package", help="lay an artifact out for a serving stack (triton: a model repository)")
    k.add_argument("artifact", type=Path, help="the artifact directory (what export wrote)")
    k.add_argument("--layout", required=True, choices=["triton"], help="serving stack layout")
    k.add_argument("--out", type=Path, required=True, help="directory to create")
    k.add_argument("--name", default=None, help="model name (default: the artifact directory's name)")
    k.add_argument("--model-file", default=None, help="which graph of the artifact (default: model.onnx)")
    k.add_argument("--max-batch-size", type=int, default=32, help="Triton max_batch_size (graphs without task_id)")

    n = sub.add_parser("bench", help="texts/s and tokens/s of an artifact against the torch reference")
    n.add_argument("artifact", type=Path, help="the artifact directory (what export wrote)")
    n.add_argument("--reference", type=Path, required=True, help="the checkpoint directory")
    n.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the runtime's)")
    n.add_argument("--seconds", type=float, default=3.0, help="minimum measuring time per regime and runtime")
    n.add_argument("--json", type=Path, default=None, help="also write the results here")
    n.add_argument("--regimes", default="short", help="short (1x16, 32x128 tokens), long (1x8192, 4 texts of "
                   "512..8192: minutes), or both: short,long")
    n.add_argument("--device", default=None, choices=["cpu", "cuda"], help="where the artifact (and the torch and "
                   "plain sides) run (default: the artifact's own)")
    n.add_argument("--no-memory", action="store_true", help="skip the peak-RSS children (one per side)")
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds (staged outputs removed) as on Ctrl-C."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else argv)[:1] == ["bench"] and "torch" not in sys.modules:
        import os  # before the parser imports torch: its OpenMP pool then waits passively (docs/bench.md)

        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse: --help / --version (0) or a usage error (2, one line already printed)
        return int(e.code or 0)
    # SIGTERM (kill, a container stopping) cleans up like SIGINT; signal handlers can only be set in the main thread
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        return _run(args)
    except EmbccError as e:
        print(f"embcc: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # SIGINT or SIGTERM: what was being written is gone (staged, never renamed)
        name = "SIGTERM" if isinstance(e, Terminated) else "SIGINT"
        print(f"embcc: interrupted ({name})", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
    finally:
        if main_thread and previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if getattr(args, "quiet", False):  # --quiet lasts one command (main may be called again in-process)
            from embcc.core import progress

            progress.configure(None)


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "quiet", False):
        from embcc.core import progress

        progress.configure(False)
    if args.command == "fixture":
        from embcc.fixtures import write_fixture

        write_fixture(args.name, args.out, size=args.size, layout=args.layout, seed=args.seed)
        print(f"wrote {args.name} ({args.size}) fixture to {args.out}")
        return 0
    if args.command == "export":
        from embcc.export.options import option_values
        from embcc.pipeline import export

        out = export(args.checkpoint, args.out, fmt=args.fmt, cli=True, source=args.source, revision=args.revision,
                     **option_values(args))
        print(f"wrote {out}")
        return 0
    if args.command == "verify":
        from embcc.verify import format_table, verify

        report = verify(args.artifact, args.reference, device=args.device)
        print(format_table(report))
        print(f"wrote {report['written_to']} and the report beside it: {Path(report['written_to']).stem}.html, .md")
        return 0 if report["passed"] else 1
    if args.command == "build":
        from embcc.build import build

        if args.checkpoint is not None and (args.checkpoint.is_file() or args.checkpoint.suffix == ".toml"):
            from embcc.recipe import run_recipe

            for flag, value in (("--rope-theta", args.rope_theta), ("--max-length", args.max_length)):
                if value is not None:
                    raise EmbccError(f"{flag} does not apply to a recipe", f"set {flag[2:].replace('-', '_')} in "
                                     "the recipe's [[build]] entries (docs/recipe.md)")
            summary = run_recipe(args.checkpoint, out=args.out, ray=args.ray, ray_address=args.ray_address)
            return 0 if summary["passed"] else 1
        if args.ray or args.ray_address:
            raise EmbccError("--ray applies to a RECIPE.toml, not a checkpoint directory",
                             "write a recipe (docs/recipe.md), or leave out --ray")
        out = args.out or Path("embcc-build")
        return 0 if build(args.checkpoint, out, rope_theta=args.rope_theta, max_length=args.max_length) else 1
    if args.command == "package":
        from embcc.package import package

        out = package(args.artifact, args.out, layout=args.layout, name=args.name, model_file=args.model_file,
                      max_batch_size=args.max_batch_size)
        print(f"wrote {out}")
        return 0
    if args.command == "bench":
        from embcc.bench import bench, format_bench

        result = bench(args.artifact, args.reference, threads=args.threads, seconds=args.seconds,
                       regimes=args.regimes, device=args.device, memory=not args.no_memory)
        print(format_bench(result))
        if args.json:
            import json

            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
