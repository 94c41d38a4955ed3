"""Inference for the daemon: one :class:`Model`, three backends, torch-free.

``Model(bundle_dir)`` picks the fastest backend that works here, in this order:

1. ``tensorrt``: a TensorRT engine in ``BUNDLE/engines/`` built for this GPU and this TensorRT
   version (``kdexport tensorrt BUNDLE`` builds one; engines are not portable);
2. ``cuda``: ONNX Runtime's CUDA execution provider (``onnxruntime-gpu``);
3. ``cpu``: ONNX Runtime on the CPU, 1 thread by default (the lowest latency at batch 1; more
   threads only pay off for large batches). A bundle whose student streams runs there step by
   step (:mod:`live.stream`: each step's embedding computed once), unless ``stream=False``.

``backend=`` forces one; a forced backend that cannot run here raises :class:`BackendError`
saying why. Every backend is warmed up at load, so the first window played is not the slow one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from live.bundle import Bundle, read_bundle
from live.contracts import STATE_NAME
from live.errors import BackendError, BundleError, LiveError
from live.stream import StreamRunner
from live.trt import TrtRunner, matching_engine

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "cuda", "cpu")


class Runner(Protocol):
    """What a backend provides: logits for a batch of inputs; with a state (contract 2),
    ``step`` gives ``(logits, part logits, state out)``."""

    name: str

    def logits(self, rolls: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...

    def step(
        self, inputs: npt.NDArray[np.float32], state: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...


def softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Row-wise softmax, stable for any logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


class Model:
    """A bundle's student behind the fastest backend available.

    >>> model = Model()                       # the bundle shipped with kdlive, best backend
    >>> probs = model.predict(x)              # x float32 [B, *model.input_shape] -> [B, 8]
    >>> probs, part, state = model.step(x, state)   # contract 2 with a state (state_size > 0)

    ``contract`` is the bundle's input contract (:mod:`live.contracts`); ``input_shape``, its
    ``(channels, 128, 16)``: ``(1, 128, 16)`` for contract 1 (the roll), ``(5, 128, 16)`` for
    contract 2 (:mod:`live.inputs`).
    """

    def __init__(
        self,
        bundle_dir: Path | str | None = None,
        *,
        backend: str = "auto",
        threads: int = 1,
        warmup: bool = True,
        stream: bool = True,
    ) -> None:
        if backend not in BACKENDS:
            raise BackendError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        self.bundle: Bundle = read_bundle(bundle_dir)
        self.classes = self.bundle.classes
        self.contract = self.bundle.contract
        self.input_shape = self.contract.input_shape
        self.state_size = self.bundle.state_size
        self.history_share = self.bundle.history_share
        self.threads = threads
        self.stream = stream
        self.runner: Runner = self._select(backend)
        if warmup:
            self.warmup()

    @property
    def backend(self) -> str:
        return self.runner.name

    def _checked(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != self.input_shape:
            raise LiveError(
                f"inputs must be float32 [B, {', '.join(map(str, self.input_shape))}] (contract "
                f"{self.contract.version}), got {list(x.shape)}"
            )
        return np.ascontiguousarray(x)

    def logits(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Window logits ``[B, 8]`` for inputs ``[B, *input_shape]`` (a state starts at zero)."""
        x = self._checked(x)
        if len(x) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        if self.state_size:
            return self.runner.step(x, np.zeros((len(x), self.state_size), np.float32))[0]
        return self.runner.logits(x)

    def predict(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Class probabilities ``[B, 8]`` (contract order) for inputs ``[B, *input_shape]``."""
        return softmax(self.logits(x))

    def step(
        self, x: npt.NDArray[np.float32], state: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Contract 2 with a state: ``(window probs [B, 8], running probs [B, 8], new state
        [B, S])`` for inputs ``[B, 5, 128, 16]`` and each part's state ``[B, S]``."""
        if not self.state_size:
            raise LiveError(
                f"{self.bundle.dir}: this student has no state (contract {self.contract.version})"
            )
        x = self._checked(x)
        if len(x) == 0:
            empty = np.zeros((0, len(self.classes)), np.float32)
            return empty, empty.copy(), np.zeros((0, self.state_size), np.float32)
        logits, part, out = self.runner.step(x, np.ascontiguousarray(state, np.float32))
        return softmax(logits), softmax(part), out

    def warmup(self, rounds: int = 20) -> None:
        """Run a few batches so lazy allocation and kernel selection happen now, not on stage
        (each round a different note, so that a streaming student computes its steps every
        time; what they leave in its cache is then forgotten)."""
        for r in range(rounds):
            x = np.zeros((1, *self.input_shape), np.float32)
            x[0, 0, 40 + r % 48, :4] = 1.0
            self.logits(x)
        if isinstance(self.runner, StreamRunner):
            self.runner.cache.clear()

    # ----------------------------------------------------------------------- backends

    def _select(self, backend: str) -> Runner:
        if backend != "auto":
            return {"tensorrt": self._tensorrt, "cuda": self._ort_cuda, "cpu": self._ort_cpu}[
                backend
            ]()
        for make in (self._tensorrt, self._ort_cuda):
            try:
                return make()
            except BackendError as exc:
                log.debug("backend skipped: %s", exc)
        return self._ort_cpu()

    def _tensorrt(self) -> Runner:
        engine = matching_engine(self.bundle)  # raises BackendError saying why not
        return TrtRunner(engine, self.bundle)

    def _ort_cuda(self) -> Runner:
        ort = _onnxruntime()
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendError(
                "ONNX Runtime here has no CUDA provider: install onnxruntime-gpu "
                "and an NVIDIA driver, or use --backend cpu"
            )
        return OrtRunner(self.bundle, "cuda", threads=self.threads)

    def _ort_cpu(self) -> Runner:
        paths = self.bundle.stream_paths
        if paths is None or not self.stream:
            return OrtRunner(self.bundle, "cpu", threads=self.threads)
        steps, head = (_ort_session(p, "cpu", self.threads) for p in paths)
        return StreamRunner(steps, head, shape=self.input_shape, state=self.state_size)


def _onnxruntime() -> ModuleType:
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendError(
            f"onnxruntime is not installed ({exc}): pip install onnxruntime"
        ) from None
    return onnxruntime


def _ort_session(path: Path, device: str, threads: int) -> Any:
    """An ONNX Runtime session of ``path`` on the CPU or CUDA provider, sequential, with
    ``threads`` threads; a file it cannot load raises :class:`BundleError`."""
    ort = _onnxruntime()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    providers = (
        ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if device == "cuda"
        else ["CPUExecutionProvider"]
    )
    try:
        return ort.InferenceSession(str(path), opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        detail = first.rsplit("failed:", 1)[-1].strip()[:160]
        raise BundleError(
            f"{path} cannot be loaded by ONNX Runtime ({detail}): re-export it "
            "with `kdexport bundle`"
        ) from None


class OrtRunner:
    """ONNX Runtime session on the CPU or CUDA provider, sequential, fixed thread count."""

    def __init__(self, bundle: Bundle, device: str, *, threads: int = 1) -> None:
        self.session = _ort_session(bundle.onnx_path, device, threads)
        if device == "cuda" and "CUDAExecutionProvider" not in self.session.get_providers():
            raise BackendError("ONNX Runtime could not start its CUDA provider (no GPU visible?)")
        self.name = "onnxruntime-" + device
        self.input_name, self.output_name = bundle.input_name, bundle.output_name
        self._outputs = [self.output_name]
        self._step_outputs = list(bundle.contract.outputs(bundle.state_size))

    def logits(self, rolls: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return self.session.run(self._outputs, {self.input_name: rolls})[0]

    def step(
        self, inputs: npt.NDArray[np.float32], state: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        logits, part, out = self.session.run(
            self._step_outputs, {self.input_name: inputs, STATE_NAME: state}
        )
        return logits, part, out
