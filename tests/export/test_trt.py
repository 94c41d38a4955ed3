"""TensorRT engines for both contracts: the profile and binding plan derived from a bundle, the
runner's bookkeeping, the build -> verify -> load path through a stand-in for TensorRT and CUDA
(``trtfake``: its engine runs the graph with ONNX Runtime), and on a real GPU when one is here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from export.bundle import write_bundle
from export.cli import app as kdexport
from export.errors import ExportError
from export.tensorrt import build_engine, profile_shapes, verify_feeds
from live.bundle import MANIFEST_NAME, default_bundle_dir, read_bundle
from live.errors import BackendError
from live.model import Model, OrtRunner
from live.trt import IoTensor, TrtRunner, bind, bundle_io, matching_engine
from tests.export import trtfake
from tests.export.hardware import needs_tensorrt
from train.models import build_student
from train.testing import save_checkpoint

SHIPPED = default_bundle_dir()


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    """A copy of the bundle kdlive ships (contract 2, state 64), to build engines into."""
    return Path(shutil.copytree(SHIPPED, tmp_path / "shipped"))


@pytest.fixture(scope="module")
def roll_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny contract-1 student's bundle (``roll [B,1,128,16] -> logits [B,8]``)."""
    folder = tmp_path_factory.mktemp("c1")
    ckpt = save_checkpoint(build_student("tiny"), folder / "kdic.pt", preset="tiny")
    return write_bundle(ckpt, folder / "bundle")[0].dir


# ------------------------------------------------------------- derived from the bundle


def test_profile_covers_every_input_of_the_shipped_bundle() -> None:
    b = read_bundle(SHIPPED)
    assert profile_shapes(b) == {
        "inputs": ((1, 5, 128, 16), (16, 5, 128, 16), (16, 5, 128, 16)),
        "state": ((1, 64), (16, 64), (16, 64)),
    }
    assert profile_shapes(b, max_batch=4)["state"] == ((1, 64), (4, 64), (4, 64))
    with pytest.raises(ExportError, match="at least 1"):
        profile_shapes(b, max_batch=0)


def test_profile_of_a_contract_1_bundle(roll_bundle: Path) -> None:
    assert profile_shapes(read_bundle(roll_bundle)) == {
        "roll": ((1, 1, 128, 16), (16, 1, 128, 16), (16, 1, 128, 16))
    }


def test_profile_refuses_a_graph_whose_inputs_the_manifest_does_not_name(shipped: Path) -> None:
    manifest = json.loads((shipped / MANIFEST_NAME).read_text())
    manifest["state"]["name"] = "memory"
    (shipped / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match=r"takes \['inputs', 'state'\].*kdexport bundle"):
        profile_shapes(read_bundle(shipped))


def test_binding_plan_is_in_the_bundles_order() -> None:
    b = read_bundle(SHIPPED)
    assert bundle_io(b) == (
        {"inputs": (5, 128, 16), "state": (64,)},
        ("logits", "part_logits", "state_out"),
    )
    f32 = np.dtype(np.float32)
    plan = {  # as an engine lists them: any order
        "state_out": IoTensor("state_out", False, (64,), f32),
        "state": IoTensor("state", True, (64,), f32),
        "logits": IoTensor("logits", False, (8,), f32),
        "inputs": IoTensor("inputs", True, (5, 128, 16), f32),
        "part_logits": IoTensor("part_logits", False, (8,), f32),
    }
    inputs, outputs = bind(plan, b)
    assert [t.name for t in inputs] == ["inputs", "state"]
    assert [t.name for t in outputs] == ["logits", "part_logits", "state_out"]
    assert inputs[0].nbytes(16) == 16 * 5 * 128 * 16 * 4 and outputs[2].nbytes(3) == 3 * 64 * 4
    plan["inputs"] = IoTensor("inputs", True, (1, 128, 16), f32)
    with pytest.raises(BackendError, match=r"\[B, 1, 128, 16\].*\[B, 5, 128, 16\].*rebuild"):
        bind(plan, b)
    del plan["state"]
    with pytest.raises(BackendError, match="the engine takes"):
        bind(plan, b)


# ---------------------------------------------------- build, verify, run (stand-in GPU)


def test_shipped_bundle_builds_and_steps_like_onnx_runtime(
    shipped: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trtfake.installed(monkeypatch):
        engine = build_engine(shipped, say=lambda m: None)
        meta = json.loads(engine.with_suffix(".json").read_text())
        assert meta["profile"] == {
            "inputs": [[1, 5, 128, 16], [16, 5, 128, 16], [16, 5, 128, 16]],
            "state": [[1, 64], [16, 64], [16, 64]],
        }
        assert meta["verification"]["max_abs_diff"].keys() == {"logits", "part_logits", "state_out"}
        assert matching_engine(read_bundle(shipped)) == engine  # contract 2 is no longer refused
        trt, cpu = Model(shipped), Model(shipped, backend="cpu")
        assert trt.backend == "tensorrt"
        x, h = verify_feeds(read_bundle(shipped), 37, seed=9)
        for n in (1, 7, 16, 37):  # one part, an odd batch, a bar line, more than a bar line
            # More than the engine's largest batch (a bar line) runs in bar lines, whose
            # channels attend to each other where the student's do: as ONNX Runtime's in those.
            want = [
                np.concatenate(a) for a in zip(*_bar_lines(cpu.step, x[:n], h[:n]), strict=True)
            ]
            for got, w in zip(trt.step(x[:n], h[:n]), want, strict=True):
                np.testing.assert_allclose(got, w, atol=1e-6)
        want_logits = np.concatenate([a[0] for a in _bar_lines(cpu.predict, x)])
        np.testing.assert_allclose(trt.predict(x), want_logits, atol=1e-6)


def _bar_lines(fn: Any, *feeds: np.ndarray) -> list[Any]:
    """``fn`` of ``feeds`` 16 rows at a time (the largest batch of an engine's profile)."""
    out = [fn(*(f[s : s + 16] for f in feeds)) for s in range(0, len(feeds[0]), 16)]
    return [o if isinstance(o, tuple) else (o,) for o in out]


def test_state_round_trips_through_the_engine(
    shipped: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each window's ``state_out`` fed back as the next ``state``: four windows in a row."""
    with trtfake.installed(monkeypatch):
        build_engine(shipped, say=lambda m: None)
        b = read_bundle(shipped)
        trt, cpu = TrtRunner(matching_engine(b), b), OrtRunner(b, "cpu")
        x = verify_feeds(b, 4 * 16, seed=3)[0].reshape(4, 16, 5, 128, 16)
        h_trt = h_cpu = np.zeros((16, 64), np.float32)
        for window in x:
            got, want = trt.step(window, h_trt), cpu.step(window, h_cpu)
            np.testing.assert_allclose(got[1], want[1], atol=1e-5)
            h_trt, h_cpu = got[2], want[2]
        np.testing.assert_allclose(h_trt, h_cpu, atol=1e-5)
        assert np.abs(h_trt).max() > 0  # the state really moved


def test_runner_buffers_are_sized_once_for_the_largest_batch(
    shipped: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trtfake.installed(monkeypatch) as cudart:
        build_engine(shipped, say=lambda m: None)
        b = read_bundle(shipped)
        runner = TrtRunner(matching_engine(b), b)
        per_row = {"inputs": 5 * 128 * 16 * 4, "state": 64 * 4, "logits": 32}
        per_row |= {"part_logits": 32, "state_out": 64 * 4}
        sizes = {n: len(cudart.memory[int(p)]) for n, p in runner.device.items()}
        assert sizes == {n: 16 * r for n, r in per_row.items()}
        assert runner.context.addresses == {n: int(p) for n, p in runner.device.items()}
        x, h = verify_feeds(b, 37, seed=2)
        cudart.copies.clear()
        runner.step(x[:5], h[:5])  # a batch of 5 uses the first 5 rows of each buffer
        order = ["inputs", "state", "logits", "part_logits", "state_out"]
        assert cudart.copies == [
            ("h2d" if n in ("inputs", "state") else "d2h", 5 * per_row[n]) for n in order
        ]
        calls = runner.context.shape_calls
        runner.step(x[5:10], h[5:10])  # same batch: shapes are not set again
        assert runner.context.shape_calls == calls
        runner.context.runs.clear()
        runner.step(x, h)  # 37 windows: chunks of the profile's largest batch
        assert runner.context.runs == [16, 16, 5]
        empty = runner.step(x[:0], h[:0])  # no busy channel: nothing runs, shapes kept
        assert [a.shape for a in empty] == [(0, 8), (0, 8), (0, 64)]
        assert runner.context.runs == [16, 16, 5]
        with pytest.raises(BackendError, match="refused batch 17"):
            runner._run([x[:17], h[:17]])  # beyond the profile: TensorRT says no


def test_a_contract_1_bundle_still_builds_and_runs(
    roll_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = Path(shutil.copytree(roll_bundle, tmp_path / "b"))
    with trtfake.installed(monkeypatch):
        build_engine(folder, fp16=True, say=lambda m: None)
        trt, cpu = Model(folder), Model(folder, backend="cpu")
        assert trt.backend == "tensorrt"
        x = verify_feeds(read_bundle(folder), 20, seed=4)[0]
        np.testing.assert_allclose(trt.predict(x), cpu.predict(x), atol=1e-6)
        with pytest.raises(BackendError, match="no state"):
            trt.runner.step(x, np.zeros((20, 1), np.float32))


def test_an_engine_that_disagrees_with_onnx_runtime_is_not_kept(
    shipped: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        trtfake.installed(monkeypatch, nudge=2e-3),  # every output off by 2e-3 (fp32: 1e-3)
        pytest.raises(ExportError, match=r"disagrees with ONNX Runtime.*limit 1e-03"),
    ):
        build_engine(shipped, say=lambda m: None)
    assert not list((shipped / "engines").glob("*.engine"))
    assert not list((shipped / "engines").glob("*.json"))


# ----------------------------------------------------------------- without TensorRT


def test_tensorrt_command_without_tensorrt_says_so_in_one_line(shipped: Path) -> None:
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    result = CliRunner().invoke(kdexport, ["tensorrt", str(shipped)])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert "TensorRT is not installed" in lines[0] and "kdlive[tensorrt]" in lines[0]


# ---------------------------------------------------------------------- a real GPU


@needs_tensorrt
@pytest.mark.parametrize("fp16", [False, True])
def test_shipped_bundle_engine_on_a_real_gpu(shipped: Path, fp16: bool) -> None:
    engine = build_engine(shipped, fp16=fp16)
    assert engine.exists() and json.loads(engine.with_suffix(".json").read_text())["verification"]
    trt, cpu = Model(shipped), Model(shipped, backend="cpu")
    assert trt.backend == "tensorrt"
    x, h = verify_feeds(read_bundle(shipped), 64, seed=5)
    got, want = trt.step(x, h), cpu.step(x, h)
    assert (got[1].argmax(1) == want[1].argmax(1)).mean() >= 0.98
    np.testing.assert_allclose(got[2], want[2], atol=5e-2 if fp16 else 1e-3)
