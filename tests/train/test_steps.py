"""The losses of one batch: cross-entropy and distillation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from train.config import DistillConfig, OptimConfig
from train.steps import ce_step, kd_step

CPU = torch.device("cpu")


def batch(n: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs ``[n, 8]`` (the model below is the identity: its logits are the inputs), labels,
    and teacher logits for store indices 0..n-1."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    return x, rng.integers(0, 8, n), (3 * rng.normal(size=(n, 8))).astype(np.float32)


def source(x: np.ndarray, y: np.ndarray):
    return lambda idx: (torch.from_numpy(x[idx]), torch.from_numpy(y[idx]))


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0])
def test_kd_soft_term_is_t_squared_kl_of_the_tempered_distributions(T: float) -> None:
    x, y, teacher = batch()
    idx = np.array([4, 0, 2])
    named = kd_step(source(x, y), teacher, DistillConfig(temperature=T, alpha=0.0), CPU)(
        torch.nn.Identity(), idx
    )
    p_t = np.exp(teacher[idx] / T) / np.exp(teacher[idx] / T).sum(1, keepdims=True)
    p_s = np.exp(x[idx] / T) / np.exp(x[idx] / T).sum(1, keepdims=True)
    kl = (p_t * np.log(p_t / p_s)).sum(1).mean() * T * T
    assert float(named["kd/soft"]) == pytest.approx(kl, rel=1e-5)
    assert float(named["loss"]) == pytest.approx(kl, rel=1e-5)  # alpha 0: soft targets only


def test_alpha_mixes_in_the_hard_labels() -> None:
    x, y, teacher = batch()
    idx = np.arange(6)
    named = kd_step(source(x, y), teacher, DistillConfig(temperature=2.0, alpha=0.25), CPU)(
        torch.nn.Identity(), idx
    )
    ce = F.cross_entropy(torch.from_numpy(x), torch.from_numpy(y))
    assert float(named["task/ce"]) == pytest.approx(float(ce), rel=1e-6)
    assert float(named["loss"]) == pytest.approx(
        0.75 * float(named["kd/soft"]) + 0.25 * float(ce), rel=1e-6
    )


def test_a_student_that_matches_the_teacher_has_no_soft_loss() -> None:
    x, y, _ = batch()
    named = kd_step(source(x, y), x, DistillConfig(temperature=2.0), CPU)(
        torch.nn.Identity(), np.arange(6)
    )
    assert float(named["kd/soft"]) == pytest.approx(0.0, abs=1e-6)


def test_ce_step_smooths_labels_as_configured() -> None:
    x, y, _ = batch()
    smooth = ce_step(source(x, y), OptimConfig(label_smoothing=0.1), CPU)(
        torch.nn.Identity(), np.arange(6)
    )
    want = F.cross_entropy(torch.from_numpy(x), torch.from_numpy(y), label_smoothing=0.1)
    assert float(smooth["loss"]) == pytest.approx(float(want), rel=1e-6)
