"""A bundle is made only from a checkpoint that loads safely."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from export.bundle import load_student
from tests.train.unsafe import RunsCode
from train import checkpoints
from train.errors import CheckpointError
from train.models import build_student


def test_export_refuses_a_checkpoint_carrying_a_pickled_object(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    blob = checkpoints.checkpoint(build_student("tiny"), role="student", x=RunsCode(marker))
    torch.save(blob, tmp_path / "kdic.pt")
    with pytest.raises(CheckpointError, match="pickled object"):
        load_student(tmp_path / "kdic.pt")
    assert not marker.exists()
