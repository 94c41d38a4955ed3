"""The non-neural baseline: gradient boosting on note statistics of a window.

What a practitioner tries first: a few dozen hand-made numbers per 2-bar piano roll (register,
pitch classes, polyphony, density, note lengths, melodic motion) and a
:class:`~sklearn.ensemble.HistGradientBoostingClassifier` on top. The features use only the
binary roll (a score has no velocity), vectorised over windows with numpy.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import HistGradientBoostingClassifier

from live.contract import WINDOW
from train.features import N_OCTAVES, N_PITCH_CLASSES
from train.features import ROLL_NAMES as FEATURE_NAMES

#: Windows processed per block: bounds the temporary arrays (~10 MB each) for any N.
_CHUNK = 8192


def note_features(rolls: npt.ArrayLike, valid_steps: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Note statistics of each window.

    Parameters
    ----------
    rolls : np.ndarray [shape=(N, 128, 16)], any numeric dtype
        Binary piano rolls (pitch x eighth-note step); nonzero = a note sounds.
    valid_steps : np.ndarray [shape=(N,)], int
        Columns each window really has (16 in 4/4, 12 for 2 bars of 3/4); columns past it are
        ignored.

    Returns
    -------
    features : np.ndarray [shape=(N, len(FEATURE_NAMES)), dtype=float32]
        Pitches in MIDI numbers, intervals in semitones, lengths in steps. A window with no
        notes gives all zeros (never NaN).
    """
    rolls = np.asarray(rolls)
    valid = np.asarray(valid_steps).reshape(-1)
    if rolls.ndim != 3 or rolls.shape[1:] != (WINDOW.n_pitches, WINDOW.n_steps):
        raise ValueError(
            f"rolls must have shape (N, {WINDOW.n_pitches}, {WINDOW.n_steps}), got {rolls.shape}"
        )
    if valid.shape[0] != rolls.shape[0]:
        raise ValueError(f"{rolls.shape[0]} rolls but {valid.shape[0]} valid_steps")
    out = np.zeros((rolls.shape[0], len(FEATURE_NAMES)), np.float32)
    for i in range(0, rolls.shape[0], _CHUNK):
        out[i : i + _CHUNK] = _features_block(rolls[i : i + _CHUNK], valid[i : i + _CHUNK])
    return out


def _features_block(rolls: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """:func:`note_features` for one block of windows."""
    n_steps = rolls.shape[2]
    valid = np.clip(valid.astype(np.int64), 0, n_steps)
    # Step-major [n, steps, pitches]: every reduction below runs over a contiguous axis or
    # adds contiguous slabs, which numpy does several times faster than a strided axis of 16.
    active = np.ascontiguousarray(rolls.transpose(0, 2, 1)) != 0
    active &= (np.arange(n_steps)[None, :] < valid[:, None])[:, :, None]
    cells = active.sum(axis=1, dtype=np.uint8)  # [n, pitches]: active steps per pitch
    poly = active.sum(axis=2, dtype=np.uint8)  # [n, steps]: notes per step
    return np.concatenate(
        [
            _pitch_stats(cells),
            _texture(poly, valid),
            _runs(active, cells),
            _motion(active, poly > 0),
        ],
        axis=1,
    )


def _safe_div(num: npt.ArrayLike, den: npt.ArrayLike) -> np.ndarray:
    """``num / den`` as float64, with 0 where ``den`` is 0."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def _pitch_basis(n_pitches: int) -> np.ndarray:
    """``[n_pitches, 2 + 12 + 11]``: columns pitch, pitch**2, pitch-class and octave one-hots."""
    pitch = np.arange(n_pitches)
    basis = np.zeros((n_pitches, 2 + N_PITCH_CLASSES + N_OCTAVES))
    basis[:, 0], basis[:, 1] = pitch, pitch.astype(np.float64) ** 2
    basis[pitch, 2 + pitch % N_PITCH_CLASSES] = 1.0
    basis[pitch, 2 + N_PITCH_CLASSES + pitch // N_PITCH_CLASSES] = 1.0
    return basis


def _pitch_stats(cells: np.ndarray) -> np.ndarray:
    """Register (lowest, highest, mean, std, span, distinct) and pitch-class / octave shares.

    ``cells`` is ``[n, pitches]`` active steps per pitch; mean, std and the histograms weight
    each pitch by its number of active cells.
    """
    n_pitches = cells.shape[1]
    used = cells > 0
    any_note = used.any(axis=1)
    lowest = np.where(any_note, used.argmax(axis=1), 0)
    highest = np.where(any_note, n_pitches - 1 - used[:, ::-1].argmax(axis=1), 0)
    weights = cells.astype(np.float64)
    moments = _safe_div(weights @ _pitch_basis(n_pitches), weights.sum(axis=1, keepdims=True))
    mean = moments[:, 0]
    std = np.sqrt(np.maximum(moments[:, 1] - mean**2, 0.0))
    register = np.stack([lowest, highest, mean, std, highest - lowest, used.sum(axis=1)], 1)
    return np.concatenate([register, moments[:, 2:]], axis=1)


def _texture(poly: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Polyphony mean / max, density, cells per valid step, and the share of chord steps.

    ``poly`` is ``[n, steps]`` notes per step.
    """
    sounding = (poly > 0).sum(axis=1)
    cells = poly.sum(axis=1, dtype=np.int64)
    chords = (poly >= 3).sum(axis=1)
    return np.stack(
        [
            _safe_div(cells, sounding),
            poly.max(axis=1),
            _safe_div(sounding, valid),
            _safe_div(cells, valid),
            _safe_div(chords, sounding),
        ],
        axis=1,
    )


def _runs(active: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Mean and max length (steps) and number of runs of consecutive active steps per pitch."""
    n = active.shape[0]
    total = cells.sum(axis=1, dtype=np.int64)
    continued = np.count_nonzero((active[:, 1:] & active[:, :-1]).reshape(n, -1), axis=1)
    n_runs = total - continued  # every active cell starts a run unless its pitch was on before
    # Length of the run ending at each step, by recurrence over the (few) steps:
    # length = (length + 1) & (0xFF if active else 0x00).
    keep = active.view(np.uint8) * np.uint8(255)
    length = np.zeros(cells.shape, np.uint8)
    longest = np.zeros(cells.shape, np.uint8)
    for k in range(active.shape[1]):
        length += 1
        np.bitwise_and(length, keep[:, k], out=length)
        np.maximum(longest, length, out=longest)
    return np.stack([_safe_div(total, n_runs), longest.max(axis=1), n_runs], axis=1)


def _motion(active: np.ndarray, sounding: np.ndarray) -> np.ndarray:
    """Mean |interval| (semitones) of the lowest and of the highest note between consecutive
    sounding steps (rests are skipped; a held or repeated note counts as interval 0)."""
    n_pitches = active.shape[2]
    low = active.argmax(axis=2)  # [n, steps]: lowest active pitch (0 where silent)
    high = n_pitches - 1 - active[:, :, ::-1].argmax(axis=2)
    return np.stack([_mean_step(low, sounding), _mean_step(high, sounding)], axis=1)


def _mean_step(line: np.ndarray, sounding: np.ndarray) -> np.ndarray:
    """Mean ``|line[k] - line[previous sounding step]|`` over sounding steps that have one.

    ``line`` and ``sounding`` are ``[n, steps]``.
    """
    n = line.shape[0]
    prev = np.zeros(n, np.int64)
    seen = np.zeros(n, bool)
    total = np.zeros(n)
    count = np.zeros(n)
    for k in range(line.shape[1]):
        now = sounding[:, k]
        pair = now & seen
        total += np.where(pair, np.abs(line[:, k] - prev), 0)
        count += pair
        prev = np.where(now, line[:, k], prev)
        seen |= now
    return _safe_div(total, count)


def fit_baseline(
    X: npt.ArrayLike, y: npt.ArrayLike, *, seed: int
) -> HistGradientBoostingClassifier:
    """Gradient-boosted trees on :func:`note_features` output.

    Balanced class weights (the classes are far from equally common), early stopping on an
    internal 10% validation split (stratified), at most 300 boosting rounds of 8 trees with 63
    bins per feature (the fewer bins, the faster). Too few rows for a stratified
    split (fewer than 2 of some class, or 10% smaller than the number of classes) train without
    early stopping. The result has ``predict`` and ``predict_proba``.

    Parameters
    ----------
    X : np.ndarray [shape=(N, F)]
        Features, e.g. :func:`note_features` output.
    y : np.ndarray [shape=(N,)]
        Class indices (or names).
    seed : int
        Seeds the validation split and tie-breaking.
    """
    X = np.asarray(X, np.float32)
    y = np.asarray(y)
    _, counts = np.unique(y, return_counts=True)
    validation_fraction = 0.1
    early = bool(counts.min() >= 2 and validation_fraction * len(y) >= len(counts))
    model = HistGradientBoostingClassifier(
        learning_rate=0.1,
        max_iter=300,
        max_leaf_nodes=31,
        max_bins=63,  # ~3x faster than 255; most features are small integers anyway
        min_samples_leaf=20,
        l2_regularization=1e-3,
        class_weight="balanced",
        early_stopping=early,
        validation_fraction=validation_fraction if early else None,
        n_iter_no_change=10,
        random_state=seed,
    )
    return model.fit(X, y)
