"""One readable training loop for every model: teacher, student, distilled student.

Per epoch: draw a class-balanced sample of training windows (deterministic in seed and epoch,
so a resumed run draws the same), step through it in batches, then score macro-F1 on the
validation split; keep the best weights; stop early when it stops improving. With
``cfg.ema`` > 0 an exponential moving average of the weights is what gets validated and kept:
the validation F1 of the raw weights swings from epoch to epoch, so picking its maximum picks
noise as much as a better model (what the average measured: docs/results.md). A checkpoint is
written atomically every ``checkpoint_seconds`` and at every epoch end: kill -9 the process,
run it again, and it continues from the last checkpoint, mid-epoch included.

Several processes (``torchrun``): each takes every world-th batch of the same sample; DDP
averages the gradients; rank 0 scores validation, broadcasts the result and writes files.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist
from torch import nn

from train import checkpoints
from train.batches import balanced_sample
from train.config import OptimConfig
from train.evaluate import evaluate
from train.progress import Reporter, Silent
from train.steps import PredictFn, StepFn


@dataclass
class LoopState:
    """Where training is; saved in every checkpoint."""

    epoch: int = 0  # the epoch in progress (0-based)
    step: int = 0  # batches of it already done
    best_f1: float = -1.0
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)
    done: bool = False


@dataclass
class Task:
    """What to train: the step and validation functions and the data they index."""

    name: str
    step: StepFn
    predict: PredictFn
    train_labels: npt.NDArray[np.int64]  # labels of the training windows, for balancing
    train_index: npt.NDArray[np.int64]  # their store indices
    val_index: npt.NDArray[np.int64]
    val_labels: npt.NDArray[np.int64]


M = TypeVar("M", bound=nn.Module)


def warmup_share(total_steps: int) -> float:
    """The share of the steps the one-cycle schedule warms up over: a tenth, except where that
    is exactly one step, which torch's ``OneCycleLR`` divides by zero on (10 steps in all)."""
    return 0.15 if total_steps == 10 else 0.1


def fit(
    model: M,
    task: Task,
    cfg: OptimConfig,
    *,
    seed: int,
    checkpoint: Path,
    report: Reporter | None = None,
    checkpoint_seconds: float = 60.0,
) -> tuple[M, LoopState]:
    """Train ``model`` on ``task``; returns it with the best validation weights loaded."""
    report = report or Silent()
    rank, world = _rank_world()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_samples = cfg.samples_per_epoch or len(task.train_index)
    steps = max(1, math.ceil(n_samples / cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=cfg.lr,
        total_steps=cfg.epochs * steps,
        pct_start=warmup_share(cfg.epochs * steps),
    )
    state = LoopState()
    best = copy.deepcopy(model.state_dict())
    ema = _ema_start(model) if cfg.ema > 0 else None
    if checkpoint.exists():
        state, best, ema = _resume(checkpoint, model, opt, sched, ema)
    train_model = _wrap(model, world)
    last_save = time.monotonic()
    while not state.done and state.epoch < cfg.epochs:
        rng = np.random.default_rng([seed, state.epoch])
        order = task.train_index[balanced_sample(task.train_labels, n_samples, rng)]
        train_model.train()
        sums: dict[str, float] = {}
        losses: dict[str, float] = {}
        for count, step in enumerate(range(state.step, steps), start=1):
            batch = order[step * cfg.batch_size : (step + 1) * cfg.batch_size][rank::world]
            # All randomness of a step (dropout, mixup, crops) flows from this seed, so a
            # resumed run takes exactly the steps the uninterrupted one would have taken.
            torch.manual_seed(_step_seed(seed, state.epoch, step, rank))
            named = task.step(train_model, batch)
            opt.zero_grad(set_to_none=True)
            named["loss"].backward()
            opt.step()
            sched.step()
            if ema is not None:
                _ema_update(ema, model, cfg.ema, state.epoch * steps + step)
            for k, v in named.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            losses = {k: v / count for k, v in sums.items()}  # mean over this run of the epoch
            state.step = step + 1
            if rank == 0:
                report.progress(
                    f"{task.name} epoch {state.epoch + 1}", state.step, steps, _info(losses)
                )
            if rank == 0 and time.monotonic() - last_save > checkpoint_seconds:
                _save(checkpoint, model, opt, sched, state, best, ema)
                last_save = time.monotonic()
        f1 = _validate(model, task, rank, ema)
        record = {"epoch": state.epoch + 1, "val_macro_f1": f1, "lr": sched.get_last_lr()[0]}
        record |= {("train_loss" if k == "loss" else k): v for k, v in losses.items()}
        state.history.append(record)
        if f1 > state.best_f1:
            state.best_f1, state.best_epoch, state.bad_epochs = f1, state.epoch, 0
            best = copy.deepcopy(model.state_dict() if ema is None else ema)
        else:
            state.bad_epochs += 1
        state.epoch, state.step = state.epoch + 1, 0
        state.done = state.bad_epochs >= cfg.patience or state.epoch >= cfg.epochs
        if rank == 0:
            report.say(task.name, f"epoch {state.epoch}: {_info(losses | {'val_f1': f1})}")
            _save(checkpoint, model, opt, sched, state, best, ema)
            last_save = time.monotonic()
    model.load_state_dict(best)
    return model, state


def _info(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in metrics.items())


def _step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, step, rank]).generate_state(1)[0])


def _ema_start(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _ema_update(ema: dict[str, torch.Tensor], model: nn.Module, decay: float, n: int) -> None:
    """One step of the weights' moving average (batch-norm statistics included; counters are
    copied). The decay ramps up over the first steps, (1 + n) / (10 + n), so the average is
    not dominated by the random initial weights."""
    d = min(decay, (1 + n) / (10 + n))
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                ema[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                ema[k].copy_(v)


def _validate(model: nn.Module, task: Task, rank: int, weights: dict | None = None) -> float:
    """Validation macro-F1 of the model, or of ``weights`` (loaded for the pass, then the
    training weights are put back), computed on rank 0 and shared with the other ranks."""
    f1 = 0.0
    if rank == 0:
        live = None if weights is None else copy.deepcopy(model.state_dict())
        if weights is not None:
            model.load_state_dict(weights)
        model.eval()
        with torch.no_grad():
            probs = task.predict(model, task.val_index)
        f1 = evaluate(task.val_labels, probs)["macro_f1"]
        if live is not None:
            model.load_state_dict(live)
    if dist.is_available() and dist.is_initialized():
        t = torch.tensor([f1], dtype=torch.float64)
        dist.broadcast(t, src=0)
        f1 = float(t.item())
    return f1


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _wrap(model: nn.Module, world: int) -> nn.Module:
    if world == 1:
        return model
    return nn.parallel.DistributedDataParallel(model)


def _save(
    path: Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    state: LoopState,
    best: dict,
    ema: dict | None,
) -> None:
    blob = {
        "model": model.state_dict(),
        "best": best,
        "ema": ema,
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "state": asdict(state),
    }
    checkpoints.save(blob, path)


def _resume(
    path: Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    ema: dict | None,
) -> tuple[LoopState, dict, dict | None]:
    blob = checkpoints.load(path)
    model.load_state_dict(blob["model"])
    opt.load_state_dict(blob["optimizer"])
    sched.load_state_dict(blob["scheduler"])
    if ema is not None:
        ema = blob.get("ema") or _ema_start(model)
    return LoopState(**blob["state"]), blob["best"], ema
