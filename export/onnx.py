"""PyTorch student -> ONNX, and the parity gauntlet every exported file must pass.

The graph follows the student's input contract (:mod:`live.contracts`): contract 1,
``roll -> logits``; contract 2, ``inputs -> logits``, and with a state
``(inputs, state) -> (logits, part_logits, state_out)``.

The gauntlet (:func:`gauntlet`) checks, in order:

1. the model is in eval mode (dropout off, batch norm on running statistics);
2. the ONNX file has a dynamic batch axis and the bundle's input and output names;
3. ONNX Runtime loads it and, on at least 1,000 windows (the run's real test windows when
   there are any, plus random ones), every output differs from PyTorch's by at most ``tol``
   (1e-4) and the classes (window and running answer) are identical everywhere.

Whether TensorRT could build an engine from the graph is the pre-flight's question
(:mod:`export.preflight`), asked by :func:`export.bundle.write_bundle`.

:func:`export.bundle.write_bundle` writes nothing at the destination unless all of it passes.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import torch

from export.errors import ExportError
from live.contracts import STATE_NAME, V1, Contract
from live.inputs import ONSET, VELOCITY
from train.models import PartStudent

OPSET = 17
TOLERANCE = 1e-4
MIN_WINDOWS = 1000


@dataclass(frozen=True)
class Graph:
    """What the exported graph takes and gives: the student's contract and state size."""

    contract: Contract
    state: int  # size of the state input and output; 0: none

    @classmethod
    def of(cls, model: torch.nn.Module) -> Graph:
        """The contract the student reads (:attr:`train.models.KdModel.contract`; any other
        module, the paper's roll) and its state size."""
        return cls(getattr(model, "contract", V1), int(getattr(model, "state_dim", 0)))

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.contract.inputs(self.state)

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.contract.outputs(self.state)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.contract.input_shape


class _Step(torch.nn.Module):
    """A student with a state as one graph: ``(inputs, state) -> (logits, part, state')``."""

    def __init__(self, student: PartStudent) -> None:
        super().__init__()
        self.student = student

    def forward(
        self, x: torch.Tensor, h: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.student.step(x, h)


@dataclass
class GauntletReport:
    windows: int = 0
    real_windows: int = 0
    random_windows: int = 0
    max_abs_logit_diff: float = float("nan")
    argmax_mismatches: int = -1
    batch_sizes_checked: list[int] = field(default_factory=list)
    ops: list[str] = field(default_factory=list)
    tolerance: float = TOLERANCE
    passed: bool = False

    def to_json(self) -> dict:
        return asdict(self)


def export_onnx(model: torch.nn.Module, path: Path, *, opset: int = OPSET) -> Graph:
    """Write ``model`` (already in eval mode) to ``path`` with a dynamic batch axis; returns
    what the graph takes and gives.

    Uses the TorchScript exporter: deterministic, fast, and it folds batch norm into the
    convolutions. The graph has only fixed shapes apart from the batch axis.
    """
    graph = Graph.of(model)
    example: tuple[torch.Tensor, ...] = (torch.zeros(2, *graph.input_shape),)
    module = model
    if graph.state:
        assert isinstance(model, PartStudent)
        module, example = (
            _Step(model).train(model.training),
            (*example, torch.zeros(2, graph.state)),
        )
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the deprecation notice of the TorchScript exporter
        torch.onnx.export(
            module,
            example,
            str(path),
            input_names=list(graph.inputs),
            output_names=list(graph.outputs),
            dynamic_axes={name: {0: "batch"} for name in graph.inputs + graph.outputs},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return graph


def random_rolls(n: int, seed: int = 0) -> npt.NDArray[np.float32]:
    """Binary rolls with realistic sparsity (1-8 % of cells on) and some empty columns."""
    return random_inputs(n, V1, seed)


def random_inputs(n: int, contract: Contract, seed: int = 0) -> npt.NDArray[np.float32]:
    """Random model inputs ``float32 [n, *contract.input_shape]``: rolls with realistic
    sparsity (1-8 % of cells on) and some empty columns; a contract with more channels
    (contract 2) adds onsets with velocities 1-127 on the roll, and sparse ensemble and drum
    channels."""
    rng = np.random.default_rng(seed)
    shape = (n, *contract.input_shape)
    density = rng.uniform(0.01, 0.08, size=(n, 1, 1, 1))
    x = (rng.random(shape) < density).astype(np.float32)
    if len(contract.channels) > VELOCITY:
        x[:, ONSET : VELOCITY + 1] *= x[:, :1]  # onsets where the part sounds
        x[:, VELOCITY] *= rng.integers(1, 128, size=x[:, VELOCITY].shape)
    x[rng.random(n) < 0.1, :, :, 12:] = 0.0  # short (3/4-like) windows: padded columns
    return x


def gauntlet(
    model: torch.nn.Module,
    onnx_path: Path,
    *,
    real_inputs: npt.NDArray[np.float32] | None = None,
    n_random: int = MIN_WINDOWS,
    tol: float = TOLERANCE,
    seed: int = 0,
) -> GauntletReport:
    """Check ``onnx_path`` against ``model``; raises :class:`ExportError` on any failure."""
    report = GauntletReport(tolerance=tol)
    if model.training:
        raise ExportError("the model is in training mode: call model.eval() before exporting")
    graph = Graph.of(model)
    proto = onnx.load(str(onnx_path))
    onnx.checker.check_model(proto)
    _check_io(proto, graph)
    report.ops = sorted({node.op_type for node in proto.graph.node})

    shape = graph.input_shape
    real = np.zeros((0, *shape), np.float32) if real_inputs is None else real_inputs
    n_random = max(n_random, MIN_WINDOWS - len(real))
    x = np.concatenate([real.astype(np.float32), random_inputs(n_random, graph.contract, seed)])
    report.real_windows, report.random_windows, report.windows = len(real), n_random, len(x)
    feeds = {graph.inputs[0]: x}
    if graph.state:  # states as the history leaves them: in (-1, 1), some fresh (zeros)
        h = np.random.default_rng(seed + 1).uniform(-1, 1, (len(x), graph.state))
        h[::7] = 0
        feeds[STATE_NAME] = h.astype(np.float32)

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    expected = _torch_outputs(model, graph, feeds)
    got = _ort_outputs(session, graph, feeds, 512, len(x))
    diff = max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True))
    # Batch sizes the daemon uses: one part, 16 busy channels, and an odd one. Each against
    # PyTorch's answers in batches of the same size: a student whose parts attend to each
    # other answers a batch (one bar line's channels) as a whole.
    first = {k: v[:64] for k, v in feeds.items()}
    for b in (1, 16, 7):
        got_b = _ort_outputs(session, graph, first, b, 64)
        for g, e in zip(got_b, _torch_outputs(model, graph, first, b), strict=True):
            diff = max(diff, float(np.abs(g - e).max()))
        report.batch_sizes_checked.append(b)
    report.max_abs_logit_diff = diff
    classes = [0, 1] if graph.state else [0]  # the window's and the running answer's
    report.argmax_mismatches = sum(
        int((got[k].argmax(1) != expected[k].argmax(1)).sum()) for k in classes
    )
    problems = []
    if not all(np.isfinite(g).all() for g in got):
        problems.append("ONNX Runtime produced non-finite outputs")
    if report.max_abs_logit_diff > tol:
        problems.append(f"max |Δ output| {report.max_abs_logit_diff:.2e} > {tol:.0e}")
    if report.argmax_mismatches:
        problems.append(f"{report.argmax_mismatches} of {len(x)} windows change class")
    if problems:
        raise ExportError("ONNX gauntlet failed: " + "; ".join(problems))
    report.passed = True
    return report


def _torch_outputs(
    model: torch.nn.Module, graph: Graph, feeds: dict[str, np.ndarray], batch: int = 512
) -> list[np.ndarray]:
    """The model's outputs for ``feeds``, ``batch`` windows at a time."""
    x = torch.from_numpy(feeds[graph.inputs[0]])
    at = range(0, len(x), batch)
    with torch.no_grad():
        if not graph.state:
            return [torch.cat([model(x[s : s + batch]) for s in at]).numpy()]
        assert isinstance(model, PartStudent)
        h = torch.from_numpy(feeds[STATE_NAME])
        parts = [model.step(x[s : s + batch], h[s : s + batch]) for s in at]
        return [torch.cat([p[k] for p in parts]).numpy() for k in range(3)]


def _ort_outputs(
    session: ort.InferenceSession, graph: Graph, feeds: dict[str, np.ndarray], batch: int, n: int
) -> list[np.ndarray]:
    runs = [
        session.run(list(graph.outputs), {k: v[s : s + batch] for k, v in feeds.items()})
        for s in range(0, n, batch)
    ]
    return [np.concatenate([r[k] for r in runs]) for k in range(len(graph.outputs))]


def _check_io(proto: onnx.ModelProto, graph: Graph) -> None:
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    names_in, names_out = [i.name for i in inputs], [o.name for o in proto.graph.output]
    if names_in != list(graph.inputs) or names_out != list(graph.outputs):
        raise ExportError(
            f"graph inputs {names_in} / outputs {names_out}, expected {list(graph.inputs)} / "
            f"{list(graph.outputs)}"
        )
    for value in (*inputs, *proto.graph.output):
        dim0 = value.type.tensor_type.shape.dim[0]
        if not dim0.dim_param:
            raise ExportError(
                f"{value.name}: batch axis is fixed at {dim0.dim_value}, expected a dynamic axis"
            )
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim[1:]]
    if tuple(dims) != graph.input_shape:
        raise ExportError(f"input shape {dims}, the contract's is {list(graph.input_shape)}")
