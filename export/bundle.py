"""`kdexport bundle`: a training run's student -> a checked bundle that ``live`` loads."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from export.errors import ExportError
from export.onnx import OPSET, export_onnx, gauntlet
from export.preflight import preflight
from export.stream import export_stream, stream_gauntlet, streams
from live.bundle import MANIFEST_NAME, ONNX_NAME, Bundle, make_manifest, read_bundle
from train import checkpoints
from train.errors import CheckpointError
from train.files import replace_dir
from train.models import count_macs, count_params
from train.students import STUDENTS

#: Real test windows the gauntlet compares on (evenly spaced over the test split).
REAL_WINDOWS = 2000
REPORT_NAMES = {"kdic": "KDIC", "nic": "NIC"}


def resolve_checkpoint(source: Path, which: str = "kdic") -> tuple[Path, Path | None]:
    """``source`` is a run folder (its ``kdic.pt``, or ``nic.pt`` with ``which="nic"``) or a
    checkpoint file; returns the checkpoint and the run folder (None if not in one)."""
    source = Path(source)
    if source.is_dir():
        ckpt = source / f"{which}.pt"
        if not ckpt.exists():
            raise ExportError(
                f"{source} has no {which}.pt: pass a run folder that `kdtrain all` "
                "finished, or a student checkpoint file"
            )
        return ckpt, source
    if not source.exists():
        raise ExportError(f"{source} does not exist: pass a run folder or a checkpoint (.pt)")
    run = source.parent if (source.parent / "report.json").exists() else None
    return source, run


def load_student(ckpt: Path) -> tuple[torch.nn.Module, dict]:
    """The student of checkpoint ``ckpt`` (eval mode) and the checkpoint's content."""
    try:
        blob = checkpoints.load(ckpt)
    except CheckpointError:
        raise  # says what it holds and what to do
    except Exception as exc:
        raise ExportError(f"{ckpt} is not a readable checkpoint ({exc})") from None
    if not isinstance(blob, dict) or "description" not in blob:
        raise ExportError(f"{ckpt} is not a kdlive checkpoint (no model description)")
    if blob.get("role") != "student":
        raise ExportError(
            f"{ckpt} holds a {blob.get('role')}, not a student: export nic.pt or kdic.pt"
        )
    return checkpoints.model_from_checkpoint(blob), blob


def test_inputs(blob: dict, limit: int = REAL_WINDOWS) -> npt.NDArray[np.float32] | None:
    """Real test-split windows of the checkpoint's data set, in its student's input contract,
    if that data is still on disk."""
    config = blob.get("config") or {}
    out = (config.get("data") or {}).get("out")
    students = STUDENTS.get((config.get("model") or {}).get("contract", 1))
    if not out or students is None:
        return None
    return students.test_inputs(Path(out), limit)


def write_bundle(
    source: Path, out: Path, *, which: str = "kdic", say: Callable[[str], None] | None = None
) -> tuple[Bundle, dict]:
    """Export ``source``'s student to the bundle folder ``out``, replacing it only if the
    gauntlet passes. Returns the bundle and the gauntlet report."""
    ckpt, run = resolve_checkpoint(source, which)
    model, blob = load_student(ckpt)
    real = test_inputs(blob)
    (say or _quiet)(
        f"{ckpt}: {count_params(model):,} parameters; gauntlet on "
        f"{0 if real is None else len(real)} real test windows + random rolls"
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        onnx_path = tmp / ONNX_NAME
        graph = export_onnx(model, onnx_path)
        report = gauntlet(model, onnx_path, real_inputs=real)
        stream, stream_report = None, None
        if streams(model):
            stream = export_stream(model, tmp)
            stream_report = stream_gauntlet(model, tmp, real_inputs=real)
        tensorrt = preflight(onnx_path)
        for line in tensorrt.blockers:
            (say or _quiet)(f"TensorRT {tensorrt.tensorrt} would not build it: {line}")
        config = blob.get("config") or {}
        metrics, data = _run_results(run, which)
        manifest = make_manifest(
            onnx_path,
            preset=_student_preset(config.get("model") or {}),
            model={
                "description": blob["description"],
                "parameters": count_params(model),
                "macs": count_macs(model, (1, *graph.input_shape)),
                "role": which.upper(),
                "fingerprint": blob.get("fingerprint"),
                "best_val_macro_f1": blob.get("best_val_macro_f1"),
                "distill": config.get("distill"),
                "seed": config.get("seed"),
            },
            data=data,
            metrics=metrics,
            source=str(ckpt),
            contract=graph.contract,
            state=graph.state,
        )
        if stream:
            manifest["stream"] = stream
        manifest["export"] = {
            "opset": OPSET,
            "torch": torch.__version__,
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "gauntlet": report.to_json(),
            **({"stream_gauntlet": stream_report} if stream_report else {}),
            "tensorrt_preflight": tensorrt.to_json(),
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))
        read_bundle(tmp)  # the reader accepts what the writer wrote
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return read_bundle(out), report.to_json()


def _quiet(message: str) -> None:
    pass


def _run_results(run: Path | None, which: str) -> tuple[dict, dict]:
    """Test metrics of the exported model and the training data summary, from the run."""
    if run is None or not (run / "report.json").exists():
        return {}, {}
    report = json.loads((run / "report.json").read_text())
    m = (report.get("models") or {}).get(REPORT_NAMES[which], {})
    keys = ("macro_f1", "accuracy", "per_class", "n", "running", "parts")
    metrics = {k: m[k] for k in keys if k in m}
    for name in ("floor", "baseline"):  # the floor; a run from before issue 26, its baseline
        figure = (report.get("models") or {}).get(name, {}).get("macro_f1")
        if figure is not None:
            metrics[f"{name}_macro_f1"] = figure
    return metrics, report.get("data") or {}


def _student_preset(model: dict) -> str:
    """The preset the exported student was built from (older runs could name another)."""
    return str(model.get("student_preset") or model.get("preset", "unknown"))
