"""The losses of one batch, by model: cross-entropy for AIC and NIC, distillation for KDIC.

Each step returns named losses (``"task/ce"``, ``"kd/soft"``, ``"kd/feature"``) and their
weighted sum under ``"loss"``, so the loop logs every term and the weights live in the config.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from train.config import DistillConfig, OptimConfig

Source = Callable[[npt.NDArray[np.int64]], tuple[torch.Tensor, torch.Tensor]]


def ce_step(source: Source, cfg: OptimConfig, device: torch.device):  # noqa: ANN201
    """Cross-entropy on hard labels, with optional label smoothing and mixup."""
    beta = torch.distributions.Beta(cfg.mixup, cfg.mixup) if cfg.mixup > 0 else None

    def step(model: nn.Module, idx: npt.NDArray[np.int64]) -> dict[str, torch.Tensor]:
        x, y = (t.to(device) for t in source(idx))
        if beta is not None:
            lam = float(beta.sample())
            perm = torch.randperm(len(y), device=device)
            logits = model(lam * x + (1 - lam) * x[perm])
            ce = lam * F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing) + (
                1 - lam
            ) * F.cross_entropy(logits, y[perm], label_smoothing=cfg.label_smoothing)
        else:
            ce = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
        return {"loss": ce, "task/ce": ce}

    return step


class DistillNet(nn.Module):
    """The student plus, for feature distillation, a linear map of its embedding onto the
    teacher's. Only ``student`` is kept after training; ``forward`` returns both outputs so
    that DDP sees one forward pass."""

    def __init__(self, student: nn.Module, teacher_dim: int) -> None:
        super().__init__()
        self.student = student
        self.project = nn.Linear(student.embedding_dim, teacher_dim) if teacher_dim else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.project is None:
            return self.student(x), None
        emb = self.student.embed(x)
        return self.student.head(emb), self.project(emb)


def kd_step(
    source: Source,
    teacher_logits: npt.NDArray[np.float32],
    teacher_emb: npt.NDArray[np.float32] | None,
    cfg: DistillConfig,
    device: torch.device,
):  # noqa: ANN201
    """KDIC: T^2 * KL(teacher_T || student_T), mixed with alpha * cross-entropy, plus the
    optional embedding regression. ``teacher_logits`` is indexed by store index."""
    T = cfg.temperature

    def step(model: nn.Module, idx: npt.NDArray[np.int64]) -> dict[str, torch.Tensor]:
        x, y = (t.to(device) for t in source(idx))
        logits, projected = model(x)
        t_logits = torch.from_numpy(teacher_logits[idx]).to(device)
        if cfg.nckd_weight > 0:
            soft = decoupled_kd(logits, t_logits, y, T, cfg.nckd_weight)
        else:
            soft = F.kl_div(
                F.log_softmax(logits / T, dim=1), F.log_softmax(t_logits / T, dim=1),
                reduction="batchmean", log_target=True,
            ) * (T * T)  # fmt: skip
        ce = F.cross_entropy(logits, y)
        named = {"kd/soft": soft, "task/ce": ce}
        total = (1 - cfg.alpha) * soft + cfg.alpha * ce
        if projected is not None and teacher_emb is not None and cfg.feature_weight > 0:
            target = torch.from_numpy(teacher_emb[idx]).to(device)
            feature = F.mse_loss(projected, target)
            named["kd/feature"] = feature
            total = total + cfg.feature_weight * feature
        return named | {"loss": total}

    return step


def decoupled_kd(
    student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, T: float, nckd_weight: float
) -> torch.Tensor:
    """Decoupled KD (Zhao et al. 2022): ``T^2 * (TCKD + nckd_weight * NCKD)``, batch mean.

    TCKD is the KL between teacher and student of the binary split (label, everything else);
    NCKD the KL between their distributions over the 7 non-target classes, each renormalised.
    ``KL(teacher_T || student_T) = TCKD + (1 - p_teacher(label)) * NCKD`` exactly, so
    ``nckd_weight = 1 - p`` for every window gives back the classic loss.
    """
    target = F.one_hot(y, student.shape[1]).bool()
    log_ps, log_pt = F.log_softmax(student / T, dim=1), F.log_softmax(teacher / T, dim=1)

    def binary(log_p: torch.Tensor) -> torch.Tensor:  # log [p(label), 1 - p(label)]
        lt = log_p.masked_select(target)
        return torch.stack([lt, torch.log1p(-lt.exp().clamp(max=1 - 1e-7))], dim=1)

    bt = binary(log_pt)
    tckd = (bt.exp() * (bt - binary(log_ps))).sum(1)
    off = torch.finfo(student.dtype).min  # the label left out of the non-target softmax
    nt_s = F.log_softmax((student / T).masked_fill(target, off), dim=1)
    nt_t = F.log_softmax((teacher / T).masked_fill(target, off), dim=1)
    nckd = (nt_t.exp() * (nt_t - nt_s)).masked_fill(target, 0.0).sum(1)
    return (tckd + nckd_weight * nckd).mean() * (T * T)


def predictor(source: Source, device: torch.device, batch_size: int = 512):  # noqa: ANN201
    """Softmax probabilities of ``model`` (or of a :class:`DistillNet`'s student) by index."""

    def predict(model: nn.Module, idx: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        net = model.student if isinstance(model, DistillNet) else model
        out = []
        with torch.no_grad():
            for start in range(0, len(idx), batch_size):
                x, _ = source(idx[start : start + batch_size])
                out.append(torch.softmax(net(x.to(device)), dim=1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 8), np.float32)

    return predict
