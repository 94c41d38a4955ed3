"""Test-set metrics of a model, and what the teacher's soft targets carry.

The headline figure is macro-F1 (the paper's "macro F-measure", Table 2). It is averaged over
the classes that occur in the labels being scored: a class with no test window would otherwise
count as F1 = 0 whatever the model does, and make small test sets meaningless. Such a class has
``None`` as its per-class F1, and ``"classes_in_test"`` lists the classes averaged over.

sklearn is imported inside the functions, so importing this module stays light.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from live.taxonomy import CLASSES, N_CLASSES


def evaluate(y_true: npt.ArrayLike, probs: npt.ArrayLike) -> dict:
    """Score predictions against labels.

    Args:
        y_true: class indices in contract order (``live.taxonomy.CLASSES``), shape ``[N]``.
        probs: scores, shape ``[N, 8]``; probabilities or logits (only the argmax is used).

    Returns:
        ``{"macro_f1", "accuracy", "per_class": {class: F1 or None}, "support": {class: n},
        "confusion": 8 x 8 counts (rows true, columns predicted, contract order), "n",
        "classes_in_test": [class, ...]}``. Macro-F1 is the mean F1 over the classes present in
        ``y_true`` only; a class absent from ``y_true`` has per-class F1 ``None``. Predictions
        of an absent class still count against the true class (as false negatives).

    Raises:
        ValueError: empty input, mismatched shapes, labels out of range or non-finite scores.
    """
    from sklearn.metrics import confusion_matrix, f1_score

    labels, predicted = _labels_and_predictions(y_true, probs)
    present = sorted({int(i) for i in labels})
    every = list(range(N_CLASSES))
    macro = f1_score(labels, predicted, labels=present, average="macro", zero_division=0)
    per = f1_score(labels, predicted, labels=every, average=None, zero_division=0)
    counts = np.bincount(labels, minlength=N_CLASSES)
    confusion = confusion_matrix(labels, predicted, labels=every)
    return {
        "macro_f1": float(macro),
        "accuracy": float(np.mean(labels == predicted)),
        "per_class": {c: (float(per[i]) if i in present else None) for i, c in enumerate(CLASSES)},
        "support": {c: int(counts[i]) for i, c in enumerate(CLASSES)},
        "confusion": confusion.astype(int).tolist(),
        "n": int(labels.size),
        "classes_in_test": [CLASSES[i] for i in present],
    }


def _labels_and_predictions(
    y_true: npt.ArrayLike, probs: npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Validated labels ``[N]`` and argmax predictions ``[N]``."""
    labels = np.asarray(y_true)
    scores = np.asarray(probs, dtype=np.float64)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"y_true must be a non-empty 1-D array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"y_true must hold integer class indices, got dtype {labels.dtype}")
    if scores.shape != (labels.size, N_CLASSES):
        raise ValueError(f"probs must have shape ({labels.size}, {N_CLASSES}), got {scores.shape}")
    if labels.min() < 0 or labels.max() >= N_CLASSES:
        raise ValueError(
            f"labels must be in 0..{N_CLASSES - 1}, got {labels.min()}..{labels.max()}"
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError("probs contain NaN or infinity (did training diverge?)")
    return labels.astype(np.int64), scores.argmax(axis=1).astype(np.int64)


def soft_targets(
    logits: npt.ArrayLike,
    y_true: npt.ArrayLike,
    temperature: float,
    confusions: dict[str, npt.ArrayLike] | None = None,
) -> dict:
    """What the teacher's soft targets say beyond the label, on the windows a student learns from.

    Distillation can only pass on the probability mass a target puts off the label. That mass
    helps a notes-only student when it falls on the classes that are hard to tell apart *from
    notes*; a teacher that hears timbre may spread it elsewhere. This measures both.

    Args:
        logits: the teacher's logits ``[N, 8]`` on the student's training windows.
        y_true: their labels ``[N]`` (contract order).
        temperature: the distillation temperature T (targets are ``softmax(logits / T)``).
        confusions: name -> 8 x 8 test confusion counts of notes-only models (rows true).

    Returns:
        ``{"temperature", "n", "accuracy": argmax == label, "p_label": mean target
        probability of the label, "entropy": mean entropy in nats (uniform: ln 8 = 2.08),
        "off_label": 8 x 8 mean target per true class (rows; None for a class with no
        window), "alignment": {name: Pearson r between the off-label mass and that model's
        confusions, or None}}``. The alignment compares the off-diagonal entries of each row
        renormalised to sum to 1 (where a row has any), so it asks only *where* the mass
        goes, not how much there is.
    """
    labels = np.asarray(y_true)
    scores = np.asarray(logits, dtype=np.float64)
    if scores.shape != (labels.size, N_CLASSES) or labels.size == 0:
        raise ValueError(
            f"logits must have shape ({labels.size}, {N_CLASSES}) for {labels.size} "
            f"labels, got {scores.shape}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = scores / temperature
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    rows = np.arange(labels.size)
    off = np.full((N_CLASSES, N_CLASSES), np.nan)
    for c in range(N_CLASSES):
        if np.any(labels == c):
            off[c] = p[labels == c].mean(axis=0)
    alignment = {
        name: _offdiagonal_r(off, np.asarray(conf, dtype=np.float64))
        for name, conf in (confusions or {}).items()
    }
    return {
        "temperature": float(temperature),
        "n": int(labels.size),
        "accuracy": float(np.mean(p.argmax(axis=1) == labels)),
        "p_label": float(p[rows, labels].mean()),
        "entropy": float(-(p * np.log(np.clip(p, 1e-12, None))).sum(axis=1).mean()),
        "off_label": [None if np.isnan(r).any() else r.tolist() for r in off],
        "alignment": alignment,
    }


def _offdiagonal_r(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson r over the off-diagonal entries of the rows both matrices can renormalise."""
    mask = ~np.eye(N_CLASSES, dtype=bool)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for c in range(N_CLASSES):
        ra, rb = a[c][mask[c]], b[c][mask[c]]
        if np.isnan(ra).any() or ra.sum() <= 0 or rb.sum() <= 0:
            continue
        xs.append(ra / ra.sum())
        ys.append(rb / rb.sum())
    if not xs:
        return None
    x, y = np.concatenate(xs), np.concatenate(ys)
    if np.ptp(x) < 1e-9 or np.ptp(y) < 1e-9:  # constant: no pattern to compare
        return None
    return float(np.corrcoef(x, y)[0, 1])


#: The five classes of Dong et al. (ISMIR 2021), whose online LSTM is right 74% of the time on
#: Lakh: piano, guitar, bass, strings, brass.
DONG_CLASSES: tuple[str, ...] = ("Piano", "Guitar", "Bass", "Strings", "Brass")


def five_class_accuracy(y_true: npt.ArrayLike, probs: npt.ArrayLike) -> dict:
    """Accuracy on Dong et al.'s five classes (:data:`DONG_CLASSES`): over the windows whose
    label is one of them, the argmax of ``probs [N, 8]`` among those five only (the task their
    model solves). ``{"accuracy": float or None, "n": windows scored}``."""
    keep = np.array([CLASSES.index(c) for c in DONG_CLASSES])
    y, p = np.asarray(y_true), np.asarray(probs)
    rows = np.isin(y, keep)
    if not rows.any():
        return {"accuracy": None, "n": 0}
    predicted = keep[p[rows][:, keep].argmax(axis=1)]
    return {"accuracy": float((predicted == y[rows]).mean()), "n": int(rows.sum())}
