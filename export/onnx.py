"""PyTorch student -> ONNX, and the parity gauntlet every exported file must pass.

The gauntlet (:func:`gauntlet`) checks, in order:

1. the model is in eval mode (dropout off, batch norm on running statistics);
2. the ONNX file has a dynamic batch axis and the bundle's input and output names;
3. ONNX Runtime loads it and, on at least 1,000 windows (the run's real test windows when
   there are any, plus random binary rolls), its logits differ from PyTorch's by at most
   ``tol`` (1e-4) and its argmax is identical everywhere;
4. every operator in the graph is one TensorRT's ONNX parser supports.

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
from export.trt_ops import TENSORRT_ONNX_OPS
from live.bundle import INPUT_NAME, OUTPUT_NAME
from live.contract import WINDOW

OPSET = 17
TOLERANCE = 1e-4
MIN_WINDOWS = 1000


@dataclass
class GauntletReport:
    windows: int = 0
    real_windows: int = 0
    random_windows: int = 0
    max_abs_logit_diff: float = float("nan")
    argmax_mismatches: int = -1
    batch_sizes_checked: list[int] = field(default_factory=list)
    ops: list[str] = field(default_factory=list)
    ops_unsupported_by_tensorrt: list[str] = field(default_factory=list)
    tolerance: float = TOLERANCE
    passed: bool = False

    def to_json(self) -> dict:
        return asdict(self)


def export_onnx(model: torch.nn.Module, path: Path, *, opset: int = OPSET) -> None:
    """Write ``model`` (already in eval mode) to ``path`` with a dynamic batch axis.

    Uses the TorchScript exporter: deterministic, fast, and it folds batch norm into the
    convolutions. The graph has only fixed shapes apart from the batch axis.
    """
    example = torch.zeros(2, *WINDOW.input_shape)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the deprecation notice of the TorchScript exporter
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def random_rolls(n: int, seed: int = 0) -> npt.NDArray[np.float32]:
    """Binary rolls with realistic sparsity (1-8 % of cells on) and some empty columns."""
    rng = np.random.default_rng(seed)
    density = rng.uniform(0.01, 0.08, size=(n, 1, 1, 1))
    rolls = (rng.random((n, *WINDOW.input_shape)) < density).astype(np.float32)
    rolls[rng.random(n) < 0.1, :, :, 12:] = 0.0  # short (3/4-like) windows: padded columns
    return rolls


def gauntlet(
    model: torch.nn.Module,
    onnx_path: Path,
    *,
    real_rolls: npt.NDArray[np.float32] | None = None,
    n_random: int = MIN_WINDOWS,
    tol: float = TOLERANCE,
    seed: int = 0,
) -> GauntletReport:
    """Check ``onnx_path`` against ``model``; raises :class:`ExportError` on any failure."""
    report = GauntletReport(tolerance=tol)
    if model.training:
        raise ExportError("the model is in training mode: call model.eval() before exporting")
    proto = onnx.load(str(onnx_path))
    onnx.checker.check_model(proto)
    _check_io(proto)
    report.ops = sorted({node.op_type for node in proto.graph.node})
    report.ops_unsupported_by_tensorrt = [op for op in report.ops if op not in TENSORRT_ONNX_OPS]

    real = np.zeros((0, *WINDOW.input_shape), np.float32) if real_rolls is None else real_rolls
    n_random = max(n_random, MIN_WINDOWS - len(real))
    x = np.concatenate([real.astype(np.float32), random_rolls(n_random, seed)])
    report.real_windows, report.random_windows, report.windows = len(real), n_random, len(x)

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = torch.cat(
            [model(torch.from_numpy(x[s : s + 512])) for s in range(0, len(x), 512)]
        ).numpy()
    got = np.concatenate(
        [session.run([OUTPUT_NAME], {INPUT_NAME: x[s : s + 512]})[0] for s in range(0, len(x), 512)]
    )
    diff = float(np.abs(got - expected).max())
    # Batch sizes the daemon uses: one part, 16 busy channels, and an odd one.
    for b in (1, 16, 7):
        got_b = np.concatenate(
            [session.run([OUTPUT_NAME], {INPUT_NAME: x[s : s + b]})[0] for s in range(0, 64, b)]
        )
        diff = max(diff, float(np.abs(got_b - expected[: len(got_b)]).max()))
        report.batch_sizes_checked.append(b)
    report.max_abs_logit_diff = diff
    report.argmax_mismatches = int((got.argmax(1) != expected.argmax(1)).sum())
    problems = []
    if not np.isfinite(got).all():
        problems.append("ONNX Runtime produced non-finite logits")
    if report.max_abs_logit_diff > tol:
        problems.append(f"max |Δ logit| {report.max_abs_logit_diff:.2e} > {tol:.0e}")
    if report.argmax_mismatches:
        problems.append(f"{report.argmax_mismatches} of {len(x)} windows change class")
    if report.ops_unsupported_by_tensorrt:
        problems.append(f"ops TensorRT does not support: {report.ops_unsupported_by_tensorrt}")
    if problems:
        raise ExportError("ONNX gauntlet failed: " + "; ".join(problems))
    report.passed = True
    return report


def _check_io(proto: onnx.ModelProto) -> None:
    inputs = [
        i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}
    ]
    names_in, names_out = [i.name for i in inputs], [o.name for o in proto.graph.output]
    if names_in != [INPUT_NAME] or names_out != [OUTPUT_NAME]:
        raise ExportError(
            f"graph inputs {names_in} / outputs {names_out}, expected "
            f"[{INPUT_NAME!r}] / [{OUTPUT_NAME!r}]"
        )
    for value in (inputs[0], proto.graph.output[0]):
        dim0 = value.type.tensor_type.shape.dim[0]
        if not dim0.dim_param:
            raise ExportError(
                f"{value.name}: batch axis is fixed at {dim0.dim_value}, expected a dynamic axis"
            )
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim[1:]]
    if tuple(dims) != WINDOW.input_shape:
        raise ExportError(f"input shape {dims}, the contract's is {list(WINDOW.input_shape)}")
