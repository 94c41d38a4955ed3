"""The losses of one batch, by model: cross-entropy for AIC and NIC, distillation for KDIC.

A *loss* maps a batch's logits, labels and store indices to named losses (``"task/ce"``,
``"kd/soft"``) and their weighted sum under ``"loss"``, so the loop logs every term and the
weights live in the config. A *step* gets a batch's inputs from a source and applies a loss to
the model's logits (:func:`window_step`; students with a history: ``train.history.part_step``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from live.taxonomy import N_CLASSES
from train.batches import SparseWindows
from train.config import DistillConfig, OptimConfig

Index = npt.NDArray[np.int64]
#: ``source(idx) -> (x, y)``: a batch of inputs (a tensor, or a contract-2 student's cells)
#: and labels for store indices ``idx``.
Source = Callable[[Index], tuple[torch.Tensor | SparseWindows, torch.Tensor]]
#: ``loss(logits, y, idx[, weight]) -> {"loss": total, "task/ce": ..., ...}``; ``weight``
#: ``[B]`` (default all 1) weighs each window in the batch's means.
LossFn = Callable[..., dict[str, torch.Tensor]]
#: ``step(model, idx) -> {"loss": total, ...}``: named losses of one batch.
StepFn = Callable[[nn.Module, Index], dict[str, torch.Tensor]]
#: ``predict(model, idx) -> probabilities [len(idx), 8]`` (numpy).
PredictFn = Callable[[nn.Module, Index], npt.NDArray[np.float32]]


def ce_loss(cfg: OptimConfig) -> LossFn:
    """Cross-entropy on hard labels, with the config's label smoothing."""

    def loss(
        logits: torch.Tensor, y: torch.Tensor, idx: Index, weight: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        if weight is None:
            ce = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        else:
            each = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing, reduction="none")
            ce = weighted_mean(each, weight)
        return {"loss": ce, "task/ce": ce}

    return loss


def kd_loss(
    teacher_logits: npt.NDArray[np.float32],
    cfg: DistillConfig,
    device: torch.device,
    has_target: npt.NDArray[np.bool_] | None = None,
) -> LossFn:
    """KDIC: ``(1 - alpha) * T^2 * KL(teacher_T || student_T) + alpha * CE`` per window, where
    the teacher has an answer (``has_target``, default everywhere); plain cross-entropy where
    it has none. ``teacher_logits`` ``[N, 8]`` is indexed by store index."""
    T = cfg.temperature

    def loss(
        logits: torch.Tensor, y: torch.Tensor, idx: Index, weight: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        target = F.log_softmax(torch.from_numpy(teacher_logits[idx]).to(device) / T, dim=1)
        log_p = F.log_softmax(logits / T, dim=1)
        soft = (target.exp() * (target - log_p)).sum(dim=1) * (T * T)
        ce = F.cross_entropy(logits, y, reduction="none")
        taught = torch.ones_like(ce, dtype=torch.bool)
        if has_target is not None:
            taught = torch.from_numpy(has_target[idx]).to(device)
        each = torch.where(taught, (1 - cfg.alpha) * soft + cfg.alpha * ce, ce)
        w = torch.ones_like(ce) if weight is None else weight
        named = {"loss": weighted_mean(each, w), "task/ce": weighted_mean(ce, w)}
        if taught.any():
            named["kd/soft"] = weighted_mean(soft[taught], w[taught])
        return named

    return loss


def weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``sum(weight * values) / sum(weight)``."""
    return (values * weight).sum() / weight.sum()


def window_step(source: Source, loss: LossFn, device: torch.device) -> StepFn:
    """A batch of windows: ``loss`` of the model's logits."""

    def step(model: nn.Module, idx: Index) -> dict[str, torch.Tensor]:
        x, y = source(idx)
        return loss(model(x.to(device)), y.to(device), idx)

    return step


def ce_step(source: Source, cfg: OptimConfig, device: torch.device) -> StepFn:
    """Cross-entropy on a batch of windows."""
    return window_step(source, ce_loss(cfg), device)


def kd_step(
    source: Source,
    teacher_logits: npt.NDArray[np.float32],
    cfg: DistillConfig,
    device: torch.device,
) -> StepFn:
    """Distillation on a batch of windows (the teacher answers for every window)."""
    return window_step(source, kd_loss(teacher_logits, cfg, device), device)


def predictor(source: Source, device: torch.device, batch_size: int = 512) -> PredictFn:
    """Softmax probabilities of ``model`` (in eval mode, no gradients) by store index."""

    def predict(model: nn.Module, idx: Index) -> npt.NDArray[np.float32]:
        out = [np.zeros((0, N_CLASSES), np.float32)]
        with torch.no_grad():
            for start in range(0, len(idx), batch_size):
                x, _ = source(idx[start : start + batch_size])
                out.append(torch.softmax(model(x.to(device)), dim=1).float().cpu().numpy())
        return np.concatenate(out)

    return predict
