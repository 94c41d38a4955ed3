"""Per-class offsets on a student's logits, fitted on validation for macro-F1 (issue 26).

A student learns from class-balanced draws, so its answers assume every instrument is equally
common; macro-F1 is best at other decision thresholds (a class confused with a frequent one
wants a lower bar, a class that steals windows a higher one). :func:`fit_offsets` finds one
offset per class, added to the logits before the argmax, by coordinate ascent over a grid on
validation windows; :func:`apply_offsets` adds them to the biases of the layers that make the
logits, so the model, its ONNX export and the daemon all answer with them, at no cost.

The window answer and the running answer get their own offsets (they err differently). What
was fitted, and validation's macro-F1 before and after, is kept in the student's checkpoint.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from live.taxonomy import N_CLASSES

#: The offsets tried per class, in nats, each round.
GRID = np.linspace(-1.5, 1.5, 31)
ROUNDS = 3


def macro_f1(labels: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64]) -> float:
    """Macro-F1 over the classes present in ``labels`` (as :func:`train.evaluate.evaluate`),
    from one confusion count: fast enough to call a thousand times on 500k windows."""
    k = N_CLASSES
    confusion = np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)
    true_pos = np.diag(confusion).astype(np.float64)
    support, guessed = confusion.sum(1), confusion.sum(0)
    denominator = support + guessed
    f1 = np.divide(2 * true_pos, denominator, out=np.zeros(k), where=denominator > 0)
    present = support > 0
    return float(f1[present].mean()) if present.any() else 0.0


def fit_offsets(
    labels: npt.ArrayLike,
    logits: npt.ArrayLike,
    *,
    grid: npt.ArrayLike = GRID,
    rounds: int = ROUNDS,
) -> npt.NDArray[np.float32]:
    """Offsets ``[8]`` that maximise the macro-F1 of ``argmax(logits + offsets)`` on
    ``labels``: each class's in turn over ``grid`` (the others held), ``rounds`` times. A
    change is kept only if it raises macro-F1, so the offsets never score below zeros on the
    windows they were fitted to. Log-probabilities serve as well as logits."""
    y = np.asarray(labels, np.int64)
    z = np.asarray(logits, np.float64)
    if z.ndim != 2 or z.shape != (len(y), N_CLASSES):
        raise ValueError(f"logits must be [{len(y)}, {N_CLASSES}], got {z.shape}")
    offsets = np.zeros(N_CLASSES)
    best = macro_f1(y, z.argmax(1))
    for _ in range(rounds):
        moved = False
        for c in range(N_CLASSES):
            for value in np.asarray(grid, np.float64):
                trial = offsets.copy()
                trial[c] = value
                score = macro_f1(y, (z + trial).argmax(1))
                if score > best + 1e-12:
                    best, offsets, moved = score, trial, True
        if not moved:
            break
    return offsets.astype(np.float32)


def apply_offsets(layer: torch.nn.Linear, offsets: npt.ArrayLike) -> None:
    """Add ``offsets`` to the bias of ``layer``, the linear layer that makes the logits."""
    if layer.bias is None:
        raise ValueError("the layer that makes the logits has no bias to carry the offsets")
    with torch.no_grad():
        layer.bias.add_(
            torch.as_tensor(np.asarray(offsets), dtype=layer.bias.dtype).to(layer.bias.device)
        )
