"""Checkpoints that describe themselves: architecture, weights, config, classes, contract.

A model checkpoint (``teacher.pt``, ``nic.pt``, ``kdic.pt``) is a dict saved with ``torch.save``:
``{"role", "description", "state_dict", "classes", "contract_version", "fingerprint",
"config", "history", ...}``. :func:`model_from_checkpoint` rebuilds the model from the file
alone (``train.models.model_from_description`` + the weights), so ``export`` needs nothing else.

Every file here is loaded with ``torch.load(weights_only=True)``: tensors, plain Python data
and numpy arrays (stage files keep the teacher's logits as one), nothing else. A file that
holds any other pickled object (which could run code as it loads) is refused with
:class:`CheckpointError` before anything of it runs.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from live.contract import CONTRACT_VERSION
from live.taxonomy import CLASSES
from train.errors import CheckpointError, DataError
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


def _numpy_globals() -> list[Any]:
    """numpy's array (and scalar) reconstruction, under the names numpy 2 and numpy 1 pickle
    them with: all a numpy array in a checkpoint needs, and nothing that runs other code."""
    core = np._core if hasattr(np, "_core") else np.core  # numpy 1.24 has no np._core
    dtypes = {type(np.dtype(code)) for code in "?" + np.typecodes["All"] if code not in "OV"}
    names: list[Any] = [np.ndarray, np.dtype, *dtypes]
    for fn in (core.multiarray._reconstruct, core.multiarray.scalar):
        names += [(fn, f"numpy.{pkg}.multiarray.{fn.__name__}") for pkg in ("_core", "core")]
    return names


SAFE_GLOBALS = _numpy_globals()


def load(path: Path) -> dict[str, Any]:
    """A file written by :func:`save` (any stage's, checkpoints included), loaded safely:
    :class:`CheckpointError` for one that holds a pickled object other than tensors, plain
    data and numpy arrays (nothing of such a file runs)."""
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)|but got <class '([^']+)'>", str(exc))
        what = next(g for g in found.groups() if g) if found else "not tensors or plain data"
        raise CheckpointError(
            f"{path} holds a pickled object ({what}) and was not loaded: a kdlive checkpoint "
            "holds only tensors, plain data and numpy arrays, and anything else could run code "
            "on load. A stage file written by an older kdlive: delete it and run again, which "
            "rebuilds it; a checkpoint from someone else: do not use it"
        ) from None


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
