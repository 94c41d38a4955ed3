"""TensorRT engines inside a bundle: naming, matching this machine, and a low-latency runner.

An engine only runs on the GPU model and TensorRT version it was built with, so its file name
says both: ``engines/student.<gpu>-sm<major><minor>.trt<version>.<fp16|fp32>.engine``, with a
``.json`` beside it recording the same plus the sha256 of the ONNX file it was built from and
the batch range of its optimisation profile. :func:`matching_engine` finds the one that fits.

Engines of both input contracts run here: contract 1 (``roll -> logits``) and contract 2
(``inputs`` and a ``state`` in; ``logits``, ``part_logits`` and ``state_out`` out).
:class:`TrtRunner` gives them the same ``step``/``logits`` as ONNX Runtime's runner
(:class:`live.model.OrtRunner`), through TensorRT 10's name-based API. What needs no GPU (the
binding plan: which tensors are inputs and outputs, their shapes and types, in the bundle's
order) is plain Python: :func:`io_plan` and :func:`bind`.

Imports ``tensorrt`` and ``cuda-python`` lazily (``pip install kdlive[tensorrt]``): without them
the daemon still runs on ONNX Runtime.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from live.bundle import Bundle
from live.errors import BackendError


@dataclass(frozen=True)
class GpuInfo:
    name: str
    major: int
    minor: int

    @property
    def slug(self) -> str:
        return (
            f"{re.sub(r'[^a-z0-9]+', '-', self.name.lower()).strip('-')}-sm{self.major}{self.minor}"
        )


def _cudart() -> ModuleType:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]  # older cuda-python
        except ImportError:
            raise BackendError(
                "cuda-python is not installed: pip install 'kdlive[tensorrt]'"
            ) from None
    return cudart


def tensorrt_module() -> ModuleType:
    """The `tensorrt` module, or :class:`BackendError` saying how to install it."""
    try:
        import tensorrt
    except ImportError:
        raise BackendError(
            "TensorRT is not installed: pip install 'kdlive[tensorrt]' on a "
            "machine with an NVIDIA GPU"
        ) from None
    return tensorrt


def check(result: tuple[Any, ...]) -> Any:
    """Unwrap a cuda-python call's ``(error, value...)`` tuple, raising on an error."""
    err, *rest = result
    if int(err) != 0:
        raise BackendError(f"CUDA error {err}")
    return rest[0] if len(rest) == 1 else (tuple(rest) or None)


def current_gpu(device: int = 0) -> GpuInfo:
    cudart = _cudart()
    try:
        count = check(cudart.cudaGetDeviceCount())
    except BackendError:
        count = 0
    if not count:
        raise BackendError("no NVIDIA GPU visible (CUDA reports none)")
    prop = check(cudart.cudaGetDeviceProperties(device))
    name = (
        prop.name.decode(errors="replace").rstrip("\x00")
        if isinstance(prop.name, bytes)
        else str(prop.name)
    )
    return GpuInfo(name, int(prop.major), int(prop.minor))


def engine_stem(gpu: GpuInfo, trt_version: str, fp16: bool) -> str:
    return f"student.{gpu.slug}.trt{trt_version}.{'fp16' if fp16 else 'fp32'}"


def matching_engine(bundle: Bundle) -> Path:
    """The bundle's engine for this GPU and TensorRT version (fp16 preferred), or
    :class:`BackendError` saying what is missing."""
    if not bundle.engine_dir.is_dir() or not any(bundle.engine_dir.glob("*.engine")):
        raise BackendError(
            f"{bundle.dir} has no TensorRT engine: build one on this machine "
            f"with `kdexport tensorrt {bundle.dir}`"
        )
    trt = tensorrt_module()
    gpu = current_gpu()
    for fp16 in (True, False):
        path = bundle.engine_dir / (engine_stem(gpu, trt.__version__, fp16) + ".engine")
        meta = path.with_suffix(".json")
        if path.exists() and meta.exists():
            info = json.loads(meta.read_text())
            if info.get("onnx_sha256") == bundle.manifest["onnx"]["sha256"]:
                return path
    raise BackendError(
        f"{bundle.dir} has no engine for {gpu.name} with TensorRT "
        f"{trt.__version__}: rebuild with `kdexport tensorrt {bundle.dir}`"
    )


# ------------------------------------------------------------------- the binding plan


@dataclass(frozen=True)
class IoTensor:
    """One input or output of an engine: ``shape`` is per example (the batch left out)."""

    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    def nbytes(self, batch: int) -> int:
        """Bytes of ``batch`` examples of this tensor."""
        return batch * int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def io_plan(engine: Any, trt: ModuleType) -> dict[str, IoTensor]:
    """The engine's inputs and outputs by name (TensorRT 10: ``num_io_tensors``,
    ``get_tensor_name``, ``get_tensor_mode``, ``get_tensor_shape``, ``get_tensor_dtype``).
    Raises :class:`BackendError` for a tensor whose shape is dynamic beyond the batch."""
    plan = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        shape = tuple(int(d) for d in engine.get_tensor_shape(name))
        if len(shape) < 2 or any(d < 1 for d in shape[1:]):
            raise BackendError(
                f"engine tensor {name!r} has shape {list(shape)}: only the batch may be dynamic; "
                "rebuild the engine with `kdexport tensorrt`"
            )
        plan[name] = IoTensor(
            name=name,
            is_input=engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
            shape=shape[1:],
            dtype=np.dtype(trt.nptype(engine.get_tensor_dtype(name))),
        )
    return plan


def bundle_io(bundle: Bundle) -> tuple[dict[str, tuple[int, ...]], tuple[str, ...]]:
    """The bundle's graph as its manifest gives it: inputs (name -> per-example shape) in the
    order ``step`` takes them, and outputs in the order it returns them."""
    inputs: dict[str, tuple[int, ...]] = {bundle.input_name: tuple(bundle.input_shape)}
    outputs: tuple[str, ...] = (bundle.output_name,)
    if bundle.state_size:
        state = bundle.manifest["state"]
        inputs[str(state["name"])] = (bundle.state_size,)
        outputs += (str(bundle.manifest["part_output"]["name"]), str(state["output"]))
    return inputs, outputs


def bind(
    plan: dict[str, IoTensor], bundle: Bundle
) -> tuple[tuple[IoTensor, ...], tuple[IoTensor, ...]]:
    """The engine's inputs and outputs in the bundle's order; :class:`BackendError` when the
    engine was built from another graph than the bundle's."""
    inputs, outputs = bundle_io(bundle)
    engine_in = {n for n, t in plan.items() if t.is_input}
    engine_out = {n for n, t in plan.items() if not t.is_input}
    rebuild = f"rebuild it with `kdexport tensorrt {bundle.dir}`"
    if engine_in != set(inputs) or not set(outputs) <= engine_out:
        raise BackendError(
            f"the engine takes {sorted(engine_in)} and gives {sorted(engine_out)}, the bundle "
            f"{list(inputs)} and {list(outputs)}: {rebuild}"
        )
    for name, shape in inputs.items():
        if plan[name].shape != shape:
            raise BackendError(
                f"the engine's {name} is [B, {', '.join(map(str, plan[name].shape))}], the "
                f"bundle's [B, {', '.join(map(str, shape))}]: {rebuild}"
            )
    return tuple(plan[n] for n in inputs), tuple(plan[n] for n in outputs)


# ------------------------------------------------------------------------- the runner


class TrtRunner:
    """Runs an engine with the same ``logits``/``step`` as ONNX Runtime's runner.

    Every input and output has one device buffer sized for the profile's largest batch
    (``max_batch`` rows, allocated once, addresses set once); a batch of ``n`` uses the first
    ``n`` rows. Per call: set the input shapes when ``n`` changes, queue the copies in, the
    execution and the copies out on one CUDA stream, wait for it. Larger batches run in
    chunks of ``max_batch``.
    """

    name = "tensorrt"

    def __init__(self, engine_path: Path, bundle: Bundle) -> None:
        trt, self.cudart = tensorrt_module(), _cudart()
        self.stream: Any = None
        self.device: dict[str, Any] = {}
        meta = json.loads(engine_path.with_suffix(".json").read_text())
        self.max_batch = int(meta["max_batch"])
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise BackendError(
                f"{engine_path} could not be deserialized: rebuild it with "
                f"`kdexport tensorrt {bundle.dir}`"
            )
        self.context = self.engine.create_execution_context()
        plan = io_plan(self.engine, trt)
        self.inputs, self.outputs = bind(plan, bundle)
        self.stream = check(self.cudart.cudaStreamCreate())
        for t in plan.values():  # unused outputs too: TensorRT writes every output
            self.device[t.name] = check(self.cudart.cudaMalloc(t.nbytes(self.max_batch)))
            self.context.set_tensor_address(t.name, int(self.device[t.name]))
        self.host = {t.name: np.empty((self.max_batch, *t.shape), t.dtype) for t in self.outputs}
        self._h2d = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._d2h = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._batch = -1

    def logits(self, rolls: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Window logits ``[B, 8]`` for inputs ``[B, *input_shape]`` (a state starts at zero)."""
        feeds = [rolls]
        if len(self.inputs) > 1:
            feeds.append(np.zeros((len(rolls), *self.inputs[1].shape), self.inputs[1].dtype))
        return self._batched(feeds)[0]

    def step(
        self, inputs: npt.NDArray[np.float32], state: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """``(logits [B, 8], part logits [B, 8], state out [B, S])`` for inputs
        ``[B, *input_shape]`` and states ``[B, S]``."""
        if len(self.inputs) != 2:
            raise BackendError("this engine's student has no state: call logits()")
        logits, part, out = self._batched([inputs, state])
        return logits, part, out

    def _batched(self, feeds: list[npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
        n, step = len(feeds[0]), self.max_batch
        if n == 0:
            return [np.zeros((0, *t.shape), t.dtype) for t in self.outputs]
        runs = [self._run([f[s : s + step] for f in feeds]) for s in range(0, n, step)]
        if len(runs) == 1:
            return runs[0]
        return [np.concatenate(parts) for parts in zip(*runs, strict=True)]

    def _run(self, feeds: list[npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
        n, cudart = len(feeds[0]), self.cudart
        if n != self._batch:
            for t in self.inputs:
                if not self.context.set_input_shape(t.name, (n, *t.shape)):
                    raise BackendError(f"the engine refused batch {n} for {t.name}")
            self._batch = n
        # Contiguous host copies in the engine's types, alive until the stream is done.
        host_in = [
            np.ascontiguousarray(f, t.dtype) for f, t in zip(feeds, self.inputs, strict=True)
        ]
        for t, x in zip(self.inputs, host_in, strict=True):
            check(
                cudart.cudaMemcpyAsync(
                    self.device[t.name], x.ctypes.data, t.nbytes(n), self._h2d, self.stream
                )
            )
        if not self.context.execute_async_v3(int(self.stream)):
            raise BackendError("TensorRT execution failed")
        for t in self.outputs:
            check(
                cudart.cudaMemcpyAsync(
                    self.host[t.name].ctypes.data,
                    self.device[t.name],
                    t.nbytes(n),
                    self._d2h,
                    self.stream,
                )
            )
        check(cudart.cudaStreamSynchronize(self.stream))
        return [self.host[t.name][:n].copy() for t in self.outputs]

    def __del__(self) -> None:
        try:
            for ptr in self.device.values():
                self.cudart.cudaFree(ptr)
            if self.stream is not None:
                self.cudart.cudaStreamDestroy(self.stream)
        except Exception:  # at interpreter shutdown cudart may be gone already
            pass
