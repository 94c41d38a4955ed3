"""experiments/confusions.py: each cue taken away removes that cue and nothing else; the kinds
of window are the part's own polyphony, mean pitch and onsets."""

from __future__ import annotations

import numpy as np
import torch

from live.controls import N_ROWS
from live.inputs import DRUMS, ENSEMBLE, ONSET, SOUNDING, VELOCITY
from tests.train.experiments import load
from train.batches import SparseWindows

confusions = load("confusions")


def windows(cells: list[tuple[int, int, int, int, int]], n: int = 2) -> SparseWindows:
    """``(window, channel, pitch, step, value)`` cells."""
    rows = torch.tensor([c[0] for c in cells])
    flat = torch.tensor([(c[1] * 128 + c[2]) * 16 + c[3] for c in cells])
    values = torch.tensor([float(c[4]) for c in cells])
    return SparseWindows(rows, flat, values, n)


# Window 0: a C-E dyad held over steps 0-1 (onset at 0, velocity 90), a controller row, a kick,
# an ensemble note. Window 1: one G struck at steps 0 and 2.
SONG = windows(
    [
        (0, SOUNDING, 60, 0, 1),
        (0, SOUNDING, 64, 0, 1),
        (0, SOUNDING, 60, 1, 1),
        (0, SOUNDING, 64, 1, 1),
        (0, ONSET, 60, 0, 1),
        (0, ONSET, 64, 0, 1),
        (0, VELOCITY, 60, 0, 90),
        (0, DRUMS, 2, 0, 1),  # a controller row (contract 3)
        (0, DRUMS, 36, 0, 1),  # a kick
        (0, ENSEMBLE, 48, 3, 1),
        (1, SOUNDING, 67, 0, 1),
        (1, SOUNDING, 67, 2, 1),
        (1, ONSET, 67, 0, 1),
        (1, ONSET, 67, 2, 1),
        (1, VELOCITY, 67, 2, 40),
    ]
)


def dense(x: SparseWindows) -> torch.Tensor:
    return x.dense()


def test_each_cue_taken_away_removes_that_cue_only() -> None:
    before = dense(SONG)
    for cue, changed in [
        (confusions.flat_velocity, [VELOCITY]),
        (confusions.no_controllers, [DRUMS]),
        (confusions.no_drums, [DRUMS]),
        (confusions.no_ensemble, [ENSEMBLE]),
    ]:
        after = dense(cue(SONG))
        same = [c for c in range(5) if c not in changed]
        assert torch.equal(after[:, same], before[:, same]), cue.__name__
        assert not torch.equal(after, before), cue.__name__
    velocity = dense(confusions.flat_velocity(SONG))[:, VELOCITY]
    assert set(velocity[velocity > 0].tolist()) == {100.0}
    assert (velocity > 0).sum() == 2  # no velocity where there was none
    kept = dense(confusions.no_controllers(SONG))[0, DRUMS]
    assert kept[:N_ROWS].sum() == 0 and kept[36, 0] == 1
    kept = dense(confusions.no_drums(SONG))[0, DRUMS]
    assert kept[2, 0] == 1 and kept[N_ROWS:].sum() == 0
    assert torch.equal(confusions.CUES["none"](SONG).dense(), before)


def test_kinds_are_the_parts_polyphony_pitch_and_onsets() -> None:
    k = confusions.kinds(SONG)
    assert np.allclose(k["polyphony"], [2.0, 1.0])
    assert np.allclose(k["mean pitch"], [62.0, 67.0])
    assert np.allclose(k["onsets"], [2.0, 2.0])


def test_by_kind_counts_each_classes_windows_and_answers() -> None:
    y = np.array([5] * 60 + [6] * 60)
    pred = np.array([4] * 30 + [5] * 30 + [6] * 60)
    stats = {"polyphony": np.full(120, 3.0), "mean pitch": np.full(120, 60.0)}
    stats["onsets"] = np.r_[np.full(60, 2.0), np.full(60, 10.0)]
    out = confusions.by_kind(y, pred, stats)
    brass = {(b["kind"], b["bin"][0]): b for b in out["Brass"]["bins"]}
    assert out["Brass"]["windows"] == 60 and out["Piano"]["bins"] == []
    assert brass[("polyphony", 2.5)]["recall"] == 0.5
    assert brass[("polyphony", 2.5)]["answers"]["Strings"] == 0.5
    assert out["Reed"]["bins"][0]["recall"] == 1.0
