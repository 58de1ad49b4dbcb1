"""A stand-in for the `tensorrt` module, for CPU machines: the API surface embcc calls, nothing more.

It is NOT TensorRT and proves nothing about TensorRT's numerics. It lets CPU tests check embcc's side of the
contract: which builder calls each TensorRT version gets (TensorRT 11 has no FP16/INT8 flags: calling them fails
here as it does there), profiles and timing cache handling, the engine directory, binding by name, profile choice,
padding and splitting. Its "engine" runs the ONNX graph it was built from with ONNX Runtime on the CPU, and refuses
shapes outside the chosen profile and unbound tensors, as TensorRT does. "Device memory" is a dict of numpy arrays.
"""

from __future__ import annotations

import enum
import json
import types
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

MEMORY: dict[int, np.ndarray] = {}  # "device" address -> array


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    INT64 = 8


_NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
       DataType.BOOL: np.bool_, DataType.INT64: np.int64}
_FROM_ONNX = {onnx.TensorProto.FLOAT: DataType.FLOAT, onnx.TensorProto.FLOAT16: DataType.HALF,
              onnx.TensorProto.INT8: DataType.INT8, onnx.TensorProto.INT32: DataType.INT32,
              onnx.TensorProto.BOOL: DataType.BOOL, onnx.TensorProto.INT64: DataType.INT64}


class HostDevice:
    """The runtime's device interface over MEMORY (what TorchDevice / CudaPythonDevice do on a GPU)."""

    name = "host (fake)"

    def handle(self) -> int:
        return 7

    def upload(self, array: np.ndarray):
        a = np.array(array, copy=True)
        MEMORY[id(a)] = a
        return a, id(a)

    def empty(self, shape, dtype):
        a = np.zeros(shape, dtype=dtype)
        MEMORY[id(a)] = a
        return a, id(a)

    def download(self, buffer):
        return np.array(buffer, copy=True)

    def synchronize(self) -> None:
        pass

    def free(self, buffer) -> None:
        MEMORY.pop(id(buffer), None)


def make(version: str = "10.9.0.34") -> types.ModuleType:
    """A fake `tensorrt` module of `version` (its major decides which API exists)."""
    major = int(version.split(".")[0])
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.DataType = DataType
    trt.float32, trt.float16, trt.int8, trt.int32, trt.int64, trt.bool = (
        DataType.FLOAT, DataType.HALF, DataType.INT8, DataType.INT32, DataType.INT64, DataType.BOOL)
    trt.nptype = lambda dt: _NP[DataType(dt)]
    names = ["TF32", "REFIT", "DEBUG"]
    if major < 11:  # removed in TensorRT 11 (strong typing only)
        names += ["FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS"]
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", names)
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 0})
    trt.LayerType = enum.IntEnum("LayerType", ["CONSTANT", "SHAPE", "IDENTITY", "ELEMENTWISE", "OTHER"])
    trt.TensorIOMode = enum.IntEnum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])

    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    class ILogger:
        pass

    ILogger.Severity = Severity
    trt.ILogger = ILogger

    class Logger(ILogger):
        ERROR = Severity.ERROR
        WARNING = Severity.WARNING

        def __init__(self, severity=Severity.WARNING):
            self.severity = severity

    trt.Logger = Logger

    class Tensor:
        def __init__(self, name, shape, dtype):
            self.name, self.shape, self.dtype = name, tuple(shape), dtype

    class Layer:
        def __init__(self, op: str, out_types: list[DataType]):
            self.type = trt.LayerType.CONSTANT if op == "Constant" else (
                trt.LayerType.SHAPE if op == "Shape" else trt.LayerType.OTHER)
            self.outputs = [Tensor(f"{op}_{i}", (), t) for i, t in enumerate(out_types)]
            self.precision = None
            self.output_types: dict[int, DataType] = {}

        @property
        def num_outputs(self):
            return len(self.outputs)

        def get_output(self, j):
            return self.outputs[j]

        def set_output_type(self, j, dt):
            self.output_types[j] = dt

    class Network:
        def __init__(self, flags):
            self.flags = flags
            self.inputs: list[Tensor] = []
            self.outputs: list[Tensor] = []
            self.layers: list[Layer] = []
            self.onnx_bytes = b""

        num_inputs = property(lambda self: len(self.inputs))
        num_outputs = property(lambda self: len(self.outputs))
        num_layers = property(lambda self: len(self.layers))

        def get_input(self, i):
            return self.inputs[i]

        def get_output(self, i):
            return self.outputs[i]

        def get_layer(self, i):
            return self.layers[i]

    class ParserError:
        def __init__(self, text):
            self.text = text

        def desc(self):
            return self.text

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.errors = network, []

        num_errors = property(lambda self: len(self.errors))

        def get_error(self, i):
            return self.errors[i]

        def parse_from_file(self, path):
            model = onnx.load(path)  # external data inlined: the fake plan carries the whole graph
            net = self.network
            for vi in model.graph.input:
                tt = vi.type.tensor_type
                if not tt.HasField("shape"):
                    self.errors.append(ParserError(f"input {vi.name} has no rank"))
                    return False
                dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
                net.inputs.append(Tensor(vi.name, dims, _FROM_ONNX[tt.elem_type]))
            for vi in model.graph.output:
                net.outputs.append(Tensor(vi.name, (), _FROM_ONNX[vi.type.tensor_type.elem_type]))
            bare = onnx.load(path, load_external_data=False)
            del bare.graph.value_info[:]
            inferred = onnx.shape_inference.infer_shapes(bare)
            kinds = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.output)}
            for n in model.graph.node:
                outs = [_FROM_ONNX.get(kinds.get(o, 0), DataType.INT64) for o in n.output]
                net.layers.append(Layer(n.op_type, outs))
            net.onnx_bytes = model.SerializeToString()
            return True

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            assert len(lo) == len(opt) == len(hi)
            assert all(a <= b <= c for a, b, c in zip(lo, opt, hi)), (lo, opt, hi)
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class TimingCache:
        def __init__(self, blob: bytes):
            self.blob = blob or b"fake timing cache v1"

        def serialize(self):
            return memoryview(self.blob + b"+")

    class Config:
        def __init__(self):
            self.flags = {f.name for f in trt.BuilderFlag if f.name == "TF32"}  # TF32 on by default, as in TensorRT
            self.profiles = []
            self.cache = None

        def set_flag(self, flag):
            self.flags.add(trt.BuilderFlag(flag).name)

        def clear_flag(self, flag):
            self.flags.discard(trt.BuilderFlag(flag).name)

        def add_optimization_profile(self, p):
            self.profiles.append(p)
            return len(self.profiles) - 1

        def create_timing_cache(self, blob):
            return TimingCache(bytes(blob))

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags=0):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            dynamic = [t.name for t in network.inputs if any(d < 0 for d in t.shape)]
            for p in config.profiles:
                assert sorted(p.shapes) == sorted(dynamic), (p.shapes, dynamic)
            head = {
                "version": trt.__version__, "network_flags": network.flags, "flags": sorted(config.flags),
                "pinned": sum(1 for layer in network.layers if layer.precision == DataType.FLOAT),
                "profiles": [{k: [list(s) for s in v] for k, v in p.shapes.items()} for p in config.profiles],
                "inputs": [[t.name, list(t.shape), int(t.dtype)] for t in network.inputs],
                "outputs": [[t.name, int(t.dtype)] for t in network.outputs],
            }
            return memoryview(json.dumps(head).encode() + b"\n" + network.onnx_bytes)

    class Context:
        def __init__(self, engine):
            self.engine, self.profile, self.shapes, self.addresses, self._result = engine, 0, {}, {}, None

        def set_optimization_profile_async(self, i, stream):
            assert 0 <= i < len(self.engine.head["profiles"])
            self.profile = i
            return True

        def set_input_shape(self, name, shape):
            if name in self.engine.ranges(self.profile):
                lo, _, hi = self.engine.ranges(self.profile)[name]
                if not all(a <= s <= c for a, s, c in zip(lo, shape, hi)):
                    raise ValueError(f"shape {shape} of {name} is outside profile {self.profile}: {lo}..{hi}")
            self.shapes[name] = tuple(shape)
            self._result = None
            return True

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr
            return True

        def _run(self):
            if self._result is None:
                feeds = {}
                for name, _, _ in self.engine.head["inputs"]:
                    a = MEMORY[self.addresses[name]]
                    assert a.shape == self.shapes[name], (name, a.shape, self.shapes[name])
                    feeds[name] = a
                names = [n for n, _ in self.engine.head["outputs"]]
                self._result = dict(zip(names, self.engine.session.run(names, feeds)))
            return self._result

        def get_tensor_shape(self, name):
            return self._run()[name].shape

        def execute_async_v3(self, stream):
            for name, value in self._run().items():
                MEMORY[self.addresses[name]][...] = value
            return True

    class Engine:
        def __init__(self, head, graph):
            self.head = head
            self.session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
            self.names = [n for n, _, _ in head["inputs"]] + [n for n, _ in head["outputs"]]
            self.types = {n: t for n, _, t in head["inputs"]} | dict(head["outputs"])

        num_io_tensors = property(lambda self: len(self.names))
        num_optimization_profiles = property(lambda self: len(self.head["profiles"]))

        def ranges(self, i):
            return {k: [tuple(s) for s in v] for k, v in self.head["profiles"][i].items()}

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            inputs = [n for n, _, _ in self.head["inputs"]]
            return trt.TensorIOMode.INPUT if name in inputs else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return DataType(self.types[name])

        def get_tensor_profile_shape(self, name, i):
            return self.ranges(i)[name]

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            head, _, graph = bytes(blob).partition(b"\n")
            try:
                meta = json.loads(head)
            except ValueError:
                return None
            if meta["version"] != trt.__version__:
                return None
            return Engine(meta, graph)

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


def plan_head(path: Path) -> dict:
    """The build record a fake plan starts with (what the fake builder was asked for)."""
    return json.loads(Path(path).read_bytes().partition(b"\n")[0])
