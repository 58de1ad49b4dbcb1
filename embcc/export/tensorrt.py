"""TensorRT engines, built from embcc's own ONNX artifact through TensorRT's Python API.

    embcc export CKPT --out OUT --format tensorrt --precision fp32|fp16|int8 [--profile batch=1:16:64,seq=1:128:512]

The precision passes are the ONNX format's (same options, same checks), and TensorRT always reads the standard-ops
graph (`model.portable.onnx` where an artifact has one, else `model.onnx`): fp32 is the traced graph (the artifact's
`model.onnx` holds ONNX Runtime's fused attention, com.microsoft ops TensorRT cannot parse); fp16 the fp16 graph with
its measured fp32 islands; int8 the portable explicit-QDQ graph (ONNX Runtime's own int8 form is never fed to
TensorRT). That graph is prepared (rank-less inputs fixed: task_id -> [1]), checked by export/trt_ready.py, and parsed:

- TensorRT 11 builds strongly typed networks only: precision comes from the graph's types and QDQ pairs; no builder
  precision flags exist.
- TensorRT 10.x: a weakly typed network with builder flags: FP16 (the graph's fp32 layers pinned to fp32 with
  PREFER_PRECISION_CONSTRAINTS, so the measured islands stay fp32) or INT8 (explicit quantization: the QDQ pairs).
- TF32 is off at every precision: fp32 must meet the fp32 bar, and fp32 islands exist for their accuracy.

One optimization profile per `--profile` (several separated by ';'): input_ids and attention_mask [batch, seq];
task_id (kept adapters) is [1] and needs none. By default: batch 1:16:64 over seq 1:128:max_length when the
artifact's max length is at most 512; beyond that a second profile for long inputs, seq 513:min(max,2048):max with
a batch capped at 32,768 tokens. A timing cache (keyed by TensorRT version, GPU and compute capability, in the cache
directory, --cache-dir) is read before each build and written after it.

Each engine directory: model.plan, model.trt.onnx (+ its external data), precision.json (fp16/int8), the tokenizer
files, embcc.json and engine.json (TensorRT version, GPU, compute capability, profiles, network mode, flags,
readiness notes). manifest.json records the TensorRT version, GPU and compute capability as well.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import onnx

from embcc.core.adapted import Adapted
from embcc.core.bundle import Bundle
from embcc.core.errors import EmbccError
from embcc.core.files import write_atomic
from embcc.core.spec import ModelSpec
from embcc.core.trt_env import (
    ENGINE_FILE,
    ENGINE_META,
    SOURCE_ONNX,
    environment,
    tensorrt_major,
    tensorrt_module,
)
from embcc.export.base import Option, Plan
from embcc.export.onnx import OnnxFormat

log = logging.getLogger("embcc.tensorrt")

PORTABLE_FORMS = ("model.portable.onnx", "model.onnx")  # the first that exists is built; never model.ort.onnx
OTHER_FORMS = ("model.ort.onnx",)
DEFAULT_BATCH = (1, 16, 64)
SHORT = 512  # one profile up to this max length; beyond it, a second one for long inputs
LONG_OPT = 2048
LONG_TOKENS = 32768  # batch x seq cap of the long profile (64 x 512, the short profile's largest batch)
TIMING_CACHE_FORMAT = 1
PROFILE = Option("profile", "--profile",
                 "TensorRT optimization profile(s): batch=MIN:OPT:MAX,seq=MIN:OPT:MAX, several separated by ';' "
                 "(default: batch 1:16:64, seq 1:128:max-length, plus a long-input profile past 512 tokens)")
AXES = ("batch", "seq")

Range = tuple[int, int, int]


@dataclass(frozen=True)
class Profile:
    """One optimization profile: MIN/OPT/MAX of batch and sequence length (None: derive it)."""

    batch: Range | None = None
    seq: Range | None = None

    def text(self) -> str:
        return ",".join(f"{axis}={':'.join(map(str, r))}" for axis, r in (("batch", self.batch), ("seq", self.seq))
                        if r is not None)

    def as_dict(self) -> dict[str, list[int]]:
        return {"batch": list(self.batch or ()), "seq": list(self.seq or ())}

    def fits(self, batch: int, seq: int) -> bool:
        assert self.batch is not None and self.seq is not None
        return self.batch[0] <= batch <= self.batch[2] and self.seq[0] <= seq <= self.seq[2]


def _range(axis: str, text: str, flag: str) -> Range:
    parts = [p.strip() for p in text.split(":")]
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3:
        raise EmbccError(f"{flag} {axis}={text} must be MIN:OPT:MAX or one number",
                         f"write e.g. {flag} batch=1:16:64,seq=1:128:512")
    try:
        lo, opt, hi = (int(p) for p in parts)
    except ValueError:
        raise EmbccError(f"{flag} {axis}={text} is not made of whole numbers",
                         f"write e.g. {flag} batch=1:16:64,seq=1:128:512") from None
    if lo < 1:
        raise EmbccError(f"{flag} {axis}={text} starts below 1", f"start {axis} at 1 or more")
    if not lo <= opt <= hi:
        raise EmbccError(f"{flag} {axis}={text} needs MIN <= OPT <= MAX", f"reorder it, e.g. {axis}={lo}:{lo}:{max(hi, lo)}")
    return (lo, opt, hi)


def parse_profiles(value: str | list[str] | tuple[str, ...] | None, flag: str = "--profile") -> list[Profile]:
    """`batch=1:16:64,seq=1:128:512[;...]` (or a list of such strings) -> profiles; [] for None (derive all)."""
    if value is None:
        return []
    texts = [value] if isinstance(value, str) else list(value)
    items = [p.strip() for t in texts for p in str(t).split(";")]
    if not items or any(not p for p in items):
        raise EmbccError(f"{flag} has an empty profile", f"write e.g. {flag} batch=1:16:64,seq=1:128:512")
    profiles = []
    for item in items:
        given: dict[str, Range] = {}
        for part in item.split(","):
            axis, eq, text = part.partition("=")
            axis = axis.strip().lower()
            if not eq or not text.strip():
                raise EmbccError(f"{flag} part {part.strip()!r} is not AXIS=MIN:OPT:MAX",
                                 f"write e.g. {flag} batch=1:16:64,seq=1:128:512")
            if axis not in AXES:
                raise EmbccError(f"unknown {flag} axis {axis!r}", "use batch and seq (tokens per text)")
            if axis in given:
                raise EmbccError(f"{flag} names {axis} twice in {item!r}", "give each axis once per profile")
            given[axis] = _range(axis, text.strip(), flag)
        profiles.append(Profile(given.get("batch"), given.get("seq")))
    return profiles


def default_profiles(max_length: int) -> list[Profile]:
    """Short inputs at batch 1:16:64; past SHORT tokens, a second profile for long ones (batch x seq capped)."""
    if max_length <= SHORT:
        return [Profile(DEFAULT_BATCH, (1, min(128, max_length), max_length))]
    long_batch = max(1, LONG_TOKENS // max_length)
    return [Profile(DEFAULT_BATCH, (1, 128, SHORT)),
            Profile((1, 1, long_batch), (SHORT + 1, min(LONG_OPT, max_length), max_length))]


def resolve_profiles(profiles: list[Profile], max_length: int, flag: str = "--profile") -> list[Profile]:
    """Fill the axes a profile left out and refuse sequence ranges past the artifact's max length."""
    if not profiles:
        return default_profiles(max_length)
    out = []
    for p in profiles:
        seq = p.seq or (1, min(128, max_length), max_length)
        if seq[2] > max_length:
            raise EmbccError(f"{flag} seq max {seq[2]} is beyond the artifact's max length {max_length}",
                             f"lower it to {max_length} or less, or export with a larger "
                             f"{'--max-length' if flag.startswith('--') else 'max_length'}")
        out.append(Profile(p.batch or DEFAULT_BATCH, seq))
    return out


def network_mode(version: str) -> str:
    return "strongly typed" if tensorrt_major(version) >= 11 else "weakly typed, builder flags"


def timing_cache_key(env: dict[str, str]) -> str:
    """Timings hold for one TensorRT version on one kind of GPU: the key is those and nothing else."""
    key = {"format": TIMING_CACHE_FORMAT, **{k: env[k] for k in ("tensorrt", "gpu", "compute_capability")}}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def timing_cache_path(cache_dir: Path | str | None, env: dict[str, str]) -> Path:
    from embcc.calibration.cache import default_dir

    root = Path(cache_dir) if cache_dir is not None else default_dir()
    try:
        (root / "tensorrt").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EmbccError(f"cannot create the TensorRT timing cache in {root} ({e.strerror})",
                         "pass a writable --cache-dir") from e
    return root / "tensorrt" / f"timing-{timing_cache_key(env)}.cache"


def engine_manifest(*, env: dict[str, str], precision: str, profiles: list[Profile], build: dict[str, Any],
                    onnx_from: str, notes: list[str]) -> dict[str, Any]:
    """engine.json: what the runtime checks before it opens the engine, and what a reader needs to rebuild it."""
    return {
        "engine": ENGINE_FILE,
        "onnx": SOURCE_ONNX,
        "onnx_from": onnx_from,
        "precision": precision,
        **{k: env[k] for k in ("tensorrt", "gpu", "compute_capability")},
        "network": build["network"],
        "builder_flags": build["flags"],
        "tf32": False,
        "profiles": [p.as_dict() for p in profiles],
        "inputs": build.get("inputs", {}),
        "outputs": build.get("outputs", {}),
        "timing_cache_key": timing_cache_key(env),
        "readiness_notes": notes,
    }


# ---- building -------------------------------------------------------------------------------------------------


def _logger(trt: ModuleType):
    class Collecting(trt.ILogger):
        """TensorRT's messages: errors kept for the one-line message, everything else to embcc's log."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg) -> None:  # TensorRT's interface
            sev = trt.ILogger.Severity
            if severity == sev.ERROR or severity == sev.INTERNAL_ERROR:
                self.errors.append(str(msg))
            elif severity == sev.WARNING:
                log.info("TensorRT: %s", msg)

    return Collecting()


def _pin_float_layers(trt: ModuleType, network) -> int:
    """Weakly typed fp16 (TensorRT 10): keep the graph's fp32 layers fp32 (the measured islands)."""
    pinned = 0
    skip = {getattr(trt.LayerType, n) for n in ("CONSTANT", "SHAPE", "IDENTITY") if hasattr(trt.LayerType, n)}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        outs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if layer.type in skip or not outs or any(o.dtype != trt.float32 for o in outs):
            continue
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        pinned += 1
    return pinned


def build_engine(trt: ModuleType, onnx_path: Path, profiles: list[Profile], precision: str, *,
                 timing_cache: Path | None) -> tuple[bytes, dict[str, Any]]:
    """Parse `onnx_path` and build a serialized engine with one optimization profile per entry of `profiles`."""
    version = str(trt.__version__)
    strong = tensorrt_major(version) >= 11
    logger = _logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    if strong and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):  # TensorRT 11: accepted, ignored
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)] + logger.errors
        raise EmbccError(f"TensorRT {version} cannot parse {onnx_path.name}: {errors[0] if errors else 'no reason given'}",
                         "check the graph with `python -m embcc.export.trt_ready FILE` and report it")
    config = builder.create_builder_config()
    used: list[str] = []
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if not strong and precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
        pinned = _pin_float_layers(trt, network)
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        used += ["FP16", "PREFER_PRECISION_CONSTRAINTS", f"{pinned} fp32 layers pinned"]
    elif not strong and precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        used.append("INT8")
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    for p in profiles:
        prof = builder.create_optimization_profile()
        assert p.batch is not None and p.seq is not None
        for t in inputs:
            shape = tuple(t.shape)
            if all(d >= 0 for d in shape):
                continue  # static (task_id [1])
            if len(shape) != 2:
                raise EmbccError(f"input {t.name} has dynamic shape {shape}; embcc's profiles cover [batch, seq] inputs",
                                 "export the graph with [batch, seq] token inputs")
            prof.set_shape(t.name, (p.batch[0], p.seq[0]), (p.batch[1], p.seq[1]), (p.batch[2], p.seq[2]))
        config.add_optimization_profile(prof)
    blob = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else b""
    try:
        cache = config.create_timing_cache(blob)
    except Exception:  # noqa: BLE001 - an unreadable cache only costs time: start a fresh one
        log.info("TensorRT timing cache %s unreadable; starting a new one", timing_cache)
        blob = b""
        cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        reason = logger.errors[-1] if logger.errors else "no reason given"
        raise EmbccError(f"TensorRT {version} could not build the engine: {reason}",
                         "try a smaller --profile (memory), or another --precision")
    if timing_cache is not None:
        write_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))
    info = {
        "network": network_mode(version),
        "flags": used,
        "timing_cache": "hit" if blob else "miss",
        "inputs": {t.name: str(t.dtype) for t in inputs},
        "outputs": {network.get_output(i).name: str(network.get_output(i).dtype) for i in range(network.num_outputs)},
    }
    return bytes(serialized), info


# ---- the format -----------------------------------------------------------------------------------------------


def portable_onnx(where: Path) -> Path:
    """The ONNX graph TensorRT is built from: model.portable.onnx where it exists, else model.onnx."""
    for name in PORTABLE_FORMS:
        if (where / name).is_file():
            return where / name
    raise EmbccError(f"{where} holds no portable ONNX graph ({' or '.join(PORTABLE_FORMS)})",
                     "this is a bug in the ONNX step; report it")


def _external_files(path: Path) -> set[str]:
    model = onnx.load(str(path), load_external_data=False)
    return {e.value for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
            for e in t.external_data if e.key == "location"}


class TensorRtFormat(OnnxFormat):
    """The ONNX format's precisions and calibration, then a TensorRT engine per artifact directory."""

    name = "tensorrt"
    options = (*OnnxFormat.options, PROFILE)

    def check(self, bundle: Bundle, values: dict[str, Any], *, cli: bool) -> dict[str, Any]:
        flag = "--profile" if cli else "profile"
        out = super().check(bundle, {k: v for k, v in values.items() if k != "profile"}, cli=cli)
        if values.get("int8_mode") == "dynamic":
            mode = "--int8-mode" if cli else "int8_mode"
            raise EmbccError(f"{mode} dynamic writes ONNX Runtime's integer ops, which TensorRT does not take",
                             f"leave out {mode} (TensorRT builds the static QDQ graph)")
        profiles = parse_profiles(values.get("profile"), flag)
        trt = tensorrt_module()  # one line, nothing on disk, where TensorRT is absent
        out.update(profiles=profiles, profile_flag=flag, cache_dir=values.get("cache_dir"),
                   environment=environment(trt))
        return out

    def recorded(self, plan: Plan) -> dict[str, Any]:
        v = plan.values
        return {**super().recorded(plan), "profiles": [p.text() for p in v["profiles"]] or "default",
                "tensorrt": dict(v["environment"])}

    def write_onnx(self, adapted: Adapted, where: Path, plan: Plan) -> tuple[ModelSpec, Path, str]:
        """The ONNX step (the onnx format's, into `where`), then the prepared graph TensorRT parses; the other
        graph files are removed. Returns the spec, the prepared graph and the name of the form it came from."""
        from embcc.export.trt_ready import prepare_for_tensorrt

        spec = super().write(adapted, where, plan)
        src = portable_onnx(where)
        prepared = prepare_for_tensorrt(src, where / SOURCE_ONNX)
        keep = _external_files(prepared)
        for name in (*PORTABLE_FORMS, *OTHER_FORMS):
            graph = where / name
            if graph.is_file():
                for data in _external_files(graph) - keep:
                    (where / data).unlink(missing_ok=True)
                graph.unlink()
        return spec, prepared, src.name

    def write(self, adapted: Adapted, where: Path, plan: Plan) -> ModelSpec:
        v = plan.values
        profiles = resolve_profiles(v["profiles"], adapted.spec.max_length, v["profile_flag"])
        trt = tensorrt_module()
        env = v["environment"]
        from embcc.export.trt_ready import inspect_onnx_for_tensorrt

        spec, prepared, onnx_from = self.write_onnx(adapted, where, plan)
        ready = inspect_onnx_for_tensorrt(prepared)
        if ready.problems:
            more = f" (and {len(ready.problems) - 1} more)" if len(ready.problems) > 1 else ""
            raise EmbccError(f"the {ready.precision} ONNX graph is not ready for TensorRT: {ready.problems[0]}{more}",
                             "this is a gap in embcc's ONNX for this family; report it with the output of "
                             "`python -m embcc.export.trt_ready` on the exported model.onnx")
        serialized, build = build_engine(trt, prepared, profiles, v["precision"],
                                         timing_cache=timing_cache_path(v["cache_dir"], env))
        log.info("TensorRT timing cache %s for %s", build["timing_cache"], where)
        (where / ENGINE_FILE).write_bytes(serialized)
        meta = engine_manifest(env=env, precision=v["precision"], profiles=profiles, build=build, onnx_from=onnx_from,
                               notes=ready.notes)
        (where / ENGINE_META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return spec
