"""The floor's hand statistics (train.floor) on hand-built contract-2 inputs, its causal running
means, and both over a real notes store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from live.inputs import DRUMS, ENSEMBLE, ONSET, SOUNDING, VELOCITY
from live.testing.songs import Track, melody, write_song
from train.baseline import FEATURE_NAMES as ROLL_NAMES
from train.baseline import note_features
from train.data.notes import NotesStore, build_notes
from train.floor import FEATURE_NAMES, RUNNING_NAMES, input_features, running_means, sample
from train.history import RESET_BARS, order_segments
from train.students import floor_features

C, E, G = 60, 64, 67


def window() -> np.ndarray:
    """An empty contract-2 input, ``uint8 [5, 128, 16]``."""
    return np.zeros((5, 128, 16), np.uint8)


def note(x: np.ndarray, pitch: int, start: int, steps: int, velocity: int = 100) -> np.ndarray:
    """The part plays ``pitch`` from step ``start`` for ``steps`` steps (onset, velocity)."""
    x[SOUNDING, pitch, start : start + steps] = 1
    x[ONSET, pitch, start] = 1
    x[VELOCITY, pitch, start] = velocity
    return x


def features(x: np.ndarray, valid: int = 16) -> dict[str, float]:
    """:func:`input_features` of one window, by name."""
    row = input_features(x[None], np.array([valid]))[0]
    return dict(zip(FEATURE_NAMES, row.tolist(), strict=True))


def test_names_match_columns_and_an_empty_window_is_zeros() -> None:
    out = input_features(np.zeros((3, 5, 128, 16), np.uint8), np.array([16, 12, 0]))
    assert out.shape == (3, len(FEATURE_NAMES)) and out.dtype == np.float32
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert len(set(RUNNING_NAMES)) == len(RUNNING_NAMES) == 2 * len(FEATURE_NAMES) + 1
    assert (out == 0).all()


def test_the_roll_statistics_are_contract_1s() -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((20, 5, 128, 16)) < 0.03).astype(np.uint8)
    valid = rng.choice([12, 16], 20)
    own = input_features(x, valid)[:, : len(ROLL_NAMES)]
    np.testing.assert_array_equal(own, note_features(x[:, SOUNDING], valid))


def test_a_chord_struck_and_held() -> None:
    """C major struck at step 0 and held 4 steps, velocities 64, 80, 96; nothing else sounds."""
    x = window()
    for pitch, velocity in ((C, 64), (E, 80), (G, 96)):
        note(x, pitch, 0, 4, velocity)
    f = features(x)
    assert f["onsets"] == 3 and f["onsets_per_step"] == pytest.approx(3 / 16)
    assert f["onset_step_share"] == pytest.approx(1 / 16)
    assert f["steps_per_onset"] == 4 and f["restruck_share"] == 0 and f["offbeat_share"] == 0
    assert f["carried_in"] == 0
    assert f["velocity_mean"] == pytest.approx(80) and f["velocity_max"] == 96
    assert f["velocity_min"] == 64
    assert f["velocity_std"] == pytest.approx(np.std([64, 80, 96]), rel=1e-5)
    assert f["polyphony_max"] == 3 and f["pitch_lowest"] == C and f["pitch_highest"] == G
    for name in ("ensemble_density", "with_ensemble", "unison_share", "drums_present"):
        assert f[name] == 0


def test_a_repeated_note_a_held_note_and_the_off_beat() -> None:
    """A note re-struck while sounding, a note carried in from before the window, an onset on
    an odd (off-beat) step."""
    x = note(window(), C, 0, 2)
    note(x, C, 2, 2)  # struck again right after: the roll alone sees one 4-step note
    x[SOUNDING, G, 0:3] = 1  # sounding from before the window, no onset
    note(x, E, 5, 1)
    f = features(x)
    assert f["onsets"] == 3 and f["restruck_share"] == pytest.approx(1 / 3)
    assert f["offbeat_share"] == pytest.approx(1 / 3) and f["carried_in"] == 1
    assert f["steps_per_onset"] == pytest.approx((4 + 3 + 1) / 3)


def test_a_line_doubled_an_octave_below_is_the_top_of_the_ensemble() -> None:
    """The part plays a melody; the ensemble plays it an octave lower, plus one unison note."""
    x = window()
    for k, pitch in enumerate((72, 74, 76, 77)):
        note(x, pitch, 4 * k, 4)
        x[ENSEMBLE, pitch - 12, 4 * k : 4 * k + 4] = 1
    f = features(x)
    assert f["octave_share"] == 1 and f["unison_share"] == 0
    assert f["ensemble_below_lowest"] == 1 and f["ensemble_above_highest"] == 0
    assert f["ensemble_below_mean"] == 1
    assert f["highest_of_ensemble"] == 1 and f["lowest_of_ensemble"] == 0
    assert f["with_ensemble"] == 1 and f["ensemble_density"] == 1
    assert f["pitch_mean_above_ensemble"] == pytest.approx(12)
    assert f["ensemble_lowest"] == 60 and f["ensemble_highest"] == 65
    x[ENSEMBLE, 72, 0:4] = 1  # the ensemble joins the first note in unison
    f = features(x)
    assert f["unison_share"] == pytest.approx(4 / 16)
    assert f["ensemble_below_lowest"] == pytest.approx(16 / 20)
    assert f["highest_of_ensemble"] == 1  # a tie at the top still counts


def test_a_bass_under_a_chord_and_an_ensemble_half_the_time() -> None:
    x = note(window(), 33, 0, 16)
    x[ENSEMBLE, [C, E, G], 0:8] = 1
    f = features(x)
    assert f["lowest_of_ensemble"] == 1 and f["highest_of_ensemble"] == 0
    assert f["ensemble_above_highest"] == 1 and f["with_ensemble"] == pytest.approx(0.5)
    assert f["ensemble_density"] == pytest.approx(0.5)
    assert f["ensemble_cells_per_step"] == pytest.approx(24 / 16)
    assert f["octave_share"] == 0  # no chord note 12 or 24 semitones from 33
    x[ENSEMBLE, 57, 0:8] = 1  # two octaves above the bass
    assert features(x)["octave_share"] == pytest.approx(0.5)


def test_drums() -> None:
    x = note(window(), C, 0, 1)
    x[DRUMS, 36, [0, 4, 8, 12]] = 1  # kick
    x[DRUMS, 38, [4, 12]] = 1  # snare
    f = features(x)
    assert f["drums_present"] == 1 and f["drum_onsets_per_step"] == pytest.approx(6 / 16)


def test_columns_past_the_valid_steps_are_ignored() -> None:
    x = note(window(), C, 0, 2, velocity=50)
    note(x, G, 13, 2, velocity=120)  # past the 12 steps of a 3/4 window
    x[ENSEMBLE, 40, 12:] = 1
    x[DRUMS, 36, 14] = 1
    f = features(x, valid=12)
    assert f["onsets"] == 1 and f["velocity_max"] == 50
    assert f["onsets_per_step"] == pytest.approx(1 / 12)
    assert f["ensemble_density"] == 0 and f["drums_present"] == 0


def test_blocks_agree_with_one_window_at_a_time() -> None:
    rng = np.random.default_rng(1)
    x = (rng.random((30, 5, 128, 16)) < 0.04).astype(np.uint8)
    x[:, VELOCITY] *= rng.integers(1, 128, (30, 128, 16), dtype=np.uint8)
    valid = rng.choice([12, 16], 30)
    batch = input_features(x, valid)
    one = np.stack([input_features(x[i : i + 1], valid[i : i + 1])[0] for i in range(30)])
    np.testing.assert_array_equal(batch, one)
    assert not np.isnan(batch).any()


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        input_features(np.zeros((2, 1, 128, 16), np.uint8), np.full(2, 16))
    with pytest.raises(ValueError, match="valid_steps"):
        input_features(np.zeros((2, 5, 128, 16), np.uint8), np.full(3, 16))


# --------------------------------------------------------------------------- running means

#: Two songs: song 0 part 0 plays bars 0-3, is silent, comes back at bar 3 + RESET_BARS + 1
#: (a new segment); song 0 part 1 bars 0-1; song 1 part 0 bars 0-2.
SONG = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1])
PART = np.array([0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0])
BAR = np.array([0, 1, 2, 3, 4 + RESET_BARS, 5 + RESET_BARS, 0, 1, 0, 1, 2])


def test_running_means_by_hand() -> None:
    feats = np.arange(len(SONG), dtype=np.float32)[:, None] * [1, 10]
    out = running_means(feats, SONG, PART, BAR)
    assert out.shape == (len(SONG), 5)
    np.testing.assert_array_equal(out[:, :2], feats)
    want = [0, 0.5, 1, 1.5, 4, 4.5, 6, 6.5, 8, 8.5, 9]  # the second segment restarts at 4
    np.testing.assert_allclose(out[:, 2], want)
    np.testing.assert_allclose(out[:, 3], np.array(want) * 10)
    np.testing.assert_array_equal(out[:, 4], [1, 2, 3, 4, 1, 2, 1, 2, 1, 2, 3])


def test_running_means_restart_only_after_a_long_silence() -> None:
    bar = BAR.copy()
    bar[4:6] -= 1  # a gap of exactly RESET_BARS bars: the same segment
    out = running_means(np.arange(len(SONG), dtype=np.float32)[:, None], SONG, PART, bar)
    assert out[4, -1] == 5 and out[4, 1] == pytest.approx(np.mean([0, 1, 2, 3, 4]))


def test_running_means_are_causal_and_ignore_the_row_order() -> None:
    rng = np.random.default_rng(0)
    feats = rng.random((len(SONG), 4)).astype(np.float32)
    out = running_means(feats, SONG, PART, BAR)
    order, _, _ = order_segments(SONG, PART, BAR)
    for k, row in enumerate(order):
        later = order[k + 1 :]
        changed = feats.copy()
        changed[later] += 100  # whatever comes later
        np.testing.assert_array_equal(running_means(changed, SONG, PART, BAR)[row], out[row])
    shuffle = rng.permutation(len(SONG))
    again = running_means(feats[shuffle], SONG[shuffle], PART[shuffle], BAR[shuffle])
    np.testing.assert_allclose(again, out[shuffle], rtol=1e-6)


# --------------------------------------------------------------------- a store's windows


def test_sample_is_a_seeded_sorted_subset() -> None:
    idx = np.arange(100, 200)
    a, b = sample(idx, 30, seed=1), sample(idx, 30, seed=1)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 30 and set(a) <= set(idx) and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, sample(idx, 30, seed=2))
    np.testing.assert_array_equal(sample(idx, 100, seed=0), idx)


def test_floor_features_of_a_store_in_blocks_of_songs(tmp_path: Path) -> None:
    """floor_features over a real notes store: the statistics of its inputs with their
    running means, the same in blocks of whole songs and for a subset of the windows."""
    files = [
        write_song(
            tmp_path / f"song{i}.mid",
            [
                Track("Lead", 65, 0, melody(6, low=70, seed=i)),
                Track("Bass", 33, 1, melody(6, low=36, step=0.5, seed=10 + i)),
                Track("Kit", 0, 9, [(36, k, 0.1, 110) for k in range(24)]),
            ],
        )
        for i in range(3)
    ]
    build_notes(files, tmp_path / "notes", workers=1)
    notes = NotesStore(tmp_path / "notes")
    every = np.arange(len(notes))
    own = input_features(notes.inputs(every), notes.index["valid_steps"])
    song, part, bar = (notes.index[k] for k in ("song", "part", "bar"))
    want = running_means(own, song, part, bar)
    np.testing.assert_array_equal(floor_features(notes, every), want)
    np.testing.assert_array_equal(floor_features(notes, every, block=3), want)
    keep = every[::-1][::3]  # a subset, in any order
    np.testing.assert_array_equal(floor_features(notes, every, keep, block=5), want[keep])
    assert want[:, FEATURE_NAMES.index("drums_present")].all()
