"""Teacher and student networks: shapes (Table 1 for ``paper``), self-description, ONNX parity."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from live.contract import MEL
from live.taxonomy import N_CLASSES
from train.config import ARCHITECTURES
from train.models import (
    KdModel,
    PaperCNN,
    StudentCNN,
    build_student,
    build_teacher,
    count_macs,
    count_params,
    describe,
    model_from_description,
)

#: Ops a student may contain so that ONNX Runtime and TensorRT run it as is.
PLAIN_OPS = {
    "Conv",
    "BatchNormalization",
    "Relu",
    "LeakyRelu",
    "MaxPool",
    "AveragePool",
    "ReduceMean",
    "ReduceMax",
    "Flatten",
    "Gemm",
    "MatMul",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Concat",
    "Identity",
    "Constant",
}
#: Output shapes of Table 1, (height, width, channels) as printed, then the flatten size.
TABLE_1 = {
    "student": [(64, 8, 256), (64, 8, 256), (64, 8, 256), (32, 4, 512), 65_536],
    "teacher": [(64, 264, 256), (64, 264, 256), (64, 264, 256), (32, 132, 512), 2_162_688],
}
TEACHER_FRAMES = 172  # ~2 bars at 120 bpm, for the fast and tiny teachers


def rolls(batch: int, *, seed: int = 0) -> torch.Tensor:
    """Random binary piano rolls ``[batch, 1, 128, 16]`` (float32 0/1, ~5% on)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 1, 128, 16, generator=g) < 0.05).float()


def log_mels(batch: int, frames: int, *, seed: int = 0) -> torch.Tensor:
    """Random log-mel spectrograms ``[batch, 1, 128, frames]`` in dB (-100 .. +20)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, 128, frames, generator=g) * 120.0 - 100.0


def build(preset: str, kind: str) -> tuple[KdModel, torch.Tensor]:
    """A model of ``preset`` and ``kind`` in eval mode, and a batch of 2 inputs for it."""
    torch.manual_seed(0)
    if kind == "student":
        return build_student(preset).eval(), rolls(2)
    frames = MEL.paper_frames if preset == "paper" else TEACHER_FRAMES
    return build_teacher(preset, frames=frames).eval(), log_mels(2, frames)


def table_shapes(model: PaperCNN, x: torch.Tensor) -> list[tuple[int, ...] | int]:
    """Output shapes of the paper model's Table 1 layers, in the paper's H x W x C notation."""
    shapes: list[tuple[int, ...] | int] = []

    def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
        shapes.append(
            out.shape[1] if out.dim() == 2 else (out.shape[2], out.shape[3], out.shape[1])
        )

    layers = [model.conv1, model.act, model.pool, model.conv2, model.flatten]
    handles = [layer.register_forward_hook(hook) for layer in layers]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    assert logits.shape == (x.shape[0], N_CLASSES)
    return shapes


@pytest.fixture(scope="module")
def paper_teacher() -> PaperCNN:
    torch.manual_seed(0)
    model = build_teacher("paper", frames=MEL.paper_frames).eval()
    assert isinstance(model, PaperCNN)
    return model


def test_every_preset_builds_both_models_and_nothing_else_does() -> None:
    for preset in ARCHITECTURES:
        assert build_student(preset)(rolls(1)).shape == (1, N_CLASSES)
        assert isinstance(build_teacher(preset, frames=64), KdModel)
    with pytest.raises(ValueError, match="unknown model preset 'big'"):
        build_student("big")


@pytest.mark.parametrize("kind", ["teacher", "student"])
@pytest.mark.parametrize("preset", ARCHITECTURES)
def test_logits_and_embedding_shapes(preset: str, kind: str, paper_teacher: PaperCNN) -> None:
    model: KdModel
    if (preset, kind) == ("paper", "teacher"):
        model, x = paper_teacher, log_mels(1, MEL.paper_frames)  # batch 1: 5 G multiply-adds
    else:
        model, x = build(preset, kind)
    with torch.no_grad():
        logits, emb = model(x), model.embed(x)
    assert logits.shape == (x.shape[0], N_CLASSES)
    assert emb.shape == (x.shape[0], model.embedding_dim)
    assert torch.isfinite(logits).all() and torch.isfinite(emb).all()


@pytest.mark.parametrize("frames", [32, 64, 172, 256, 300, 528])
def test_fast_teacher_accepts_any_number_of_frames(frames: int) -> None:
    model = build_teacher("fast", frames=256).eval()
    with torch.no_grad():
        logits, emb = model(log_mels(2, frames)), model.embed(log_mels(2, frames))
    assert logits.shape == (2, N_CLASSES)
    assert emb.shape == (2, model.embedding_dim)
    assert torch.isfinite(logits).all()


def test_paper_student_shapes_are_table_1() -> None:
    model = build_student("paper").eval()
    assert isinstance(model, PaperCNN)
    assert table_shapes(model, rolls(1)) == TABLE_1["student"]
    assert model.embedding_dim == 65_536
    assert model.dense.out_features == N_CLASSES


def test_paper_teacher_shapes_are_table_1(paper_teacher: PaperCNN) -> None:
    assert table_shapes(paper_teacher, log_mels(1, MEL.paper_frames)) == TABLE_1["teacher"]
    assert paper_teacher.embedding_dim == 2_162_688


def test_paper_teacher_takes_raw_db() -> None:
    """The weightless dB scaling maps the floor (silence, padding) to 0, like zero padding."""
    model = build_teacher("paper", frames=32)
    assert isinstance(model, PaperCNN)
    assert torch.equal(
        model.norm(torch.full((1, 1, 2, 2), MEL.top_db_floor)), torch.zeros(1, 1, 2, 2)
    )


@pytest.mark.parametrize(
    ("preset", "kind"),
    [
        (p, k)
        for p in ARCHITECTURES
        for k in ("teacher", "student")
        if (p, k) != ("paper", "teacher")
    ],
)
def test_description_rebuilds_the_same_model(preset: str, kind: str) -> None:
    """(The paper teacher, 18 M parameters, is checked on the meta device below.)"""
    model, x = build(preset, kind)
    desc = json.loads(json.dumps(describe(model)))  # as a checkpoint stores it
    rebuilt = model_from_description(desc)
    assert type(rebuilt) is type(model)
    assert describe(rebuilt) == desc
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)
        torch.testing.assert_close(rebuilt.embed(x), model.embed(x), rtol=0, atol=0)


def test_paper_teacher_description_round_trips() -> None:
    with torch.device("meta"):
        model = build_teacher("paper", frames=MEL.paper_frames)
        rebuilt = model_from_description(json.loads(json.dumps(describe(model))))
    assert describe(rebuilt) == describe(model)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes


def test_bad_preset_and_description_are_refused() -> None:
    with pytest.raises(ValueError, match="preset"):
        build_student("huge")
    with pytest.raises(ValueError, match="class"):
        model_from_description({"class": "Nope", "kwargs": {}})
    with pytest.raises(TypeError):
        describe(nn.Linear(2, 2))


#: The description in the manifest of the bundle kdlive shipped before issue 16 (contract 1).
OLDER_DESCRIPTION = {
    "class": "StudentCNN",
    "kwargs": {
        "n_pitches": 128,
        "n_steps": 16,
        "channels": [16, 32, 32],
        "first_kernel": [13, 3],
        "first_stride": [2, 1],
        "pools": [[2, 2], [2, 2], [2, 1]],
        "hidden": 64,
        "dropout": 0.3,
        "pitch_channel": True,
        "band_embedding": False,
        "n_classes": 8,
    },
}


def test_a_model_described_by_an_older_kdlive_still_loads() -> None:
    """Older bundles' manifests and checkpoints name band_embedding=False, an option since
    retired: the same architecture, so it rebuilds; switched on, a clear error."""
    old = OLDER_DESCRIPTION
    model = model_from_description(old)
    assert describe(model) == describe(StudentCNN())
    assert count_params(model) == 32_200  # what that manifest says
    with pytest.raises(ValueError, match="band_embedding=True.*retrain"):
        model_from_description(old | {"kwargs": old["kwargs"] | {"band_embedding": True}})


def export_onnx(model: nn.Module, path: Path) -> None:
    """The export recipe used for the students: dynamic batch, opset 17, TorchScript exporter."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (rolls(1),),
            str(path),
            input_names=["roll"],
            output_names=["logits"],
            dynamic_axes={"roll": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


@pytest.mark.parametrize("preset", ["tiny", "fast"])
def test_student_exports_to_onnx_and_matches_torch(preset: str, tmp_path: Path) -> None:
    model, _ = build(preset, "student")
    path = tmp_path / "student.onnx"
    export_onnx(model, path)
    graph = onnx.load(str(path)).graph
    assert {node.op_type for node in graph.node} <= PLAIN_OPS
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        x = rolls(batch, seed=batch)
        (got,) = session.run(None, {"roll": x.numpy()})
        with torch.no_grad():
            want = model(x).numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_fast_student_is_at_least_5x_cheaper_than_the_paper_student() -> None:
    shape = (1, 1, 128, 16)
    fast, paper = (
        count_macs(build_student("fast"), shape),
        count_macs(build_student("paper"), shape),
    )
    assert fast * 5 < paper
    assert 20_000 <= count_params(build_student("fast")) <= 150_000


def test_count_macs_counts_conv_and_linear() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)
    ).train()
    assert count_macs(model, (2, 1, 8, 8)) == 2 * (8 * 8 * 4 * 9 + 256 * 10)
    assert model.training  # mode restored
    assert count_params(model) == 4 * 9 + 4 + 256 * 10 + 10


@pytest.mark.parametrize(
    "kwargs",
    [
        {"first_stride": (1, 1), "pools": ((4, 2), (2, 2), (2, 1))},
        {"pitch_channel": False},
    ],
)
def test_student_variants_export_and_round_trip(kwargs: dict, tmp_path: Path) -> None:
    """The architecture options (an unstrided first convolution, no pitch channel) give the
    same shapes, describe themselves, and export to plain ONNX ops."""
    model = StudentCNN(**kwargs)
    x = rolls(3)
    assert model(x).shape == (3, 8)
    rebuilt = model_from_description(describe(model))
    rebuilt.load_state_dict(model.state_dict())
    model.eval(), rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
    path = tmp_path / "variant.onnx"
    export_onnx(model, path)
    assert {node.op_type for node in onnx.load(str(path)).graph.node} <= PLAIN_OPS
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"roll": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), rtol=0, atol=1e-4)


def test_a_strided_first_convolution_saves_work() -> None:
    shape = (1, 1, 128, 16)
    unstrided = StudentCNN(first_stride=(1, 1), pools=((4, 2), (2, 2), (2, 1)))
    assert count_macs(StudentCNN(), shape) < 0.75 * count_macs(unstrided, shape)
