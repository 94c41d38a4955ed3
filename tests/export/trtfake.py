"""A stand-in for TensorRT 10 and cuda-python, for testing the engine path without a GPU.

It implements the part of their Python APIs that ``export.tensorrt`` and ``live.trt`` use,
with TensorRT's contracts: names select tensors, an input shape outside the optimisation
profile is refused, a copy past the end of a device buffer fails, execution reads the inputs
from and writes the outputs to the device addresses set on the context. The "engine" runs the
bundle's ONNX graph with ONNX Runtime on the CPU (optionally nudging its outputs, to see a
verification fail). :func:`installed` puts both modules in ``sys.modules`` where the code
under test imports them (``tensorrt``, ``cuda.bindings.runtime``).
"""

from __future__ import annotations

import ctypes
import json
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

VERSION = "10.1.0"


# --------------------------------------------------------------------------- cuda-python


class FakeCudart:
    """``cuda.bindings.runtime``: device memory as bytearrays, calls return ``(err, value)``."""

    class cudaMemcpyKind(Enum):
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    def __init__(self) -> None:
        self.memory: dict[int, bytearray] = {}
        self.copies: list[tuple[str, int]] = []  # (direction, bytes)
        self.freed: list[int] = []
        self._next = 0x1000

    def cudaGetDeviceCount(self) -> tuple[int, int]:
        return 0, 1

    def cudaGetDeviceProperties(self, device: int) -> tuple[int, Any]:
        return 0, types.SimpleNamespace(name=b"Fake GPU 80GB\x00", major=9, minor=0)

    def cudaMalloc(self, size: int) -> tuple[int, int]:
        ptr, self._next = self._next, self._next + 0x100000
        self.memory[ptr] = bytearray(size)
        return 0, ptr

    def cudaFree(self, ptr: int) -> tuple[int]:
        self.freed.append(int(ptr))
        return (0,)

    def cudaStreamCreate(self) -> tuple[int, int]:
        return 0, 7

    def cudaStreamDestroy(self, stream: int) -> tuple[int]:
        return (0,)

    def cudaStreamSynchronize(self, stream: int) -> tuple[int]:
        return (0,)

    def cudaMemcpyAsync(self, dst: int, src: int, n: int, kind: Any, stream: int) -> tuple[int]:
        to_device = kind is self.cudaMemcpyKind.cudaMemcpyHostToDevice
        buf = self.memory[int(dst) if to_device else int(src)]
        if n > len(buf):
            return (1,)  # cudaErrorInvalidValue: past the end of the allocation
        view = (ctypes.c_char * n).from_buffer(buf)
        if to_device:
            ctypes.memmove(view, src, n)
        else:
            ctypes.memmove(dst, view, n)
        self.copies.append(("h2d" if to_device else "d2h", n))
        return (0,)

    def read(self, ptr: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return np.frombuffer(bytes(self.memory[ptr][:n]), dtype).reshape(shape)

    def write(self, ptr: int, array: np.ndarray) -> None:
        data = np.ascontiguousarray(array).tobytes()
        if len(data) > len(self.memory[ptr]):
            raise AssertionError("engine output past the end of its device buffer")
        self.memory[ptr][: len(data)] = data


# ------------------------------------------------------------------------------ TensorRT


class TensorIOMode(Enum):
    INPUT = 1
    OUTPUT = 2


class DataType(Enum):
    FLOAT = 0


def nptype(dtype: DataType) -> type:
    assert dtype is DataType.FLOAT
    return np.float32


class Logger:
    WARNING = 2

    def __init__(self, level: int = 2) -> None:
        self.level = level


@dataclass
class Profile:
    shapes: dict[str, tuple[tuple[int, ...], ...]] = field(default_factory=dict)

    def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
        self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))


class Config:
    def __init__(self) -> None:
        self.flags: set[str] = set()
        self.profiles: list[Profile] = []

    def set_memory_pool_limit(self, pool: str, size: int) -> None:
        assert size > 0

    def set_flag(self, flag: str) -> None:
        self.flags.add(flag)

    def add_optimization_profile(self, profile: Profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, blob: bytes) -> bytes:
        return blob

    def set_timing_cache(self, cache: bytes, ignore_mismatch: bool) -> bool:
        return True

    def get_timing_cache(self) -> Any:
        return types.SimpleNamespace(serialize=lambda: b"fake timing cache")


class Network:
    onnx_bytes = b""


class OnnxParser:
    def __init__(self, network: Network, logger: Logger) -> None:
        self.network, self.num_errors = network, 0

    def parse(self, blob: bytes) -> bool:
        self.network.onnx_bytes = blob
        return True


class Builder:
    platform_has_fast_fp16 = True

    def __init__(self, logger: Logger) -> None:
        self.built: list[Config] = []

    def create_network(self, flags: int) -> Network:
        return Network()

    def create_builder_config(self) -> Config:
        return Config()

    def create_optimization_profile(self) -> Profile:
        return Profile()

    def build_serialized_network(self, network: Network, config: Config) -> bytes:
        """The "plan": the profile as a JSON line, then the ONNX graph. TensorRT requires a
        profile on every dynamic input; so does this."""
        proto = onnx.load_from_string(network.onnx_bytes)
        (profile,) = config.profiles
        inputs = [i.name for i in proto.graph.input]
        assert sorted(profile.shapes) == sorted(inputs), (profile.shapes, inputs)
        header = {"profile": profile.shapes, "fp16": "FP16" in config.flags}
        return json.dumps(header).encode() + b"\n" + network.onnx_bytes


class Runtime:
    nudge = 0.0  # added to every output of engines deserialized from now on

    def __init__(self, logger: Logger) -> None:
        pass

    def deserialize_cuda_engine(self, blob: bytes) -> Engine | None:
        header, _, model = blob.partition(b"\n")
        try:
            return Engine(json.loads(header), model, Runtime.nudge)
        except (ValueError, KeyError):
            return None


class Engine:
    """The engine's I/O as TensorRT reports it: dynamic batch -1, other dims resolved."""

    def __init__(self, header: dict[str, Any], model: bytes, nudge: float) -> None:
        proto = onnx.shape_inference.infer_shapes(onnx.load_from_string(model), data_prop=True)
        self.profile = {k: [tuple(s) for s in v] for k, v in header["profile"].items()}
        self.tensors: dict[str, tuple[TensorIOMode, tuple[int, ...]]] = {}
        for mode, values in (
            (TensorIOMode.INPUT, proto.graph.input),
            (TensorIOMode.OUTPUT, proto.graph.output),
        ):
            for v in values:
                dims = v.type.tensor_type.shape.dim
                self.tensors[v.name] = (mode, (-1, *(d.dim_value or -1 for d in dims[1:])))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        self.nudge = nudge

    @property
    def num_io_tensors(self) -> int:
        return len(self.tensors)

    def get_tensor_name(self, i: int) -> str:
        return list(self.tensors)[i]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self.tensors[name][0]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name][1]

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType.FLOAT

    def create_execution_context(self) -> Context:
        return Context(self)


class Context:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.shape_calls = 0
        self.runs: list[int] = []  # the batch of each execution

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        lo, _, hi = self.engine.profile[name]
        self.shape_calls += 1
        if len(shape) != len(lo) or any(
            not a <= s <= b for a, s, b in zip(lo, shape, hi, strict=True)
        ):
            return False
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        assert name in self.engine.tensors
        self.addresses[name] = int(ptr)
        return True

    def execute_async_v3(self, stream: int) -> bool:
        inputs = [n for n, (m, _) in self.engine.tensors.items() if m is TensorIOMode.INPUT]
        outputs = [n for n in self.engine.tensors if n not in inputs]
        assert set(self.addresses) == set(self.engine.tensors), "an I/O tensor has no address"
        assert set(self.shapes) == set(inputs), "an input has no shape"
        feeds = {n: CUDART.read(self.addresses[n], self.shapes[n], np.float32) for n in inputs}
        (batch,) = {s[0] for s in self.shapes.values()}
        for name, value in zip(outputs, self.engine.session.run(outputs, feeds), strict=True):
            CUDART.write(self.addresses[name], value + np.float32(self.engine.nudge))
        self.runs.append(batch)
        return True


def _tensorrt_module() -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = VERSION  # type: ignore[attr-defined]
    for obj in (TensorIOMode, DataType, nptype, Logger, Builder, OnnxParser, Runtime):
        setattr(trt, obj.__name__, obj)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")  # type: ignore[attr-defined]
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16")  # type: ignore[attr-defined]
    return trt


CUDART = FakeCudart()


@contextmanager
def installed(monkeypatch: pytest.MonkeyPatch, *, nudge: float = 0.0) -> Iterator[FakeCudart]:
    """Make ``import tensorrt`` and ``from cuda.bindings import runtime`` find the fakes;
    engines deserialized meanwhile add ``nudge`` to their outputs. Yields the fake cudart."""
    global CUDART
    CUDART = FakeCudart()
    cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    runtime = types.ModuleType("cuda.bindings.runtime")
    for name in dir(CUDART):
        if name.startswith("cuda"):
            setattr(runtime, name, getattr(CUDART, name))
    bindings.runtime = runtime  # type: ignore[attr-defined]
    cuda.bindings = bindings  # type: ignore[attr-defined]
    for name, module in (
        ("tensorrt", _tensorrt_module()),
        ("cuda", cuda),
        ("cuda.bindings", bindings),
        ("cuda.bindings.runtime", runtime),
    ):
        monkeypatch.setitem(__import__("sys").modules, name, module)
    monkeypatch.setattr(Runtime, "nudge", nudge)
    yield CUDART
