"""The input contract: numbers and the one quantiser shared by training and the live daemon.

Everything that must be identical at training time and at run time lives here, so there is no
train/serve skew by construction: the training pipeline and the daemon both call :func:`quantize`
with note times in *steps* (eighth notes) relative to the window start.
Which channels a student reads on this grid, and what its graph takes and gives, is its
contract version: one object each in :mod:`live.contracts`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from live.errors import ContractError

#: Bumped whenever a number below changes; stored in every data set, checkpoint and bundle.
CONTRACT_VERSION = 1


@dataclass(frozen=True)
class WindowSpec:
    """A 2-bar window on an eighth-note grid.

    In 4/4 two bars are exactly ``n_steps`` = 16 eighths. Other meters: shorter windows (2 bars
    of 3/4 are 12 eighths) are zero-padded at the end, longer ones are cropped to 16 steps.
    """

    bars: int = 2
    steps_per_quarter: int = 2  # eighth notes
    n_steps: int = 16
    n_pitches: int = 128

    def steps_per_bar(self, numerator: int, denominator: int) -> float:
        """Grid steps in one bar of ``numerator/denominator`` (8 in 4/4, 6 in 3/4 and 6/8)."""
        return numerator * (4 / denominator) * self.steps_per_quarter

    def valid_steps(self, window_steps: float) -> int:
        """How many of the ``n_steps`` columns a window ``window_steps`` long fills."""
        return int(min(self.n_steps, max(0, math.ceil(window_steps - 1e-9))))


@dataclass(frozen=True)
class MelSpec:
    """Audio features of the teacher, as in the paper: 22,050 Hz mono, log-mel 128 x frames."""

    sample_rate: int = 22050
    n_fft: int = 512
    hop_length: int = 512
    n_mels: int = 128
    #: Frames of the paper's teacher input (2 bars of the slowest song, zero-padded at the end).
    paper_frames: int = 528
    #: Floor of the log scale, in dB relative to full scale (power 1.0).
    top_db_floor: float = -100.0


WINDOW = WindowSpec()
MEL = MelSpec()


def quantize(
    pitches: npt.ArrayLike,
    starts: npt.ArrayLike,
    ends: npt.ArrayLike,
    *,
    valid_steps: int | None = None,
    spec: WindowSpec = WINDOW,
    out: npt.NDArray | None = None,
) -> npt.NDArray:
    """Notes -> binary piano roll of one window.

    Parameters
    ----------
    pitches : array-like of int [shape=(n,)]
        MIDI pitches, 0-127. Anything else raises :class:`ContractError`.
    starts, ends : array-like of float [shape=(n,)]
        Note on and off times in grid steps (eighth notes) relative to the window start.
        A note sounds during ``[start, end)``; ``end == start`` marks only its onset step.
        Times before 0 or past the window are allowed and clipped.
    valid_steps : int, optional
        Columns this window really has (12 for two bars of 3/4); columns past it stay 0.
        Default: all ``spec.n_steps``.
    out : np.ndarray [shape=(n_pitches, n_steps)], optional
        Preallocated output (any numeric dtype) to fill in place, e.g. a row of a batch buffer.

    Returns
    -------
    roll : np.ndarray [shape=(n_pitches, n_steps), dtype=float32 unless ``out`` is given]
        ``roll[p, k] == 1`` iff a note of pitch p sounds during any part of step ``[k, k+1)``.
    """
    p = np.asarray(pitches)
    s = np.asarray(starts, dtype=np.float64)
    e = np.asarray(ends, dtype=np.float64)
    _check_notes(p, s, e, spec)
    n_cols = spec.n_steps if valid_steps is None else int(min(max(valid_steps, 0), spec.n_steps))

    roll = np.zeros((spec.n_pitches, spec.n_steps), np.float32) if out is None else out
    if out is not None:
        if out.shape != (spec.n_pitches, spec.n_steps):
            raise ContractError(f"out must have shape {(spec.n_pitches, spec.n_steps)}")
        out.fill(0)
    if p.size == 0 or n_cols == 0:
        return roll

    # Step k overlaps [s, e) iff s < k + 1 and e > k: k runs from floor(s) to ceil(e) - 1.
    # Clip in float before casting so that huge times cannot overflow the integer cast.
    first = np.floor(np.clip(s, -1.0, n_cols))
    last = np.where(e > s, np.ceil(np.clip(e, -1.0, n_cols + 1.0)) - 1.0, first)
    first = np.maximum(first, 0.0).astype(np.int64)
    last = np.minimum(last, n_cols - 1.0).astype(np.int64)
    keep = first <= last
    if not keep.any():
        return roll
    pk, fk, lk = p[keep].astype(np.int64), first[keep], last[keep]
    # Mark [first, last] per note with a difference array: +1 at first, -1 after last.
    diff = np.zeros((spec.n_pitches, n_cols + 1), np.int32)
    np.add.at(diff, (pk, fk), 1)
    np.add.at(diff, (pk, lk + 1), -1)
    roll[:, :n_cols] = np.cumsum(diff[:, :n_cols], axis=1) > 0
    return roll


def _check_notes(p: np.ndarray, s: np.ndarray, e: np.ndarray, spec: WindowSpec) -> None:
    if not (p.ndim == s.ndim == e.ndim == 1 and p.shape == s.shape == e.shape):
        raise ContractError(
            "pitches, starts and ends must be 1-D arrays of equal length, got shapes "
            f"{p.shape}, {s.shape}, {e.shape}"
        )
    if p.size == 0:
        return
    if not np.issubdtype(p.dtype, np.number) or np.any(p != np.round(p)):
        raise ContractError("pitches must be whole MIDI note numbers 0-127")
    if p.min() < 0 or p.max() >= spec.n_pitches:
        bad = p[(p < 0) | (p >= spec.n_pitches)][0]
        raise ContractError(
            f"pitch {bad} is outside 0-{spec.n_pitches - 1}; MIDI pitches are 0-127: "
            "drop or fix the note before quantising"
        )
    if not (np.isfinite(s).all() and np.isfinite(e).all()):
        raise ContractError("note times must be finite numbers of steps (got NaN or inf)")
    if np.any(e < s):
        raise ContractError("a note ends before it starts (end < start): swap or drop it")
