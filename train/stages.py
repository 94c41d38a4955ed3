"""A stage file of a run: kept when current, else built and saved with its fingerprint.

``train.pipeline.Run`` and the offline notes teacher (``train.offline``) share it, so a stage
outside ``Run`` (a notes-only runner's) keeps and resumes its files the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.distributed as dist

from train import checkpoints
from train.errors import CheckpointError
from train.progress import Reporter


def current_or_build(
    path: Path, fp: str, build: Callable[[], dict[str, Any]], report: Reporter, rank: int = 0
) -> dict[str, Any]:
    """The stage file ``path`` if it exists and was saved with the fingerprint ``fp``, else
    ``build()``'s result, saved (atomically, by rank 0) with ``fp``. A stage file that cannot
    be loaded safely (an older kdlive's baseline.pt held a pickled model) is rebuilt."""
    if path.exists():
        try:
            blob = checkpoints.load(path)
        except CheckpointError:
            report.say(path.stem, f"{path} holds a pickled object: rebuilding it")
            blob = {}
        if blob.get("fingerprint") == fp:
            report.say(path.stem, f"current: {path}")
            return blob
    blob = build() | {"fingerprint": fp}
    if rank == 0:
        checkpoints.save(blob, path)
    barrier()
    return blob


def barrier() -> None:
    """Wait for every process of a ``torchrun`` group (nothing when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
