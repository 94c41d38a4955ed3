"""Checkpoints that describe themselves: architecture, weights, config, classes, contract.

A model checkpoint (``teacher.pt``, ``nic.pt``, ``kdic.pt``) is a dict saved with ``torch.save``:
``{"role", "description", "state_dict", "classes", "contract_version", "fingerprint",
"config", "history", ...}``. :func:`model_from_checkpoint` rebuilds the model from the file
alone (``train.models.model_from_description`` + the weights), so ``export`` needs nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from live.contract import CONTRACT_VERSION
from live.taxonomy import CLASSES
from train.errors import DataError
from train.files import atomic_path
from train.models import KdModel, describe, model_from_description


def checkpoint(model: torch.nn.Module, *, role: str, **fields: Any) -> dict[str, Any]:
    """The checkpoint of ``model`` (weights on the CPU) with ``fields`` (fingerprint, config,
    history, metrics...) beside its recipe."""
    return {
        "role": role,
        "description": describe(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "classes": list(CLASSES),
        "contract_version": CONTRACT_VERSION,
        **fields,
    }


def save(blob: dict[str, Any], path: Path) -> None:
    """``torch.save`` atomically: a crash never leaves half a file."""
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def load(path: Path) -> dict[str, Any]:
    """A file written by :func:`save` (any stage's, checkpoints included)."""
    return torch.load(path, map_location="cpu", weights_only=False)


def model_from_checkpoint(blob: dict[str, Any]) -> KdModel:
    """The model a :func:`checkpoint` holds, in eval mode."""
    if blob.get("contract_version") != CONTRACT_VERSION:
        raise DataError(
            f"checkpoint made for input contract {blob.get('contract_version')}, this kdlive "
            f"uses {CONTRACT_VERSION}: retrain it"
        )
    model = model_from_description(blob["description"])
    model.load_state_dict(blob["state_dict"])
    return model.eval()


def load_model(path: Path) -> KdModel:
    """Rebuild the model of the checkpoint file ``path``."""
    return model_from_checkpoint(load(path))
