"""The losses of one batch, by model: cross-entropy for AIC and NIC, distillation for KDIC.

Each step returns named losses (``"task/ce"``, ``"kd/soft"``) and their weighted sum under
``"loss"``, so the loop logs every term and the weights live in the config.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from live.taxonomy import N_CLASSES
from train.config import DistillConfig, OptimConfig

#: ``source(idx) -> (x, y)``: a batch of inputs and labels for store indices ``idx``.
Source = Callable[[npt.NDArray[np.int64]], tuple[torch.Tensor, torch.Tensor]]
#: ``step(model, idx) -> {"loss": total, "task/ce": ..., ...}``: named losses of one batch.
StepFn = Callable[[nn.Module, npt.NDArray[np.int64]], dict[str, torch.Tensor]]
#: ``predict(model, idx) -> probabilities [len(idx), 8]`` (numpy).
PredictFn = Callable[[nn.Module, npt.NDArray[np.int64]], npt.NDArray[np.float32]]


def ce_step(source: Source, cfg: OptimConfig, device: torch.device) -> StepFn:
    """Cross-entropy on hard labels, with the config's label smoothing."""

    def step(model: nn.Module, idx: npt.NDArray[np.int64]) -> dict[str, torch.Tensor]:
        x, y = (t.to(device) for t in source(idx))
        ce = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
        return {"loss": ce, "task/ce": ce}

    return step


def kd_step(
    source: Source,
    teacher_logits: npt.NDArray[np.float32],
    cfg: DistillConfig,
    device: torch.device,
) -> StepFn:
    """KDIC: ``(1 - alpha) * T^2 * KL(teacher_T || student_T) + alpha * CE``.
    ``teacher_logits`` ``[N, 8]`` is indexed by store index."""
    T = cfg.temperature

    def step(model: nn.Module, idx: npt.NDArray[np.int64]) -> dict[str, torch.Tensor]:
        x, y = (t.to(device) for t in source(idx))
        logits = model(x)
        target = F.log_softmax(torch.from_numpy(teacher_logits[idx]).to(device) / T, dim=1)
        soft = F.kl_div(
            F.log_softmax(logits / T, dim=1), target, reduction="batchmean", log_target=True
        ) * (T * T)
        ce = F.cross_entropy(logits, y)
        return {"loss": (1 - cfg.alpha) * soft + cfg.alpha * ce, "kd/soft": soft, "task/ce": ce}

    return step


def predictor(source: Source, device: torch.device, batch_size: int = 512) -> PredictFn:
    """Softmax probabilities of ``model`` (in eval mode, no gradients) by store index."""

    def predict(model: nn.Module, idx: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        out = [np.zeros((0, N_CLASSES), np.float32)]
        with torch.no_grad():
            for start in range(0, len(idx), batch_size):
                x, _ = source(idx[start : start + batch_size])
                out.append(torch.softmax(model(x.to(device)), dim=1).float().cpu().numpy())
        return np.concatenate(out)

    return predict
