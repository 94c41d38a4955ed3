"""Per-class offsets on a student's logits (train.calibrate)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from live.taxonomy import N_CLASSES
from train.calibrate import apply_offsets, fit_offsets, macro_f1
from train.evaluate import evaluate


def test_macro_f1_equals_the_reports() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, N_CLASSES - 1, 5000)  # the last class absent: not averaged
    p = np.where(rng.random(5000) < 0.6, y, rng.integers(0, N_CLASSES, 5000))
    probs = np.eye(N_CLASSES)[p]
    assert macro_f1(y, p) == pytest.approx(evaluate(y, probs)["macro_f1"], abs=1e-9)


def test_offsets_undo_a_shifted_prior_and_carry_to_new_windows() -> None:
    # Two classes, each window's logits noisy around its label; class 1's logit is pushed
    # down by 1.0, as a model that learnt a wrong prior would: offsets must win it back.
    rng = np.random.default_rng(1)

    def windows(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 2, n)
        z = np.full((n, N_CLASSES), -9.0)
        z[:, 0] = np.where(y == 0, 1.0, 0.0) + rng.normal(0, 1, n)
        z[:, 1] = np.where(y == 1, 1.0, 0.0) + rng.normal(0, 1, n) - 1.0
        return y, z

    y, z = windows(20_000)
    offsets = fit_offsets(y, z)
    assert macro_f1(y, (z + offsets).argmax(1)) > macro_f1(y, z.argmax(1)) + 0.05
    assert offsets[1] - offsets[0] == pytest.approx(1.0, abs=0.25)
    y2, z2 = windows(20_000)  # fresh windows: the gain is real, not fitted noise
    assert macro_f1(y2, (z2 + offsets).argmax(1)) > macro_f1(y2, z2.argmax(1)) + 0.05


def test_offsets_never_score_below_none_and_stay_zero_when_nothing_helps() -> None:
    y = np.arange(N_CLASSES).repeat(10)
    z = np.eye(N_CLASSES)[y] * 5.0  # already perfect
    offsets = fit_offsets(y, z)
    assert np.all(offsets == 0)
    with pytest.raises(ValueError, match="logits must be"):
        fit_offsets(y, z[:, :3])


def test_apply_offsets_moves_the_layers_logits_by_them() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, N_CLASSES)
    x = torch.randn(3, 4)
    before = layer(x).detach()
    offsets = np.linspace(-1, 1, N_CLASSES).astype(np.float32)
    apply_offsets(layer, offsets)
    assert torch.allclose(layer(x).detach() - before, torch.from_numpy(offsets).expand(3, -1))
    with pytest.raises(ValueError, match="no bias"):
        apply_offsets(torch.nn.Linear(4, N_CLASSES, bias=False), offsets)
