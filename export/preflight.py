"""Would TensorRT build an engine from this ONNX graph? A check that runs on the CPU.

No machine this project is tested on can install TensorRT, so every exported graph is read
here, with ``onnx`` alone, against the ONNX-TensorRT parser's own list of what it supports for
the TensorRT version ``pyproject.toml`` pins (the ``tensorrt`` extra). The list is data:
``export/data/onnx_tensorrt_<version>.json``, the parser's ``docs/operators.md`` at the tag of
that version (its URL and commit are in the file). :func:`preflight` checks:

- the default-domain opset is in the parser's range, and every node is of the default domain;
- every operator is one the list marks supported (nodes of ``If``/``Loop``/``Scan`` bodies too);
- its attributes and constant inputs keep to the restrictions the list gives for it (those it
  states in a way a program can check: ``"rules"`` in the data file; any other restriction of
  an operator the graph uses is reported as a note);
- the element type of each node's first input, where shape inference knows it, is one the list
  gives for the operator;
- every graph input has a dynamic batch (dimension 0) and fixed other dimensions, and every
  output, after shape inference, has no dynamic dimension other than the batch: the engine's
  optimisation profile and the runner's buffers are sized from them.

The report lists what would block a build, one line each. ``kdexport bundle`` records it in the
manifest (``export.tensorrt_preflight``) and prints the lines; ``kdexport tensorrt`` refuses to
start a build that the report says would fail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import onnx
from onnx import AttributeProto, TensorProto

#: The TensorRT version the supported list is for (the ``tensorrt`` extra's pin).
TENSORRT_VERSION = "10.1"
DATA_PATH = Path(__file__).resolve().parent / "data" / f"onnx_tensorrt_{TENSORRT_VERSION}.json"

#: ONNX element types by the names the operator list uses (DOUBLE is cast down to FP32).
_TYPE_NAMES: dict[int, str] = {
    TensorProto.FLOAT: "FP32",
    TensorProto.FLOAT16: "FP16",
    TensorProto.BFLOAT16: "BF16",
    TensorProto.DOUBLE: "DOUBLE",
    TensorProto.INT32: "INT32",
    TensorProto.INT64: "INT64",
    TensorProto.INT8: "INT8",
    TensorProto.UINT8: "UINT8",
    TensorProto.BOOL: "BOOL",
    TensorProto.FLOAT8E4M3FN: "FP8",
    TensorProto.INT4: "INT4",
}


def _type_name(elem_type: int) -> str:
    """The operator list's name of an ONNX element type (ONNX's own name if it has none)."""
    return _TYPE_NAMES.get(elem_type) or str(TensorProto.DataType.Name(elem_type))


@dataclass(frozen=True)
class PreflightReport:
    """What the pre-flight found: ``blockers`` would stop an engine build (one line each);
    ``notes`` are restrictions of the operators used that it cannot check."""

    tensorrt: str
    source: str
    opset: int
    ops: tuple[str, ...]
    blockers: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.blockers

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "tensorrt": self.tensorrt,
            "source": self.source,
            "opset": self.opset,
            "ops": list(self.ops),
            "blockers": list(self.blockers),
            "notes": list(self.notes),
        }


@cache
def supported_list() -> dict[str, Any]:
    """The ONNX-TensorRT parser's operator list for :data:`TENSORRT_VERSION` (the data file)."""
    return json.loads(DATA_PATH.read_text())


def preflight(model: Path | str | onnx.ModelProto) -> PreflightReport:
    """Check an ONNX graph (a file or a loaded model) against the parser's supported list."""
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    data = supported_list()
    blockers = []
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except onnx.shape_inference.InferenceError as exc:  # a graph TensorRT cannot read either
        inferred = proto
        blockers.append(f"ONNX shape inference fails: {str(exc).splitlines()[0]}")
    opset = _default_opset(inferred)
    blockers += _check_opset(opset, data)
    blockers += _check_io(inferred, data)
    types = _element_types(inferred.graph)
    consts = _constant_names(inferred.graph)
    ops: set[str] = set()
    notes: set[str] = set()
    for node in _nodes(inferred.graph):
        ops.add(node.op_type if node.domain in data["domains"] else f"{node.domain}:{node.op_type}")
        blockers += _check_node(node, data, types, consts, notes)
    return PreflightReport(
        tensorrt=data["tensorrt"],
        source=data["source"]["url"],
        opset=opset,
        ops=tuple(sorted(ops)),
        blockers=tuple(dict.fromkeys(blockers)),  # one line per problem, first seen first
        notes=tuple(sorted(notes)),
    )


# ------------------------------------------------------------------------------ the graph


def _default_opset(proto: onnx.ModelProto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _check_opset(opset: int, data: dict[str, Any]) -> list[str]:
    lo, hi = data["opset"]["min"], data["opset"]["max"]
    if lo <= opset <= hi:
        return []
    return [f"opset {opset}: TensorRT {data['tensorrt']}'s parser reads opsets {lo} to {hi}"]


def _check_io(proto: onnx.ModelProto, data: dict[str, Any]) -> list[str]:
    initializers = {t.name for t in proto.graph.initializer}
    problems = []
    for kind, values in (("input", proto.graph.input), ("output", proto.graph.output)):
        for value in values:
            if value.name in initializers:
                continue
            tensor = value.type.tensor_type
            dtype = _type_name(tensor.elem_type)
            if dtype not in data["io_types"]:
                problems.append(f"{kind} {value.name}: type {dtype} cannot be a network {kind}")
            problems += _check_dims(kind, value.name, list(tensor.shape.dim))
    return problems


def _check_dims(kind: str, name: str, dims: list[Any]) -> list[str]:
    if not dims:
        return [f"{kind} {name}: no shape; export it with a batch axis and fixed other dims"]
    problems = []
    if kind == "input" and dims[0].HasField("dim_value"):
        problems.append(
            f"input {name}: batch (dimension 0) is fixed at {dims[0].dim_value}; the engine's "
            "profile needs it dynamic (export with a dynamic batch axis)"
        )
    for i, dim in enumerate(dims[1:], start=1):
        if not dim.HasField("dim_value") or dim.dim_value <= 0:
            what = repr(dim.dim_param) if dim.dim_param else "unknown"
            problems.append(
                f"{kind} {name}: dimension {i} is dynamic ({what}); only the batch "
                "(dimension 0) may be, so fix it at export"
            )
    return problems


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of ``graph`` and of the subgraphs its nodes hold (``If``, ``Loop``, ``Scan``)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield from _nodes(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _nodes(sub)


def _subgraphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == AttributeProto.GRAPH else attr.graphs:
                yield from _subgraphs(sub)


def _element_types(graph: onnx.GraphProto) -> dict[str, int]:
    """Tensor name -> ONNX element type, where the (inferred) graph states it."""
    types: dict[str, int] = {}
    for g in _subgraphs(graph):
        for value in (*g.input, *g.value_info, *g.output):
            if value.type.tensor_type.elem_type:
                types[value.name] = value.type.tensor_type.elem_type
        types.update({t.name: t.data_type for t in g.initializer})
    return types


def _constant_names(graph: onnx.GraphProto) -> set[str]:
    """Tensors the parser holds as weights: initializers and the outputs of ``Constant``."""
    names: set[str] = set()
    for g in _subgraphs(graph):
        names.update(t.name for t in g.initializer)
        names.update(out for node in g.node if node.op_type == "Constant" for out in node.output)
    return names


# ---------------------------------------------------------------------------- one node


def _check_node(
    node: onnx.NodeProto,
    data: dict[str, Any],
    types: dict[str, int],
    consts: set[str],
    notes: set[str],
) -> list[str]:
    op, label = node.op_type, _label(node)
    if node.domain not in data["domains"]:
        return [f"{label}: domain {node.domain!r}; TensorRT's parser reads the ONNX domain only"]
    entry = data["supported"].get(op)
    if entry is None:
        listed = "lists it as unsupported" if op in data["unsupported"] else "does not list it"
        return [f"{label}: the ONNX-TensorRT parser of TensorRT {data['tensorrt']} {listed}"]
    rules = data["rules"].get(op)
    if entry.get("restrictions") and rules is None:
        notes.add(f"{op}: {entry['restrictions']} (not checked here)")
    problems = _check_type(node, label, entry, types)
    if rules:
        problems += _check_rules(node, label, rules, consts)
    return problems


def _label(node: onnx.NodeProto) -> str:
    return f"{node.op_type} ({node.name})" if node.name else node.op_type


def _check_type(
    node: onnx.NodeProto, label: str, entry: dict[str, Any], types: dict[str, int]
) -> list[str]:
    if not node.input or node.input[0] not in types or not entry["types"]:
        return []
    name = _type_name(types[node.input[0]])
    name = "FP32" if name == "DOUBLE" else name  # cast down by TensorRT (the list's note)
    if name in entry["types"]:
        return []
    return [f"{label}: input type {name}; the parser takes {', '.join(entry['types'])}"]


def _check_rules(
    node: onnx.NodeProto, label: str, rules: dict[str, Any], consts: set[str]
) -> list[str]:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
    problems = [
        f"{label}: attribute {name} is not supported"
        for name in rules.get("forbidden_attributes", [])
        if name in attrs
    ]
    for name, allowed in rules.get("attribute_values", {}).items():
        if name in attrs and attrs[name] not in allowed:
            problems.append(f"{label}: {name}={attrs[name]!r}; the parser takes {allowed}")
    for name in rules.get("all_ones", []):
        if any(v != 1 for v in attrs.get(name, [])):
            problems.append(f"{label}: {name}={attrs[name]}; the parser takes only ones")
    spatial = rules.get("spatial_dims")
    if spatial and "kernel_shape" in attrs and len(attrs["kernel_shape"]) not in spatial:
        problems.append(
            f"{label}: {len(attrs['kernel_shape'])}D; the parser takes "
            f"{' or '.join(f'{d}D' for d in spatial)} only"
        )
    for index, name in rules.get("constant_inputs", {}).items():
        i = int(index)
        if i < len(node.input) and node.input[i] and node.input[i] not in consts:
            problems.append(f"{label}: input {name} must be a constant (an initializer)")
    limit = rules.get("max_outputs")
    if limit is not None and any(node.output[limit:]):
        problems.append(f"{label}: only its first {limit} output(s) are supported")
    return problems
