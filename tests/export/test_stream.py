"""The streaming student: a step's embedding reads that step alone, the bundle's two streaming
graphs give the whole graph's answers (cold, from the cache, a bar later), and the cache
computes each distinct step once and nothing it was not asked for."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from export.bench import fresh_steps, run_bench
from export.bundle import write_bundle
from export.errors import ExportError
from export.onnx import random_inputs
from export.stream import export_stream
from live.bundle import MANIFEST_NAME, STREAM_HEAD, BundleError, read_bundle
from live.contracts import V2
from live.model import Model
from live.stream import StepCache, StreamRunner
from train.checkpoints import load_model
from train.models import StreamCNN, build_part_student, describe, model_from_description
from train.testing import save_checkpoint


def _student(state: int = 16, preset: str = "fast", seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build_part_student(preset, inputs=(0, 1, 2, 3, 4), state=state, encoder="stream")
    for m in model.modules():  # batch norm as after training, so folding it is tested
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def stream_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("stream")
    ckpt = save_checkpoint(_student(), folder / "kdic.pt", preset="fast", role="student")
    write_bundle(ckpt, folder / "b")
    return folder


def test_a_step_embedding_reads_that_step_alone() -> None:
    x = torch.from_numpy(random_inputs(4, V2, seed=1)[:, :2])  # 2 input channels
    torch.manual_seed(1)
    window = StreamCNN(in_channels=2).eval()
    with torch.no_grad():
        whole = window.steps(x)
        alone = torch.cat([window.steps(x[..., t : t + 1]) for t in range(16)], dim=2)
        y = x.clone()
        y[..., 5] = 1.0 - y[..., 5]
        changed = (window.steps(y) != whole).any(dim=1)
    assert whole.shape == (4, window.step_width, 16)
    torch.testing.assert_close(alone, whole, rtol=0, atol=1e-6)
    assert changed[:, 5].all() and not changed[:, :5].any() and not changed[:, 6:].any()


def test_the_stream_encoder_describes_itself() -> None:
    model = _student(state=8, preset="tiny")
    again = model_from_description(json.loads(json.dumps(describe(model))))
    again.load_state_dict(model.state_dict())
    x = torch.from_numpy(random_inputs(3, V2, seed=2))
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), model(x))


def test_streamed_answers_are_the_whole_graphs(stream_bundle: Path) -> None:
    """Window answer, running answer and state, through the cache (cold, then again, then a
    bar later with new steps), within 1e-5 of PyTorch and of the whole ONNX graph."""
    b = read_bundle(stream_bundle / "b")
    gauntlet = b.manifest["export"]["stream_gauntlet"]
    assert gauntlet["passed"] and gauntlet["max_abs_logit_diff"] <= 1e-4
    assert b.stream_paths is not None and all(p.exists() for p in b.stream_paths)
    streamed, whole = Model(b.dir), Model(b.dir, stream=False)
    assert (streamed.backend, whole.backend) == ("onnxruntime-cpu-stream", "onnxruntime-cpu")
    student = load_model(stream_bundle / "kdic.pt")
    rng = np.random.default_rng(3)
    x = random_inputs(24, V2, seed=4)
    later = np.concatenate([x[..., 8:], fresh_steps(rng, 24, 8)], axis=3)
    for windows in (x, x, later):
        h = rng.uniform(-1, 1, (24, 16)).astype(np.float32)
        with torch.no_grad():
            logits, part, out = student.step(torch.from_numpy(windows), torch.from_numpy(h))
        got = streamed.step(windows, h)
        for g, w in zip(got, whole.step(windows, h), strict=True):
            np.testing.assert_allclose(g, w, atol=1e-5)
        np.testing.assert_allclose(got[0], torch.softmax(logits, 1).numpy(), atol=1e-5)
        np.testing.assert_allclose(got[1], torch.softmax(part, 1).numpy(), atol=1e-5)
        np.testing.assert_allclose(got[2], out.numpy(), atol=1e-5)
    np.testing.assert_allclose(streamed.predict(x), whole.predict(x), atol=1e-5)
    none = streamed.step(x[:0], np.zeros((0, 16), np.float32))  # no window: no answer
    assert [a.shape for a in none] == [(0, 8), (0, 8), (0, 16)]


def test_a_bar_later_only_the_new_steps_are_computed(stream_bundle: Path) -> None:
    model = Model(stream_bundle / "b")
    runner = model.runner
    assert isinstance(runner, StreamRunner) and len(runner.cache) == 0  # warm-up forgotten
    rng = np.random.default_rng(5)
    x = fresh_steps(rng, 16, 16)  # 16 windows of 16 steps never seen
    h = np.zeros((16, 16), np.float32)
    model.step(x, h)
    assert runner.cache.computed == 16 * 16 and runner.cache.hits == 0
    model.step(x, h)  # the same windows again (computed ahead, then closed): nothing new
    assert runner.cache.computed == 256 and runner.cache.hits == 256
    later = np.concatenate([x[..., 8:], fresh_steps(rng, 16, 8)], axis=3)
    model.step(later, h)
    assert runner.cache.computed == 256 + 16 * 8 and runner.cache.hits == 256 + 16 * 8
    last = later.copy()
    last[:, 0, 30, 15] = 1.0 - last[:, 0, 30, 15]  # a note at the bar line, on every channel
    model.step(last, h)
    assert runner.cache.computed == 256 + 128 + 16


def test_the_cache_computes_each_distinct_step_once_and_forgets_the_oldest() -> None:
    calls: list[int] = []

    def compute(cols: np.ndarray) -> np.ndarray:  # [column, M] -> [M, 3]: its sums, say
        calls.append(cols.shape[1])
        return np.stack([cols.sum(0), cols[0], cols[-1]], axis=1).astype(np.float32)

    cache = StepCache(6, 3, capacity=4)
    x = np.zeros((2, 6, 4), np.float32)  # 2 windows of 4 steps, 6 values per step
    x[0, 1, 1] = x[1, 1, 3] = 1.0  # the same step in two places
    x[0, 5, 2] = 127.0
    want = np.stack([x.sum(1), x[:, 0], x[:, -1]], axis=2).reshape(8, 3)
    np.testing.assert_array_equal(cache.embed(x, compute), want)
    assert calls == [3] and cache.computed == 3 and cache.hits == 0  # zeros, the note, 127
    np.testing.assert_array_equal(cache.embed(x, compute), want)
    assert calls == [3] and cache.hits == 8
    y = np.zeros((1, 6, 4), np.float32)
    y[0, 2, :] = [1, 2, 3, 4]  # 4 new steps: the cache (4) keeps only them
    cache.embed(y, compute)
    assert calls == [3, 4] and len(cache) == 4
    cache.embed(x, compute)
    assert calls == [3, 4, 3]
    cache.clear()
    assert len(cache) == 0 and cache.computed == cache.hits == 0


def test_a_broken_streaming_graph_is_one_clear_line(stream_bundle: Path, tmp_path: Path) -> None:
    folder = tmp_path / "b"
    shutil.copytree(stream_bundle / "b", folder)
    (folder / STREAM_HEAD).write_bytes((folder / STREAM_HEAD).read_bytes()[:100])
    with pytest.raises(BundleError, match="head.onnx does not match its manifest"):
        read_bundle(folder)
    (folder / STREAM_HEAD).unlink()
    with pytest.raises(BundleError, match="has no head.onnx"):
        read_bundle(folder)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    del manifest["stream"]  # without its streaming graphs, it is a plain bundle
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert Model(folder).backend == "onnxruntime-cpu"


def test_a_deeper_stream_encoder_streams_too(tmp_path: Path) -> None:
    """``model.depth=2``: the further convolution over the steps runs in the head graph,
    and the streamed answers are still PyTorch's (the gauntlet inside the export)."""
    torch.manual_seed(2)
    model = build_part_student(
        "tiny", inputs=(0, 1, 2, 3, 4), state=8, encoder="stream", depth=2, attend=True
    )
    assert isinstance(model.window, StreamCNN)
    assert sum(isinstance(m, nn.Conv1d) and m.kernel_size == (3,) for m in model.modules()) == 2
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    again = model_from_description(json.loads(json.dumps(describe(model))))
    assert sum(p.numel() for p in again.parameters()) == sum(p.numel() for p in model.parameters())
    ckpt = save_checkpoint(model.eval(), tmp_path / "kdic.pt", preset="tiny", role="student")
    write_bundle(ckpt, tmp_path / "b")
    gauntlet = read_bundle(tmp_path / "b").manifest["export"]["stream_gauntlet"]
    assert gauntlet["passed"] and gauntlet["max_abs_logit_diff"] <= 1e-4


def test_a_student_that_does_not_stream_is_refused(tmp_path: Path) -> None:
    steps = build_part_student("tiny", inputs=(0, 1, 2, 3, 4), state=8, encoder="steps")
    with pytest.raises(ExportError, match="model.encoder=stream"):
        export_stream(steps.eval(), tmp_path)  # type: ignore[arg-type]


def test_bench_times_the_streamed_bar_line(stream_bundle: Path) -> None:
    result = run_bench(stream_bundle / "b", iters=60, paper=False, say=lambda _: None)
    cpu = result["student"]["cpu"]
    assert cpu["runner"] == "onnxruntime-cpu-stream"
    for key, new in (("batch1", 1), ("batch16", 1), ("batch16_new_bar", 8), ("batch16_cold", 16)):
        assert cpu[key]["new_steps"] == new and cpu[key]["p99_ms"] >= cpu[key]["p50_ms"] > 0


def test_kdexport_check_says_the_bundle_streams(stream_bundle: Path) -> None:
    from typer.testing import CliRunner

    from export.cli import app as kdexport

    result = CliRunner().invoke(kdexport, ["check", str(stream_bundle / "b")])
    assert result.exit_code == 0, result.output
    assert "test macro-F1 n/a, streams step by step" in result.output
    assert "cpu: ok (onnxruntime-cpu-stream)" in result.output
