"""Note-statistics baseline: feature values on hand-made rolls, and a fit that separates."""

from __future__ import annotations

import numpy as np
import pytest

from train.baseline import FEATURE_NAMES, fit_baseline, note_features


def roll(*cells: tuple[int, int]) -> np.ndarray:
    """A ``[128, 16]`` uint8 roll with the given (pitch, step) cells on."""
    r = np.zeros((128, 16), np.uint8)
    for p, k in cells:
        r[p, k] = 1
    return r


def features(r: np.ndarray, valid: int = 16) -> dict[str, float]:
    """:func:`note_features` of one roll, by name."""
    row = note_features(r[None], np.array([valid]))[0]
    return dict(zip(FEATURE_NAMES, row.tolist(), strict=True))


def test_names_match_columns() -> None:
    out = note_features(np.zeros((3, 128, 16), np.uint8), np.full(3, 16))
    assert out.shape == (3, len(FEATURE_NAMES)) and out.dtype == np.float32
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


def test_single_held_note() -> None:
    f = features(roll(*[(40, k) for k in range(16)]))
    assert f["pitch_lowest"] == f["pitch_highest"] == f["pitch_mean"] == 40
    assert f["pitch_std"] == f["pitch_span"] == 0
    assert f["n_pitches"] == 1
    assert f["n_runs"] == 1 and f["run_length_mean"] == f["run_length_max"] == 16
    assert f["density"] == 1 and f["cells_per_step"] == 1
    assert f["polyphony_mean"] == f["polyphony_max"] == 1
    assert f["pitch_class_4"] == 1  # 40 = E2
    assert f["octave_3"] == 1
    assert f["bass_motion"] == f["top_motion"] == f["chord_fraction"] == 0


def test_chord() -> None:
    f = features(roll((48, 0), (52, 0), (55, 0), (48, 1), (52, 1), (55, 1)))  # C major, 2 steps
    assert f["polyphony_mean"] == f["polyphony_max"] == 3
    assert f["chord_fraction"] == 1
    assert f["pitch_lowest"] == 48 and f["pitch_highest"] == 55 and f["pitch_span"] == 7
    assert f["n_runs"] == 3 and f["run_length_mean"] == 2
    assert f["density"] == pytest.approx(2 / 16)
    assert f["pitch_mean"] == pytest.approx((48 + 52 + 55) / 3)
    assert sum(f[f"pitch_class_{k}"] for k in range(12)) == pytest.approx(1)


def test_runs_and_motion() -> None:
    # Pitch 60 on steps 0-1 and 4, then 67 on step 5: runs 2, 1, 1; lowest notes 60, 60, 60, 67.
    f = features(roll((60, 0), (60, 1), (60, 4), (67, 5)))
    assert f["n_runs"] == 3 and f["run_length_max"] == 2
    assert f["run_length_mean"] == pytest.approx(4 / 3)
    assert f["bass_motion"] == pytest.approx(7 / 3)  # rests skipped: 0, 0, 7


def test_empty_roll_is_all_zeros() -> None:
    out = note_features(np.zeros((2, 128, 16), np.uint8), np.array([16, 0]))
    assert not np.isnan(out).any()
    assert (out == 0).all()


def test_valid_steps_normalise_density_and_mask_columns() -> None:
    r = roll(*[(70, k) for k in range(0, 12, 2)], (20, 14))  # 6 of 12 steps; 14 is past the end
    f = features(r, valid=12)
    assert f["density"] == pytest.approx(0.5)
    assert f["cells_per_step"] == pytest.approx(0.5)
    assert f["pitch_lowest"] == 70  # the cell in column 14 is ignored


def test_blocks_agree_with_one_window_at_a_time() -> None:
    rng = np.random.default_rng(0)
    rolls = (rng.random((40, 128, 16)) < 0.03).astype(np.uint8)
    valid = rng.choice([12, 16], 40)
    batch = note_features(rolls, valid)
    one = np.stack([note_features(rolls[i : i + 1], valid[i : i + 1])[0] for i in range(40)])
    np.testing.assert_array_equal(batch, one)


def synthetic(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Class 0: sparse single notes low (bass-like); class 1: dense 3-4 note chords high."""
    rolls = np.zeros((2 * n, 128, 16), np.uint8)
    for i in range(n):
        for k in rng.choice(16, size=rng.integers(2, 6), replace=False):
            rolls[i, rng.integers(28, 52), k] = 1
    for i in range(n, 2 * n):
        for k in range(0, 16, int(rng.integers(1, 3))):
            rolls[i, rng.integers(60, 84) + np.array([0, 4, 7, 12][: rng.integers(3, 5)]), k] = 1
    return rolls, np.repeat([0, 1], n)


def test_baseline_separates_a_separable_problem() -> None:
    rng = np.random.default_rng(0)
    (r_train, y_train), (r_test, y_test) = synthetic(300, rng), synthetic(100, rng)
    model = fit_baseline(note_features(r_train, np.full(len(r_train), 16)), y_train, seed=0)
    x_test = note_features(r_test, np.full(len(r_test), 16))
    assert (model.predict(x_test) == y_test).mean() > 0.9
    proba = model.predict_proba(x_test)
    assert proba.shape == (len(y_test), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
