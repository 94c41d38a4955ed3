"""Export: checkpoint -> ONNX gauntlet -> bundle -> live Model, bad bundles, backends, bench."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from export.bench import run_bench
from export.bundle import write_bundle
from export.cli import app as kdexport
from export.errors import ExportError
from export.onnx import export_onnx, gauntlet, random_inputs, random_rolls
from live.bundle import MANIFEST_NAME, ONNX_NAME, BundleError, read_bundle, sha256_file
from live.contracts import V2
from live.errors import BackendError, LiveError
from live.model import Model, softmax
from live.taxonomy import CLASSES
from tests.export.hardware import needs_tensorrt
from train.checkpoints import load_model
from train.models import build_part_student, build_student, build_teacher
from train.testing import save_checkpoint


def _checkpoint(
    path: Path, preset: str = "fast", seed: int = 0, role: str = "student", **student: Any
) -> Path:
    torch.manual_seed(seed)
    if role == "teacher":
        model = build_teacher(preset, frames=64)
    elif student.pop("contract", 1) == 2:
        model = build_part_student(preset, **student)
    else:
        model = build_student(preset)
    # Non-trivial batch-norm statistics, as after training, so folding them is really tested.
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return save_checkpoint(model, path, preset=preset, role=role)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "kdic.pt")


@pytest.fixture(scope="module")
def bundle(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "b"
    write_bundle(ckpt, out)
    return out


def _fresh_copy(bundle: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(bundle, dest)
    return dest


# ------------------------------------------------------------------------ the round trip


def test_bundle_holds_a_checked_manifest(bundle: Path) -> None:
    b = read_bundle(bundle)
    m = b.manifest
    assert m["format_version"] == 1 and m["classes"] == list(CLASSES)
    assert m["input"]["shape"] == ["batch", 1, 128, 16] and m["output"]["shape"] == ["batch", 8]
    assert m["onnx"]["sha256"] == sha256_file(bundle / ONNX_NAME)
    assert m["preset"] == "fast" and m["model"]["parameters"] > 10_000
    g = m["export"]["gauntlet"]
    assert g["passed"] and g["windows"] >= 1000 and g["max_abs_logit_diff"] <= 1e-4
    assert g["argmax_mismatches"] == 0 and m["export"]["tensorrt_preflight"]["passed"]
    # Batch norm is folded into the convolutions: no BatchNormalization node is left.
    assert "BatchNormalization" not in g["ops"] and "Conv" in g["ops"]


def test_live_model_gives_the_same_classes_as_pytorch(ckpt: Path, bundle: Path) -> None:

    torch_model = load_model(ckpt)
    x = random_rolls(500, seed=11)
    with torch.no_grad():
        want = torch.softmax(torch_model(torch.from_numpy(x)), 1).numpy()
    model = Model(bundle)
    assert model.backend == "onnxruntime-cpu"  # no GPU here: the fallback at the end
    got = model.predict(x)
    assert got.shape == (500, 8) and np.allclose(got.sum(1), 1.0, atol=1e-5)
    assert np.array_equal(got.argmax(1), want.argmax(1))
    assert np.abs(got - want).max() < 1e-5
    one = model.predict(x[:1])  # batch 1, the daemon's usual call
    assert np.allclose(one, got[:1], atol=1e-6)


def test_model_rejects_rolls_of_the_wrong_shape(bundle: Path) -> None:
    model = Model(bundle, warmup=False)
    with pytest.raises(Exception, match=r"\[B, 1, 128, 16\]"):
        model.predict(np.zeros((2, 128, 16), np.float32))
    assert model.predict(np.zeros((0, 1, 128, 16), np.float32)).shape == (0, 8)


def test_softmax_is_stable() -> None:
    p = softmax(np.array([[1000.0, 0.0, -1000.0]], np.float32))
    assert np.isfinite(p).all() and p[0, 0] == pytest.approx(1.0)


# --------------------------------------------------------------------------- gauntlet


def test_gauntlet_refuses_a_model_in_training_mode(ckpt: Path, tmp_path: Path) -> None:

    model = load_model(ckpt)
    export_onnx(model, tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="training mode"):
        gauntlet(model.train(), tmp_path / "m.onnx")


def test_gauntlet_catches_a_graph_that_differs(ckpt: Path, tmp_path: Path) -> None:

    model = load_model(ckpt)
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    proto = onnx.load(str(path))
    last = [t for t in proto.graph.initializer if len(t.dims) == 1 and t.dims[0] == 8][-1]
    bias = onnx.numpy_helper.to_array(last).copy()
    bias[3] += 0.01  # a tiny change in one class's bias
    last.CopyFrom(onnx.numpy_helper.from_array(bias, last.name))
    onnx.save(proto, str(path))
    with pytest.raises(ExportError, match=r"max \|Δ output\|"):
        gauntlet(model, path)


def test_nothing_is_written_unless_the_gauntlet_passes(
    ckpt: Path, bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _fresh_copy(bundle, tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def failing(*args, **kwargs):
        raise ExportError("ONNX gauntlet failed: simulated")

    monkeypatch.setattr("export.bundle.gauntlet", failing)
    with pytest.raises(ExportError):
        write_bundle(ckpt, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old bundle is intact
    assert sorted(x.name for x in tmp_path.iterdir()) == ["copy"]  # no temporary left behind


def test_a_teacher_checkpoint_is_refused(tmp_path: Path) -> None:
    teacher = _checkpoint(tmp_path / "teacher.pt", role="teacher")
    with pytest.raises(ExportError, match="not a student"):
        write_bundle(teacher, tmp_path / "b")


@pytest.mark.parametrize(
    ("encoder", "state", "stats"),
    [
        ("cnn", 0, False),
        ("steps", 0, False),
        ("cnn", 16, False),
        ("steps", 16, False),
        ("steps", 16, True),  # the hand statistics beside the embedding (train.stats)
        ("stream", 0, False),  # live.stream runs it step by step
        ("stream", 16, False),
    ],
)
def test_contract_2_students_export_with_their_state(
    encoder: str, state: int, stats: bool, tmp_path: Path
) -> None:
    """A contract-2 student: inputs [B,5,128,16] (and a state in and out) through the
    gauntlet and the TensorRT pre-flight; live's Model gives PyTorch's window answer,
    running answer and state."""
    ckpt = _checkpoint(
        tmp_path / "kdic.pt",
        contract=2,
        inputs=(0, 1, 2, 3, 4),
        state=state,
        encoder=encoder,
        stats=stats,
    )
    b, report = write_bundle(ckpt, tmp_path / "b")
    assert report["passed"] and (b.contract, b.state_size, b.input_shape) == (
        V2,
        state,
        (5, 128, 16),
    )
    assert b.manifest["export"]["tensorrt_preflight"]["passed"]
    student = load_model(ckpt)
    x = random_inputs(40, V2, seed=4)
    model = Model(b.dir)
    with torch.no_grad():
        want = torch.softmax(student(torch.from_numpy(x)), dim=1).numpy()
    np.testing.assert_allclose(model.predict(x), want, atol=1e-5)
    if state:
        h = np.random.default_rng(0).uniform(-1, 1, (40, state)).astype(np.float32)
        with torch.no_grad():
            _, part, out = student.step(torch.from_numpy(x), torch.from_numpy(h))
        probs, part_probs, state_out = model.step(x, h)
        np.testing.assert_allclose(part_probs, torch.softmax(part, dim=1).numpy(), atol=1e-5)
        np.testing.assert_allclose(state_out, out.numpy(), atol=1e-5)
    else:
        with pytest.raises(LiveError, match="no state"):
            model.step(x, np.zeros((40, 1), np.float32))


# ----------------------------------------------------------------------- bad bundles


def _break(kind: str, folder: Path) -> None:
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    if kind == "missing":
        shutil.rmtree(folder)
    elif kind == "no-manifest":
        (folder / MANIFEST_NAME).unlink()
    elif kind == "not-json":
        (folder / MANIFEST_NAME).write_text("{ not json")
    elif kind == "format":
        manifest["format_version"] = 99
    elif kind == "classes":
        manifest["classes"] = list(reversed(CLASSES))
    elif kind == "share":
        manifest.setdefault("state", {})["history_share"] = 1.5
    elif kind == "truncated":
        data = (folder / ONNX_NAME).read_bytes()
        (folder / ONNX_NAME).write_bytes(data[: len(data) // 2])
    elif kind == "truncated-rehashed":  # a truncated file whose manifest was updated to match
        data = (folder / ONNX_NAME).read_bytes()
        (folder / ONNX_NAME).write_bytes(data[: len(data) // 2])
        manifest["onnx"]["sha256"] = sha256_file(folder / ONNX_NAME)
    if kind in ("format", "classes", "share", "truncated-rehashed"):
        (folder / MANIFEST_NAME).write_text(json.dumps(manifest))


BROKEN = {
    "missing": "no model bundle",
    "no-manifest": "not a kdlive bundle",
    "not-json": "not valid JSON",
    "format": "format version 99",
    "classes": "differ from the contract",
    "share": "history_share 1.5 is not a number from 0 to 1",
    "truncated": "does not match its manifest",
    "truncated-rehashed": "cannot be loaded by ONNX Runtime",
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_bundle_is_one_clear_line(kind: str, bundle: Path, tmp_path: Path) -> None:
    folder = _fresh_copy(bundle, tmp_path)
    _break(kind, folder)
    with pytest.raises(BundleError, match=BROKEN[kind]):
        Model(folder)
    result = CliRunner().invoke(kdexport, ["bench", str(folder), "--iters", "10"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert BROKEN[kind] in lines[0] and "Traceback" not in result.output


# --------------------------------------------------------------------------- backends


def test_forced_backends_that_cannot_run_say_why(bundle: Path) -> None:
    with pytest.raises(BackendError, match="kdexport tensorrt"):
        Model(bundle, backend="tensorrt")  # no engine in the bundle
    with pytest.raises(BackendError, match="CUDA"):
        Model(bundle, backend="cuda")
    with pytest.raises(BackendError, match="unknown backend"):
        Model(bundle, backend="metal")


def test_auto_falls_back_past_an_engine_that_cannot_run(bundle: Path, tmp_path: Path) -> None:
    folder = _fresh_copy(bundle, tmp_path)
    (folder / "engines").mkdir()
    (folder / "engines" / "student.some-gpu-sm90.trt10.0.fp16.engine").write_bytes(b"\0" * 64)
    assert Model(folder).backend == "onnxruntime-cpu"
    with pytest.raises(BackendError):
        Model(folder, backend="tensorrt")  # no TensorRT / GPU here, or not this GPU's engine


def test_threads_option_is_honoured(bundle: Path) -> None:
    model = Model(bundle, threads=2, warmup=False)
    assert model.runner.session.get_session_options().intra_op_num_threads == 2


# ------------------------------------------------------------------------------ bench


def test_bench_writes_json_with_percentiles(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        kdexport, ["bench", str(bundle), "--json", str(out), "--iters", "60"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    cpu = data["student"]["cpu"]
    assert cpu["available"] and cpu["runner"] == "onnxruntime-cpu"
    for key in ("batch1", "batch16"):
        s = cpu[key]
        assert 0 < s["p50_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert data["student"]["tensorrt"]["available"] is False
    paper = data["paper_student"]["cpu"]
    assert paper["available"] and paper["batch1"]["p50_ms"] > 0
    assert data["paper_student"]["model"]["parameters"] > 1_000_000
    assert set(data["goal"]) >= {"p99_ms_batch1_cpu", "speedup_p50", "met", "bar_line_met"}
    assert data["goal"]["p99_ms_bar_line_cpu"] == cpu["batch16"]["p99_ms"]
    assert "goal:" in result.output and "a bar line of 16 channels" in result.output


def test_bench_without_the_paper_student(bundle: Path) -> None:
    data = run_bench(bundle, iters=20, paper=False)
    assert "paper_student" not in data and "goal" not in data


# -------------------------------------------------------------------- GPU and TensorRT


@needs_tensorrt
@pytest.mark.parametrize("fp16", [False, True])
def test_tensorrt_engine_matches_onnx_runtime(bundle: Path, tmp_path: Path, fp16: bool) -> None:
    from export.tensorrt import build_engine

    folder = _fresh_copy(bundle, tmp_path)
    engine = build_engine(folder, fp16=fp16, max_batch=16)
    assert engine.exists() and engine.with_suffix(".json").exists()
    trt_model, cpu_model = Model(folder), Model(folder, backend="cpu")
    assert trt_model.backend == "tensorrt"
    x = random_rolls(64, seed=5)
    assert (trt_model.predict(x).argmax(1) == cpu_model.predict(x).argmax(1)).mean() >= 0.98


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_onnxruntime_cuda_matches_cpu(bundle: Path) -> None:
    try:
        gpu = Model(bundle, backend="cuda")
    except BackendError as exc:
        pytest.skip(f"onnxruntime-gpu not installed: {exc}")
    x = random_rolls(64, seed=6)
    assert np.abs(gpu.predict(x) - Model(bundle, backend="cpu").predict(x)).max() < 1e-4
