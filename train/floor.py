"""The floor: gradient boosting on hand statistics of the contract-2 inputs (issue 26).

What a learned student must beat: a few dozen hand-made numbers per window of
:mod:`live.inputs` (the part's notes, onsets, velocity, the ensemble, the drums) and a
:class:`~sklearn.ensemble.HistGradientBoostingClassifier` on top
(:func:`train.baseline.fit_baseline`, through :func:`fit_answers`).

- :func:`input_features`: one window's statistics, :data:`FEATURE_NAMES` (the part's own roll
  through :func:`train.baseline.note_features`, then onsets and durations, velocity, the
  part's register rank and doubling among the sounding parts, the drums);
- :func:`running_means`: each window's features averaged over its part's windows so far
  (causal, restarting where the running answer does: :func:`train.history.order_segments`),
  appended to its own, :data:`RUNNING_NAMES`: what the floor's running answer reads, as the
  student's state does.

Vectorised numpy over blocks of windows; nothing here reads a store or fits a model.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from live.contracts import V2
from live.inputs import DRUMS, ENSEMBLE, ONSET, SOUNDING, VELOCITY
from live.taxonomy import N_CLASSES
from train import history
from train.baseline import _safe_div, fit_baseline, note_features
from train.features import INPUT_NAMES as FEATURE_NAMES
from train.features import OCTAVES, ROLL_NAMES

#: Windows per block: bounds the temporaries (a block of inputs is about 40 MB).
_CHUNK = 4096
#: What the running answer reads: the window's own statistics, their mean over the part's
#: windows so far (this one included), and how many windows that mean is over.
RUNNING_NAMES: list[str] = [
    *FEATURE_NAMES,
    *(f"so_far_{name}" for name in FEATURE_NAMES),
    "windows_heard",
]


def input_features(inputs: npt.ArrayLike, valid_steps: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Hand statistics of each window's contract-2 input.

    Parameters
    ----------
    inputs : np.ndarray [shape=(N, 5, 128, 16)], uint8
        Windows of :func:`live.inputs.window_inputs` (channels sounding, onset, velocity,
        ensemble, drums; pitch x eighth-note step).
    valid_steps : np.ndarray [shape=(N,)], int
        Columns each window really has (16 in 4/4, 12 for 2 bars of 3/4); the rest is ignored.

    Returns
    -------
    features : np.ndarray [shape=(N, len(FEATURE_NAMES)), dtype=float32]
        Units as :data:`FEATURE_NAMES` says.
    """
    inputs = np.asarray(inputs)
    valid = np.asarray(valid_steps).reshape(-1)
    if inputs.ndim != 4 or inputs.shape[1:] != V2.input_shape:
        raise ValueError(f"inputs must have shape (N, {V2.input_shape}), got {inputs.shape}")
    if valid.shape[0] != inputs.shape[0]:
        raise ValueError(f"{inputs.shape[0]} windows but {valid.shape[0]} valid_steps")
    out = np.zeros((inputs.shape[0], len(FEATURE_NAMES)), np.float32)
    own = len(ROLL_NAMES)
    for i in range(0, inputs.shape[0], _CHUNK):
        block, v = inputs[i : i + _CHUNK], valid[i : i + _CHUNK]
        out[i : i + _CHUNK, :own] = note_features(block[:, SOUNDING], v)
        out[i : i + _CHUNK, own:] = _inputs_block(block, v, out[i : i + _CHUNK, :own])
    return out


def _inputs_block(inputs: np.ndarray, valid: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """The statistics after the roll's, for one block; ``roll`` is its roll features."""
    n_steps = inputs.shape[3]
    valid = np.clip(valid.astype(np.int64), 0, n_steps)
    in_window = (np.arange(n_steps)[None, :] < valid[:, None])[:, :, None]  # [n, steps, 1]
    steps = np.ascontiguousarray(inputs.transpose(0, 1, 3, 2))  # [n, channel, steps, pitches]
    sounding = (steps[:, SOUNDING] != 0) & in_window
    onset = (steps[:, ONSET] != 0) & in_window
    velocity = np.where(onset, steps[:, VELOCITY], 0).astype(np.float64)
    ensemble = (steps[:, ENSEMBLE] != 0) & in_window
    drums = (steps[:, DRUMS] != 0) & in_window
    return np.concatenate(
        [
            _onsets(sounding, onset, valid),
            _velocity(onset, velocity),
            _ensemble(sounding, ensemble, valid, roll),
            np.stack([drums.any(axis=(1, 2)), _safe_div(_count(drums), valid)], axis=1),
        ],
        axis=1,
    )


def _count(cells: np.ndarray) -> np.ndarray:
    """Cells on per window of a ``[n, steps, pitches]`` boolean array."""
    return np.count_nonzero(cells.reshape(len(cells), -1), axis=1)


def _onsets(sounding: np.ndarray, onset: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Onsets, per step, steps with one, re-struck and off-beat shares, steps per onset, and
    the pitches carried in from before the window."""
    n_onsets = _count(onset)
    before = np.zeros_like(sounding)
    before[:, 1:] = sounding[:, :-1]
    carried = sounding[:, 0] & ~onset[:, 0]
    return np.stack(
        [
            n_onsets,
            _safe_div(n_onsets, valid),
            _safe_div(onset.any(axis=2).sum(axis=1), valid),
            _safe_div(_count(onset & before), n_onsets),
            _safe_div(_count(onset[:, 1::2]), n_onsets),
            _safe_div(_count(sounding), n_onsets),
            carried.sum(axis=1),
        ],
        axis=1,
    )


def _velocity(onset: np.ndarray, velocity: np.ndarray) -> np.ndarray:
    """Mean, max, min and standard deviation of the onsets' velocities (0 without onsets)."""
    n = len(onset)
    count = _count(onset)
    flat = velocity.reshape(n, -1)
    mean = _safe_div(flat.sum(axis=1), count)
    square = _safe_div((flat**2).sum(axis=1), count)
    lowest = np.where(onset.reshape(n, -1), flat, np.inf).min(axis=1)
    return np.stack(
        [
            mean,
            flat.max(axis=1),
            np.where(count > 0, lowest, 0.0),
            np.sqrt(np.maximum(square - mean**2, 0.0)),
        ],
        axis=1,
    )


def _ensemble(
    sounding: np.ndarray, ensemble: np.ndarray, valid: np.ndarray, roll: np.ndarray
) -> np.ndarray:
    """The ensemble's density and register, the part's rank in it and its doubling."""
    n, _, n_pitches = sounding.shape
    pitch = np.arange(n_pitches)
    per_pitch = ensemble.sum(axis=1)  # [n, pitches]: the ensemble's sounding steps per pitch
    cells = per_pitch.sum(axis=1)
    used = per_pitch > 0
    any_ens = used.any(axis=1)
    ens_mean = _safe_div(per_pitch @ pitch, cells)
    ens_low = np.where(any_ens, used.argmax(axis=1), 0)
    ens_high = np.where(any_ens, n_pitches - 1 - used[:, ::-1].argmax(axis=1), 0)
    # The ensemble's cells below pitch p: below[:, p] (p = 0 .. 128).
    below = np.zeros((n, n_pitches + 1), np.int64)
    np.cumsum(per_pitch, axis=1, out=below[:, 1:])
    low, high, mean = (
        roll[:, ROLL_NAMES.index(k)] for k in ("pitch_lowest", "pitch_highest", "pitch_mean")
    )
    part_cells = _count(sounding)
    has_part = part_cells > 0
    take = lambda p: np.take_along_axis(below, p.astype(np.int64)[:, None], axis=1)[:, 0]  # noqa: E731
    below_low = np.where(has_part, take(low), 0)
    above_high = np.where(has_part, cells - take(high + 1), 0)
    below_mean = np.where(has_part, take(np.ceil(mean)), 0)
    return np.concatenate(
        [
            np.stack(
                [
                    _safe_div(ensemble.any(axis=2).sum(axis=1), valid),
                    _safe_div(cells, valid),
                    ens_mean,
                    ens_low,
                    ens_high,
                    _safe_div(below_low, cells),
                    _safe_div(above_high, cells),
                    _safe_div(below_mean, cells),
                    np.where(has_part & any_ens, mean - ens_mean, 0.0),
                ],
                axis=1,
            ),
            _rank(sounding, ensemble),
            _doubling(sounding, ensemble, part_cells),
        ],
        axis=1,
    )


def _rank(sounding: np.ndarray, ensemble: np.ndarray) -> np.ndarray:
    """Of the steps where the part and the ensemble both sound: the share where the part's
    lowest note is at or below the ensemble's lowest, and its highest at or above the
    ensemble's highest; and the share of the part's sounding steps the ensemble shares."""
    n_pitches = sounding.shape[2]
    part_on, ens_on = sounding.any(axis=2), ensemble.any(axis=2)
    both = part_on & ens_on
    lowest = both & (sounding.argmax(axis=2) <= ensemble.argmax(axis=2))
    top = lambda a: n_pitches - 1 - a[:, :, ::-1].argmax(axis=2)  # noqa: E731
    highest = both & (top(sounding) >= top(ensemble))
    n_both = both.sum(axis=1)
    return np.stack(
        [
            _safe_div(lowest.sum(axis=1), n_both),
            _safe_div(highest.sum(axis=1), n_both),
            _safe_div(n_both, part_on.sum(axis=1)),
        ],
        axis=1,
    )


def _doubling(sounding: np.ndarray, ensemble: np.ndarray, part_cells: np.ndarray) -> np.ndarray:
    """Shares of the part's cells the ensemble sounds in unison, and one or two octaves away."""
    octave = np.zeros_like(ensemble)
    for k in OCTAVES:
        octave[:, :, :-k] |= ensemble[:, :, k:]  # the ensemble k semitones above
        octave[:, :, k:] |= ensemble[:, :, :-k]  # and below
    return np.stack(
        [
            _safe_div(_count(sounding & ensemble), part_cells),
            _safe_div(_count(sounding & octave), part_cells),
        ],
        axis=1,
    )


def running_means(
    features: npt.NDArray[np.float32],
    song: npt.ArrayLike,
    part: npt.ArrayLike,
    bar: npt.ArrayLike,
) -> npt.NDArray[np.float32]:
    """Each window's features with their running mean over its part so far appended.

    Parameters
    ----------
    features : np.ndarray [shape=(N, F)]
        The windows' own statistics (:func:`input_features`), in any order.
    song, part, bar : np.ndarray [shape=(N,)], int
        Each window's song, part and first bar. A part's windows in bar order are a segment
        until a gap of more than :data:`train.history.RESET_BARS` bars, as for the running
        answer (:func:`train.history.order_segments`); only the windows given count.

    Returns
    -------
    running : np.ndarray [shape=(N, 2 * F + 1), dtype=float32]
        ``features``, then the mean of the segment's rows up to and including this one (a
        window's value never depends on a later window), then the number of windows that mean
        is over; in ``features``' order.
    """
    features = np.asarray(features, np.float32)
    order, segment, position = history.order_segments(song, part, bar)
    ordered = features[order].astype(np.float64)
    total = np.cumsum(ordered, axis=0)
    start = np.flatnonzero(position == 0)  # first row of each segment, in order
    before = np.zeros_like(total)
    before[start[1:]] = total[start[1:] - 1]
    before = before[start][segment]  # the running total before each row's segment
    heard = (position + 1).astype(np.float64)
    out = np.empty((len(features), 2 * features.shape[1] + 1), np.float32)
    out[order, : features.shape[1]] = features[order]
    out[order, features.shape[1] : -1] = (total - before) / heard[:, None]
    out[order, -1] = heard
    return out


# ------------------------------------------------------------------------------- fitting


def sample(idx: npt.NDArray[np.int64], n: int, *, seed: int) -> npt.NDArray[np.int64]:
    """At most ``n`` of the windows ``idx``, drawn at random (``seed``), sorted; all of them
    when there are no more than ``n``."""
    if len(idx) <= n:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, n, replace=False))


def fit_answers(
    train_x: npt.NDArray[np.float32],
    train_y: npt.NDArray[np.int64],
    test_x: npt.NDArray[np.float32],
    *,
    seed: int,
) -> npt.NDArray[np.float32]:
    """Gradient boosting (:func:`train.baseline.fit_baseline`) fitted on ``train_x [n, F]`` and
    ``train_y [n]``; its probabilities ``[m, 8]`` on ``test_x [m, F]``, a column for every
    class (0 for a class it never saw)."""
    model = fit_baseline(train_x, train_y, seed=seed)
    probs = np.zeros((len(test_x), N_CLASSES), np.float32)
    for s in range(0, len(test_x), 65536):
        probs[s : s + 65536, model.classes_] = model.predict_proba(test_x[s : s + 65536])
    return probs
