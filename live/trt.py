"""TensorRT engines inside a bundle: naming, matching this machine, and a low-latency runner.

An engine only runs on the GPU model and TensorRT version it was built with, so its file name
says both: ``engines/student.<gpu>-sm<major><minor>.trt<version>.<fp16|fp32>.engine``, with a
``.json`` beside it recording the same plus the sha256 of the ONNX file it was built from and
the batch range of its optimisation profile. :func:`matching_engine` finds the one that fits.

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
from live.contracts import V1
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
    if bundle.contract.version != 1:
        raise BackendError(
            f"{bundle.dir}: TensorRT runs contract-1 bundles only so far; this one (contract "
            f"{bundle.contract}) runs on ONNX Runtime"
        )
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


class TrtRunner:
    """Runs an engine: device buffers for the largest batch allocated once, one CUDA stream,
    input shape set per call, copies and execution queued on the stream."""

    name = "tensorrt"

    def __init__(self, engine_path: Path, bundle: Bundle) -> None:
        trt, self.cudart = tensorrt_module(), _cudart()
        meta = json.loads(engine_path.with_suffix(".json").read_text())
        self.max_batch = int(meta["max_batch"])
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise BackendError(
                f"{engine_path} could not be deserialized: rebuild it with "
                f"`kdexport tensorrt {bundle.dir}`"
            )
        self.context = self.engine.create_execution_context()
        self.input_name, self.output_name = bundle.input_name, bundle.output_name
        self.n_classes = len(bundle.classes)
        in_bytes = self.max_batch * int(np.prod(V1.input_shape)) * 4
        out_bytes = self.max_batch * self.n_classes * 4
        self.d_in = check(self.cudart.cudaMalloc(in_bytes))
        self.d_out = check(self.cudart.cudaMalloc(out_bytes))
        self.stream = check(self.cudart.cudaStreamCreate())
        self.h_out = np.empty((self.max_batch, self.n_classes), np.float32)
        self.context.set_tensor_address(self.input_name, int(self.d_in))
        self.context.set_tensor_address(self.output_name, int(self.d_out))
        self._h2d = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._d2h = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._shape = -1

    def step(
        self, inputs: npt.NDArray[np.float32], state: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        raise BackendError("TensorRT engines of students with a state are not supported yet")

    def logits(self, rolls: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        out = []
        for start in range(0, len(rolls), self.max_batch):
            out.append(self._run(rolls[start : start + self.max_batch]))
        return out[0] if len(out) == 1 else np.concatenate(out)

    def _run(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        b = len(x)
        if b != self._shape:
            self.context.set_input_shape(self.input_name, (b, *V1.input_shape))
            self._shape = b
        cudart = self.cudart
        check(cudart.cudaMemcpyAsync(self.d_in, x.ctypes.data, x.nbytes, self._h2d, self.stream))
        if not self.context.execute_async_v3(int(self.stream)):
            raise BackendError("TensorRT execution failed")
        n = b * self.n_classes * 4
        check(cudart.cudaMemcpyAsync(self.h_out.ctypes.data, self.d_out, n, self._d2h, self.stream))
        check(cudart.cudaStreamSynchronize(self.stream))
        return self.h_out[:b].copy()

    def __del__(self) -> None:
        try:
            self.cudart.cudaFree(self.d_in)
            self.cudart.cudaFree(self.d_out)
            self.cudart.cudaStreamDestroy(self.stream)
        except Exception:  # at interpreter shutdown cudart may be gone already
            pass
