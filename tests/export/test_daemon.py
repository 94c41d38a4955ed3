"""The daemon with the bundles a user may pass with ``--model`` besides the shipped one:
untrained students of the paper's contract, and of contract 2 without a history, exported
here (the shipped bundle's case is in tests/live/test_daemon.py)."""

from __future__ import annotations

import pytest
import torch

from export.bundle import write_bundle
from live.model import Model
from live.testing.daemon import check_cc_and_osc_carry_the_models_answers
from train.models import build_part_student, build_student
from train.testing import save_checkpoint


@pytest.fixture(scope="module", params=["contract 1", "contract 2, no state"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Model:
    torch.manual_seed(0)
    if request.param == "contract 1":
        student = build_student("tiny")
    else:
        student = build_part_student("tiny", inputs=(0, 1, 2, 3, 4))
    folder = tmp_path_factory.mktemp("bundle")
    ckpt = save_checkpoint(student, folder / "kdic.pt", preset="tiny")
    bundle, _ = write_bundle(ckpt, folder / "bundle")
    return Model(bundle.dir)


def test_cc_and_osc_carry_the_models_probabilities(exported: Model) -> None:
    check_cc_and_osc_carry_the_models_answers(exported)
