"""Checkpoints load safely: tensors, plain data and numpy arrays, never a pickled object."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.train.unsafe import RunsCode
from train import checkpoints
from train.errors import CheckpointError
from train.models import build_student


def test_a_pickled_object_is_refused_and_its_code_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    student = build_student("tiny")
    blob = checkpoints.checkpoint(student, role="student", payload=RunsCode(marker))
    torch.save(blob, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"posix\.system|os\.system") as err:
        checkpoints.load(tmp_path / "evil.pt")
    assert "could run code" in str(err.value) and "delete it and run again" in str(err.value)
    assert not marker.exists()


def test_tensors_plain_data_and_numpy_arrays_round_trip(tmp_path: Path) -> None:
    """A model checkpoint, and a stage file holding numpy arrays (the teacher's logits)."""
    student = build_student("tiny").eval()
    history = [{"epoch": 1, "val_macro_f1": 0.5, "lr": 1e-3}]
    checkpoints.save(
        checkpoints.checkpoint(student, role="student", history=history), tmp_path / "m.pt"
    )
    model = checkpoints.load_model(tmp_path / "m.pt")
    for k, v in student.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)
    logits = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    stage = {"logits": logits, "test": np.arange(3), "n": np.int64(3), "flag": np.bool_(True)}
    checkpoints.save(stage | {"fingerprint": "abc"}, tmp_path / "s.pt")
    back = checkpoints.load(tmp_path / "s.pt")
    assert np.array_equal(back["logits"], logits) and back["logits"].dtype == np.float32
    assert back["test"].tolist() == [0, 1, 2] and back["n"] == 3 and back["fingerprint"] == "abc"
