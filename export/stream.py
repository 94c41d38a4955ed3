"""The streaming graphs of a student whose window encoder streams
(:class:`train.models.StreamCNN`), and their gauntlet.

``steps.onnx``: M steps of the input side by side ``[1, 5, 128, M]`` -> what each adds to the
first convolution over the steps ``[1, 3 C, M]`` (the channel selection, the pitch CNN, the
step embedding, and its product with the convolution's three taps); ``head.onnx``: windows'
steps ``[N, 16, 3 C]`` (and the state) -> the outputs of the whole graph (the taps summed over
each step's neighbours, any further convolution, the window answer, the history).
:class:`live.stream.StreamRunner` runs them with a cache of steps; :func:`stream_gauntlet`
checks that what it answers, cold and from its cache, is the PyTorch student's within the
whole graph's tolerance.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch

from export.errors import ExportError
from export.onnx import OPSET, TOLERANCE, Graph, _torch_outputs, random_inputs
from live.bundle import STEPS_INPUT, STEPS_OUTPUT, STREAM_HEAD, STREAM_STEPS, sha256_file
from live.contracts import STATE_NAME
from live.stream import StreamRunner
from train.models import PartStudent, StreamCNN

#: Windows the stream gauntlet asks at a time: a bar line of 16 busy channels.
BAR_LINE = 16


def streams(model: torch.nn.Module) -> TypeGuard[PartStudent]:
    """Whether ``model``'s window encoder can run step by step (a :class:`StreamCNN` with
    nothing beside it that reads the whole window)."""
    return (
        isinstance(model, PartStudent)
        and isinstance(model.window, StreamCNN)
        and model.statistics is None
    )


def _folded(conv: torch.nn.Module, bn: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``Conv1d`` (k=3, no bias) and the ``BatchNorm1d`` after it, in eval mode, as the
    weights ``[3, C_out, C_in]`` (one per tap: the step before, at, after) and the shift
    ``[C_out]`` of the same affine map."""
    assert isinstance(conv, torch.nn.Conv1d) and conv.kernel_size == (3,)
    assert isinstance(bn, torch.nn.BatchNorm1d)
    assert bn.running_mean is not None and bn.running_var is not None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    taps = (conv.weight * scale.view(-1, 1, 1)).permute(2, 0, 1)
    return taps.detach(), (bn.bias - bn.running_mean * scale).detach()


class _Steps(torch.nn.Module):
    """``[1, 5, 128, M]``: M steps side by side, whatever windows they come from -> per step,
    the first convolution over the steps' three taps applied to its embedding, ``[1, 3 C, M]``.
    No kernel spans two steps up to there, so the M steps are one image and every convolution
    one matrix product; the first temporal convolution is then a sum of the neighbours' taps,
    left to the head."""

    def __init__(self, student: PartStudent) -> None:
        super().__init__()
        assert isinstance(student.window, StreamCNN)
        self.student = student
        taps, _ = _folded(student.window.features[0], student.window.features[1])
        self.taps = torch.nn.Parameter(taps.reshape(-1, taps.shape[2]), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert isinstance(self.student.window, StreamCNN)
        z = self.student.window.steps(self.student.select(x))  # [1, W, M]
        return torch.matmul(self.taps, z)  # [1, 3 C, M]: before | at | after


class _Head(torch.nn.Module):
    """``[N, T, 3 C]`` steps' taps (and the state) -> the whole graph's outputs: the first
    convolution over the steps as the sum of each step's neighbours' taps (zeros past the
    window's ends), any further one as one matrix product over all N x T steps, their batch
    norm folded in; then the student's own layers."""

    def __init__(self, student: PartStudent) -> None:
        super().__init__()
        assert isinstance(student.window, StreamCNN)
        self.student = student
        layers = list(student.window.features)
        _, self.first_shift = _folded(layers[0], layers[1])
        self.more = [_folded(c, b) for c, b in zip(layers[3::3], layers[4::3], strict=True)]

    @staticmethod
    def _shifted(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z [N, T, C]`` one step later and one step earlier (zeros past the ends)."""
        zero = torch.zeros_like(z[:, :1])
        return torch.cat([zero, z[:, :-1]], dim=1), torch.cat([z[:, 1:], zero], dim=1)

    def forward(self, taps: torch.Tensor, *state: torch.Tensor) -> Any:
        s = self.student
        assert isinstance(s.window, StreamCNN)
        before, at, after = taps.chunk(3, dim=2)
        late, _ = self._shifted(before)  # step t - 1's tap "before" lands on step t
        _, early = self._shifted(after)  # step t + 1's tap "after" lands on step t
        z = torch.relu(late + at + early + self.first_shift)
        for w, b in self.more:
            late, early = self._shifted(z)
            z = torch.relu(late @ w[0].t() + z @ w[1].t() + early @ w[2].t() + b)
        emb = s.attended(s.window.project(torch.cat([z.mean(dim=1), z.amax(dim=1)], dim=1)))
        logits = s.head(emb)
        if not s.state_dim:
            return logits
        h = s.history(emb, state[0])
        return logits, s.part_head(h), h


def export_stream(model: PartStudent, folder: Path) -> dict[str, Any]:
    """Write ``steps.onnx`` and ``head.onnx`` into ``folder``; returns the manifest's
    ``"stream"`` section."""
    if not streams(model):
        raise ExportError("only a student with the stream encoder (model.encoder=stream) streams")
    graph = Graph.of(model)
    assert isinstance(model.window, StreamCNN)
    first = model.window.features[0]
    assert isinstance(first, torch.nn.Conv1d)
    width, (channels, pitches, n_steps) = 3 * first.out_channels, graph.input_shape
    head_in = [STEPS_OUTPUT, *([STATE_NAME] if graph.state else [])]
    head_example = (
        torch.zeros(2, n_steps, width),
        *([torch.zeros(2, graph.state)] if graph.state else []),
    )
    jobs = [
        (
            _Steps(model),
            (torch.zeros(1, channels, pitches, 2),),
            STREAM_STEPS,
            [STEPS_INPUT],
            [STEPS_OUTPUT],
            {STEPS_INPUT: {3: "steps"}, STEPS_OUTPUT: {2: "steps"}},
        ),
        (
            _Head(model),
            head_example,
            STREAM_HEAD,
            head_in,
            list(graph.outputs),
            {n: {0: "batch"} for n in head_in + list(graph.outputs)},
        ),
    ]
    for module, example, name, inputs, outputs, axes in jobs:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the deprecation notice of the TorchScript exporter
            torch.onnx.export(
                module.eval(),
                example,
                str(folder / name),
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    return {
        "width": width,
        **{
            key: {"file": name, "sha256": sha256_file(folder / name)}
            for key, name in (("steps", STREAM_STEPS), ("head", STREAM_HEAD))
        },
    }


def stream_gauntlet(
    model: PartStudent,
    folder: Path,
    *,
    real_inputs: npt.NDArray[np.float32] | None = None,
    tol: float = TOLERANCE,
) -> dict[str, Any]:
    """Check the streaming graphs in ``folder`` against ``model``: the windows (real ones
    and random ones) answered cold, then again from the cache, then shifted by one bar (half
    from the cache), each within ``tol`` of PyTorch's outputs with the same classes. Raises
    :class:`ExportError` on any failure; returns the figures."""
    graph = Graph.of(model)
    real = np.zeros((0, *graph.input_shape), np.float32) if real_inputs is None else real_inputs
    x = np.concatenate([real.astype(np.float32), random_inputs(512, graph.contract, seed=5)])
    shifted = np.concatenate([x[1:, ..., 8:], x[:-1, ..., 8:]], axis=3)  # a hop of one bar
    opts = ort.SessionOptions()
    opts.log_severity_level = 3

    def session(name: str) -> ort.InferenceSession:
        return ort.InferenceSession(str(folder / name), opts, providers=["CPUExecutionProvider"])

    runner = StreamRunner(
        session(STREAM_STEPS),
        session(STREAM_HEAD),
        shape=graph.input_shape,
        state=graph.state,
        capacity=2 * x.shape[0] * x.shape[3],  # every step of the windows and of the shifted
    )
    rng = np.random.default_rng(6)
    worst, mismatches = 0.0, 0
    for name, windows in (("cold", x), ("cached", x), ("shifted", shifted)):
        h = rng.uniform(-1, 1, (len(windows), graph.state)).astype(np.float32)
        feeds = {graph.inputs[0]: windows, **({STATE_NAME: h} if graph.state else {})}
        # A bar line of 16 channels at a time, as the daemon asks (where the parts attend to
        # each other, the answer is the batch's as a whole).
        expected = _torch_outputs(model, graph, feeds, BAR_LINE)
        got = _runner_outputs(runner, feeds, graph, BAR_LINE)
        if not graph.state:
            expected = expected[:1]
        for g, e in zip(got, expected, strict=True):
            worst = max(worst, float(np.abs(g - e).max()))
            mismatches += int((g.argmax(1) != e.argmax(1)).sum())
        if name == "cached" and runner.cache.computed != _distinct(x):
            raise ExportError("stream gauntlet failed: the cache recomputed steps it had")
    if worst > tol or mismatches:
        raise ExportError(
            f"stream gauntlet failed: max |Δ output| {worst:.2e} (limit {tol:.0e}), "
            f"{mismatches} answers change class"
        )
    return {
        "windows": len(x),
        "real_windows": len(real),
        "max_abs_logit_diff": worst,
        "steps_computed": runner.cache.computed,
        "steps_from_cache": runner.cache.hits,
        "tolerance": tol,
        "passed": True,
    }


def _runner_outputs(
    runner: StreamRunner, feeds: dict[str, npt.NDArray[np.float32]], graph: Graph, batch: int
) -> list[npt.NDArray[np.float32]]:
    """The streaming runner's outputs for ``feeds``, ``batch`` windows at a time."""
    x = feeds[graph.inputs[0]]
    if not graph.state:
        return [np.concatenate([runner.logits(x[s : s + batch]) for s in range(0, len(x), batch)])]
    h = feeds[STATE_NAME]
    runs = [runner.step(x[s : s + batch], h[s : s + batch]) for s in range(0, len(x), batch)]
    return [np.concatenate([r[k] for r in runs]) for k in range(3)]


def _distinct(x: npt.NDArray[np.float32]) -> int:
    """How many distinct step columns the windows ``x`` hold."""
    cols = np.ascontiguousarray(x.transpose(0, 3, 1, 2)).reshape(len(x) * x.shape[3], -1)
    return len(np.unique(cols, axis=0))
