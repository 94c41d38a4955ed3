"""The training loop: balanced sampling, early stopping, and exact resume after a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from train import checkpoints
from train.batches import balanced_sample
from train.config import OptimConfig
from train.loop import Task, fit
from train.steps import ce_step, predictor

REPO = Path(__file__).resolve().parents[2]


def synthetic(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rolls whose class is the octave band of their notes: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 8, n)
    x = np.zeros((n, 1, 128, 16), np.float32)
    for i, c in enumerate(y):
        pitches = 16 + 12 * c + rng.integers(0, 12, 6)
        steps = rng.integers(0, 16, 6)
        x[i, 0, pitches, steps] = 1
    return x, y


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(128 * 16, 32), nn.ReLU(), nn.Dropout(0.2))
        self.out = nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


def make_task(x: np.ndarray, y: np.ndarray, cfg: OptimConfig, crash_at: int | None = None) -> Task:
    def source(idx):
        return torch.from_numpy(x[idx]), torch.from_numpy(y[idx])

    step = ce_step(source, cfg, torch.device("cpu"))
    calls = {"n": 0}

    def crashing(model, idx):
        calls["n"] += 1
        if crash_at is not None and calls["n"] == crash_at:
            raise KeyboardInterrupt("simulated kill")
        return step(model, idx)

    train, val = np.arange(300), np.arange(300, len(y))
    return Task(
        "net", crashing, predictor(source, torch.device("cpu")), y[train], train, val, y[val]
    )


def test_balanced_sample_evens_out_classes() -> None:
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    draw = balanced_sample(labels, 30_000, np.random.default_rng(0))
    counts = np.bincount(labels[draw], minlength=3)
    assert np.allclose(counts / counts.sum(), 1 / 3, atol=0.02)


def test_fit_learns_and_keeps_the_best_epoch(tmp_path: Path) -> None:
    x, y = synthetic()
    cfg = OptimConfig(epochs=6, batch_size=32, lr=1e-2, patience=10)
    torch.manual_seed(0)
    model, state = fit(Net(), make_task(x, y, cfg), cfg, seed=0, checkpoint=tmp_path / "c.pt")
    assert state.best_f1 > 0.8
    assert len(state.history) == 6
    assert state.best_f1 == max(h["val_macro_f1"] for h in state.history)
    assert {"train_loss", "task/ce", "val_macro_f1", "lr"} <= set(state.history[0])


def test_early_stopping(tmp_path: Path) -> None:
    x, y = synthetic()
    cfg = OptimConfig(epochs=50, batch_size=32, lr=1e-12, patience=2)  # never improves
    _, state = fit(Net(), make_task(x, y, cfg), cfg, seed=0, checkpoint=tmp_path / "c.pt")
    assert len(state.history) == 3 and state.done


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_after_a_crash_gives_the_same_model(tmp_path: Path, ema: float) -> None:
    """Crash mid-epoch (checkpoints every step), resume: bit-identical to no crash."""
    x, y = synthetic()
    cfg = OptimConfig(epochs=3, batch_size=32, lr=3e-3, patience=10, label_smoothing=0.1, ema=ema)
    torch.manual_seed(0)
    reference, _ = fit(Net(), make_task(x, y, cfg), cfg, seed=1, checkpoint=tmp_path / "a.pt")

    torch.manual_seed(0)
    crashed = Net()
    with pytest.raises(KeyboardInterrupt):
        fit(
            crashed,
            make_task(x, y, cfg, crash_at=15),
            cfg,
            seed=1,
            checkpoint=tmp_path / "b.pt",
            checkpoint_seconds=0,
        )
    assert (tmp_path / "b.pt").exists()
    torch.manual_seed(123)  # a fresh process: other initial weights, restored from disk
    resumed, state = fit(Net(), make_task(x, y, cfg), cfg, seed=1, checkpoint=tmp_path / "b.pt")
    assert len(state.history) == 3
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_ema_is_the_moving_average_of_the_steps_and_is_what_gets_selected(tmp_path: Path) -> None:
    x, y = synthetic()
    cfg = OptimConfig(epochs=2, batch_size=32, lr=1e-2, patience=10, ema=0.8)
    task = make_task(x, y, cfg)
    seen: list[dict] = []  # the weights before each step
    step = task.step

    def recording(model, idx):
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return step(model, idx)

    task.step = recording
    torch.manual_seed(0)
    model, state = fit(Net(), task, cfg, seed=0, checkpoint=tmp_path / "c.pt")
    blob = checkpoints.load(tmp_path / "c.pt")
    after = [*seen[1:], blob["model"]]  # the weights after each step
    expect = {k: v.clone() for k, v in seen[0].items()}
    for n, w in enumerate(after):
        d = min(cfg.ema, (1 + n) / (10 + n))
        for k in expect:
            expect[k] = d * expect[k] + (1 - d) * w[k]
    for k, v in blob["ema"].items():
        torch.testing.assert_close(v, expect[k], rtol=0, atol=1e-6)
    assert any(not torch.equal(v, blob["model"][k]) for k, v in expect.items())
    # The weights kept are the average at the best epoch, and the F1 that chose them is theirs.
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, blob["best"][k], rtol=0, atol=0)
    probs = task.predict(model, task.val_index)
    from train.evaluate import evaluate

    assert evaluate(task.val_labels, probs)["macro_f1"] == pytest.approx(state.best_f1)


@pytest.mark.slow
def test_ddp_two_cpu_processes_gloo(tmp_path: Path) -> None:
    """torchrun with 2 CPU processes on gloo: training runs and both ranks end identical."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(REPO / "tests" / "train" / "ddp_worker.py"),
        str(tmp_path),
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    w0 = torch.load(tmp_path / "rank0.pt")
    w1 = torch.load(tmp_path / "rank1.pt")
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k])
    assert float((tmp_path / "f1.txt").read_text()) > 0.5


def test_the_fast_students_average_their_weights_by_default() -> None:
    """The fast preset's students keep a moving average (and say so in their fingerprint, so
    a student trained before this default retrains); Table 1's are trained as the paper's."""
    from dataclasses import replace

    from train.config import fingerprint, preset_config

    fast = preset_config("fast").student
    assert fast.ema == 0.995 and preset_config("paper").student.ema == 0.0
    assert fingerprint(fast) != fingerprint(replace(fast, ema=0.0))


@pytest.mark.parametrize("total", [1, 2, 9, 10, 11, 40])
def test_the_schedule_steps_through_any_number_of_steps(total: int) -> None:
    from train.loop import warmup_share

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=1e-3, total_steps=total, pct_start=warmup_share(total)
    )
    for _ in range(total):
        opt.step()
        sched.step()  # 10 steps raised ZeroDivisionError with a warm-up of a tenth
