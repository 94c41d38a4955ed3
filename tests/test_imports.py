"""Imports flow one way: live never pulls in torch, librosa, pretty_midi, train or export."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("torch", "librosa", "pretty_midi", "train", "export", "onnx", "sklearn")


@pytest.mark.parametrize(
    "module",
    [
        "live",
        "live.cli",
        "live.contract",
        "live.midifile",
        "live.windows",
        "live.taxonomy",
        "live.bundle",
        "live.model",
        "live.trt",
    ],
)
def test_live_is_torch_free(module: str) -> None:
    code = (
        f"import sys, json, {module}; "
        f"print(json.dumps(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_kdlive_help_does_not_import_torch() -> None:
    code = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "from live.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        f"print(json.dumps(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_kdtrain_help_is_light() -> None:
    """``kdtrain --help`` imports neither torch nor librosa."""
    code = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "from train.cli import app\n"
        "r = CliRunner().invoke(app, ['data', '--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(json.dumps(sorted(m for m in ('torch', 'librosa') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_live_model_runs_without_torch() -> None:
    """Loading a bundle and predicting needs onnxruntime and numpy, never torch or onnx."""
    code = (
        "import sys, json, numpy as np\n"
        "from live.model import Model\n"
        "from live.bundle import default_bundle_dir\n"
        "m = Model(default_bundle_dir())\n"
        "m.predict(np.zeros((2, 1, 128, 16), np.float32))\n"
        f"print(json.dumps(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_train_does_not_import_export_at_import_time() -> None:
    """export builds on train's models; train reaches export only in the last stage of
    `kdtrain all` (writing RUN/bundle), lazily, so the module graph has no cycle."""
    code = (
        "import sys, json, train.pipeline, train.cli\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'export')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
