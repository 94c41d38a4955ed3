"""The distillation losses of one batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from train.config import DistillConfig
from train.steps import decoupled_kd, kd_step


def _kl(student: torch.Tensor, teacher: torch.Tensor, T: float) -> torch.Tensor:
    return F.kl_div(F.log_softmax(student / T, 1), F.log_softmax(teacher / T, 1),
                    reduction="batchmean", log_target=True) * T * T  # fmt: skip


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0])
def test_decoupled_kd_weighted_by_the_teachers_rest_is_the_classic_kl(T: float) -> None:
    """KL = TCKD + (1 - p_teacher(label)) * NCKD, window by window (Zhao et al. 2022, eq. 4)."""
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(16, 8, generator=g) * 3, torch.randn(16, 8, generator=g) * 3
    y = torch.randint(0, 8, (16,), generator=g)
    for i in range(16):
        rest = 1 - float(torch.softmax(t[i : i + 1] / T, 1)[0, y[i]])
        got = decoupled_kd(s[i : i + 1], t[i : i + 1], y[i : i + 1], T, rest)
        assert torch.allclose(got, _kl(s[i : i + 1], t[i : i + 1], T), atol=1e-5), i


def test_decoupled_kd_keeps_the_off_label_ranking_of_a_confident_teacher() -> None:
    """A teacher at p(label) ~ 1 still ranks the other classes; classic KD barely sees that,
    the non-target term does, and the gradient stays finite."""
    y = torch.tensor([0])
    teacher = torch.tensor([[30.0, 6.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])  # class 1 second
    agree = torch.tensor([[30.0, 6.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    disagree = torch.tensor([[30.0, 0.0, 6.0, 0.0, 0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    assert _kl(disagree, teacher, 2.0).item() < 1e-3  # classic: nearly nothing to learn
    loss = decoupled_kd(disagree, teacher, y, 2.0, 8.0)
    assert loss.item() > 1.0
    assert decoupled_kd(agree, teacher, y, 2.0, 8.0).item() < 1e-6
    loss.backward()
    assert torch.isfinite(disagree.grad).all() and disagree.grad[0, 1] < 0 < disagree.grad[0, 2]


def test_kd_step_uses_decoupled_kd_when_asked() -> None:
    rolls = torch.rand(4, 1, 128, 16)
    labels = torch.tensor([0, 1, 2, 3])
    teacher = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32) * 4
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(128 * 16, 8))

    def net(x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return student(x), None

    def source(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return rolls[idx], labels[idx]

    idx = np.arange(4)
    classic = kd_step(source, teacher, None, DistillConfig(temperature=2, alpha=0), "cpu")
    dkd = kd_step(source, teacher, None, DistillConfig(temperature=2, alpha=0, nckd_weight=8),
                  "cpu")  # fmt: skip
    with torch.no_grad():
        logits = student(rolls)
        t = torch.from_numpy(teacher)
        assert torch.allclose(classic(net, idx)["kd/soft"], _kl(logits, t, 2.0), atol=1e-6)
        want = decoupled_kd(logits, t, labels, 2.0, 8.0)
        assert torch.allclose(dkd(net, idx)["kd/soft"], want, atol=1e-6)
