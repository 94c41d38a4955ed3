"""The CPU pre-flight: would TensorRT's ONNX parser (the pinned version) build this graph?"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn
from typer.testing import CliRunner

from export.cli import app as kdexport
from export.onnx import export_onnx
from export.preflight import DATA_PATH, TENSORRT_VERSION, preflight, supported_list
from live.bundle import default_bundle_dir, read_bundle
from train.models import build_part_student, build_student
from train.testing import save_checkpoint

REPO = Path(__file__).resolve().parents[2]
F32 = TensorProto.FLOAT


def _graph(
    nodes: list[onnx.NodeProto],
    inputs: list[tuple[str, int, list[Any]]],
    outputs: list[tuple[str, int, list[Any]]],
    *,
    opset: int = 17,
    initializers: list[onnx.TensorProto] = (),  # type: ignore[assignment]
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        initializer=list(initializers),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _one(op: str, **attrs: Any) -> onnx.ModelProto:
    """``x [B, 4, 8, 8] -> op -> y [B, 4, 8, 8]``."""
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    return _graph([node], [("x", F32, ["B", 4, 8, 8])], [("y", F32, ["B", 4, 8, 8])])


# ------------------------------------------------------------------- what passes


def test_the_shipped_bundle_passes() -> None:
    report = preflight(read_bundle().onnx_path)
    assert report.passed and report.blockers == () and report.notes == ()
    assert report.tensorrt == TENSORRT_VERSION and report.opset == 17
    assert {"Conv", "Gemm", "Slice", "ReduceMean", "Tanh"} <= set(report.ops)


@pytest.mark.parametrize(
    "student",
    [
        None,
        {"inputs": (0, 1, 2, 3, 4), "state": 16, "encoder": "cnn"},
        {"inputs": (0, 1, 2, 3, 4), "state": 16, "encoder": "steps"},
        {"inputs": (0, 1, 2, 3, 4), "state": 16, "encoder": "stream"},
        {"inputs": (0, 1, 2, 3, 4), "state": 0, "encoder": "cnn"},
    ],
    ids=["c1", "c2-cnn-state", "c2-steps-state", "c2-stream-state", "c2-no-state"],
)
def test_freshly_exported_students_pass(student: dict | None, tmp_path: Path) -> None:
    path = tmp_path / "s.onnx"
    model = build_student("tiny") if student is None else build_part_student("tiny", **student)
    export_onnx(model.eval(), path)
    report = preflight(path)
    assert report.passed, report.blockers
    # The state's output dimension is symbolic in the file; inference fixes it from the input.
    if student and student.get("state"):
        out = onnx.load(str(path)).graph.output[2].type.tensor_type.shape.dim[1]
        assert out.dim_param and not out.dim_value


def test_the_list_says_where_it_comes_from_and_the_pin_matches() -> None:
    data = supported_list()
    assert DATA_PATH.name == f"onnx_tensorrt_{TENSORRT_VERSION}.json"
    assert data["tensorrt"] == TENSORRT_VERSION
    src = data["source"]
    assert src["repository"] == "onnx/onnx-tensorrt"
    assert re.fullmatch(r"[0-9a-f]{40}", src["commit"])
    assert src["tag"] == f"release/{TENSORRT_VERSION}-GA" and src["tag"] in src["url"]
    assert "Conv" in data["supported"] and "Det" in data["unsupported"]
    assert set(data["rules"]) <= set(data["supported"])  # rules only for listed operators
    major, minor = TENSORRT_VERSION.split(".")
    pin = f'tensorrt = ["tensorrt>={major}.{minor},<{major}.{int(minor) + 1}"'
    assert pin in (REPO / "pyproject.toml").read_text()  # the extra installs what the list is for


# ------------------------------------------------------------------- what blocks


def test_an_unsupported_operator_blocks_with_a_clear_line() -> None:
    model = _graph(
        [helper.make_node("Det", ["x"], ["y"], name="det0")],
        [("x", F32, ["B", 3, 3])],
        [("y", F32, ["B"])],
    )
    report = preflight(model)
    assert not report.passed
    assert report.blockers == (
        f"Det (det0): the ONNX-TensorRT parser of TensorRT {TENSORRT_VERSION} lists it as "
        "unsupported",
    )


def test_an_exported_torch_operator_tensorrt_cannot_run(tmp_path: Path) -> None:
    class Odd(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.det(x[:, 0, :8, :8]).unsqueeze(1).repeat(1, 8)  # ONNX Det

    path = tmp_path / "odd.onnx"
    export_onnx(Odd().eval(), path)
    assert any(line.startswith("Det") for line in preflight(path).blockers)


def test_unknown_operators_and_domains_block() -> None:
    nodes = [
        helper.make_node("Fancy", ["x"], ["a"]),
        helper.make_node("Mine", ["a"], ["y"], domain="com.example"),
    ]
    model = _graph(nodes, [("x", F32, ["B", 4])], [("y", F32, ["B", 4])])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    blockers = preflight(model).blockers
    assert "Fancy: the ONNX-TensorRT parser of TensorRT 10.1 does not list it" in blockers
    assert any("domain 'com.example'" in b for b in blockers)


def test_a_dynamic_dimension_other_than_the_batch_blocks() -> None:
    model = _graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        [("x", F32, ["B", 5, "steps"])],
        [("y", F32, ["B", 5, "steps"])],
    )
    assert preflight(model).blockers == (
        "input x: dimension 2 is dynamic ('steps'); only the batch (dimension 0) may be, "
        "so fix it at export",
        "output y: dimension 2 is dynamic ('steps'); only the batch (dimension 0) may be, "
        "so fix it at export",
    )


def test_a_fixed_batch_and_an_opset_out_of_range_block() -> None:
    model = _graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        [("x", F32, [1, 4])],
        [("y", F32, [1, 4])],
        opset=21,
    )
    blockers = preflight(model).blockers
    assert blockers[0] == "opset 21: TensorRT 10.1's parser reads opsets 9 to 20"
    assert "input x: batch (dimension 0) is fixed at 1" in blockers[1]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            _one("MaxPool", kernel_shape=[2, 2], pads=[0, 0, 1, 1], dilations=[2, 2]),
            "MaxPool: dilations=[2, 2]; the parser takes only ones",
        ),
        (
            _graph(
                [helper.make_node("TopK", ["x", "k"], ["y", "i"], sorted=0)],
                [("x", F32, ["B", 8])],
                [("y", F32, ["B", 2]), ("i", TensorProto.INT64, ["B", 2])],
                initializers=[helper.make_tensor("k", TensorProto.INT64, [1], [2])],
            ),
            "TopK: sorted=0; the parser takes [1]",
        ),
        (
            _one("Resize", mode="cubic"),
            "Resize: mode='cubic'; the parser takes ['nearest', 'linear']",
        ),
    ],
    ids=["maxpool-dilations", "topk-unsorted", "resize-cubic"],
)
def test_attributes_outside_the_restrictions_block(model: onnx.ModelProto, expected: str) -> None:
    assert expected in preflight(model).blockers


def test_pooling_in_1d_and_axes_from_a_tensor_block() -> None:
    pool = helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2], strides=[2])
    slice_ = helper.make_node("Slice", ["p", "starts", "ends", "axes"], ["y"])
    consts = [
        helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("starts", 0), ("ends", 2))
    ]
    model = _graph(
        [pool, slice_],
        [("x", F32, ["B", 4, 8]), ("axes", TensorProto.INT64, [1])],
        [("y", F32, ["B", 4, 4])],
        initializers=consts,
    )
    blockers = preflight(model).blockers
    assert "MaxPool: 1D; the parser takes 2D or 3D only" in blockers
    assert "Slice: input axes must be a constant (an initializer)" in blockers


def test_an_input_type_the_operator_does_not_take_blocks() -> None:
    nodes = [
        helper.make_node("Cast", ["x"], ["a"], to=TensorProto.UINT8),
        helper.make_node("Abs", ["a"], ["b"]),
        helper.make_node("Cast", ["b"], ["y"], to=F32),
    ]
    model = _graph(nodes, [("x", F32, ["B", 4])], [("y", F32, ["B", 4])])
    assert preflight(model).blockers == (
        "Abs: input type UINT8; the parser takes FP32, FP16, BF16, INT32, INT64",
    )


def test_a_graph_shape_inference_rejects_blocks() -> None:
    model = _one("TopK")  # TopK has two outputs; this graph names one and gives no k
    assert preflight(model).blockers[0].startswith("ONNX shape inference fails:")


def test_restrictions_it_cannot_check_become_notes() -> None:
    report = preflight(_one("EyeLike"))
    assert report.passed
    assert report.notes == ("EyeLike: input must have static dimensions (not checked here)",)


# --------------------------------------------------------------- kdexport bundle


def test_kdexport_bundle_records_the_preflight_and_says_what_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = save_checkpoint(build_student("tiny"), tmp_path / "kdic.pt", preset="tiny")
    result = CliRunner().invoke(kdexport, ["bundle", str(ckpt), "--out", str(tmp_path / "ok")])
    assert result.exit_code == 0, result.output
    assert "TensorRT 10.1 pre-flight passed" in result.output
    pre = read_bundle(tmp_path / "ok").manifest["export"]["tensorrt_preflight"]
    assert pre["passed"] and pre["blockers"] == [] and pre["source"].startswith("https://")

    # A parser that knew no Gemm: the bundle is still written (ONNX Runtime runs it), and the
    # command says, one line per problem, what would stop an engine build.
    data = json.loads(DATA_PATH.read_text())
    del data["supported"]["Gemm"]
    monkeypatch.setattr("export.preflight.supported_list", lambda: data)
    result = CliRunner().invoke(kdexport, ["bundle", str(ckpt), "--out", str(tmp_path / "no")])
    assert result.exit_code == 0, result.output
    gemms = [line for line in result.output.splitlines() if "would not build it: Gemm" in line]
    assert gemms and f"would not build it: {len(gemms)} problem(s) above" in result.output
    pre = read_bundle(tmp_path / "no").manifest["export"]["tensorrt_preflight"]
    assert not pre["passed"] and pre["blockers"][0].startswith("Gemm")


def test_kdexport_tensorrt_stops_before_a_build_the_preflight_says_would_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = json.loads(DATA_PATH.read_text())
    data["opset"]["max"] = 16
    monkeypatch.setattr("export.preflight.supported_list", lambda: data)
    result = CliRunner().invoke(kdexport, ["tensorrt", str(default_bundle_dir())])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert "would not build with TensorRT 10.1: opset 17" in lines[0]
