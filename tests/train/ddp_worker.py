"""Run by tests/train/test_loop.py under torchrun: a small fit on 2 CPU processes (gloo)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from tests.train.test_loop import Net, make_task, synthetic
from train.config import OptimConfig
from train.loop import fit


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    x, y = synthetic()
    cfg = OptimConfig(epochs=6, batch_size=32, lr=1e-2, patience=10)
    torch.manual_seed(0)  # same initial weights on both ranks (DDP also broadcasts rank 0's)
    model, state = fit(Net(), make_task(x, y, cfg), cfg, seed=0, checkpoint=out / "ckpt.pt")
    torch.save(model.state_dict(), out / f"rank{rank}.pt")
    if rank == 0:
        (out / "f1.txt").write_text(str(state.best_f1))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
