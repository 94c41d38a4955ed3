"""experiments/window_length.py: a window's earlier windows are its own part's, 2, 4 and 6 bars
before, and missing where the part was silent; never a later bar's."""

from __future__ import annotations

import numpy as np

from live.inputs import SOUNDING
from tests.train.experiments import load
from train import floor

window_length = load("window_length")


class Store:
    """What the script reads of a notes store: the index, and each row's input (one note,
    pitch 30 + row, so every row's statistics differ)."""

    def __init__(self, song: list[int], part: list[int], bar: list[int]) -> None:
        n = len(song)
        self.index = {
            "song": np.array(song, np.int32),
            "part": np.array(part, np.int16),
            "bar": np.array(bar, np.int32),
            "valid_steps": np.full(n, 16, np.int8),
        }

    def inputs(self, rows: np.ndarray) -> np.ndarray:
        x = np.zeros((len(rows), 5, 128, 16), np.uint8)
        x[np.arange(len(rows)), SOUNDING, 30 + np.asarray(rows), 0] = 1
        return x


# Song 0, part 0 plays bars 0-4, is silent at 5-6 and plays 7-8; part 1 plays bars 2 and 4;
# song 1, part 0 plays bars 2 and 4 (the same bars, another song).
SONG = [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]
PART = [0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0]
BAR = [0, 1, 2, 3, 4, 7, 8, 2, 4, 2, 4]


def test_the_earlier_windows_are_the_parts_own() -> None:
    notes = Store(SONG, PART, BAR)
    whole = np.arange(len(SONG))
    two = window_length.earlier(notes, whole, whole, 2)
    assert two.tolist() == [-1, -1, 0, 1, 2, -1, -1, -1, 7, -1, 9]
    six = window_length.earlier(notes, whole, whole, 6)
    assert six.tolist() == [-1, -1, -1, -1, -1, 1, 2, -1, -1, -1, -1]
    # Only the windows given are looked up: without part 0's bar 2, bar 4 has none.
    some = np.array([0, 1, 3, 4])
    assert window_length.earlier(notes, some, some, 2).tolist() == [-1, -1, 1, -1]
    assert window_length.part_start(notes, whole).tolist() == [0] * 7 + [2, 2, 2, 2]


def test_a_longer_window_reads_its_own_then_the_earlier_windows_statistics() -> None:
    notes = Store(SONG, PART, BAR)
    whole = np.arange(len(SONG))
    x = window_length.lookback_features(notes, whole, whole)
    own = len(floor.FEATURE_NAMES)
    assert x.shape == (len(SONG), 4 * own)
    feats = floor.input_features(notes.inputs(whole), notes.index["valid_steps"])
    np.testing.assert_array_equal(x[:, :own], feats)
    np.testing.assert_array_equal(x[4, own : 2 * own], feats[2])  # bar 4 <- bar 2
    np.testing.assert_array_equal(x[4, 2 * own : 3 * own], feats[0])  # bar 4 <- bar 0
    assert np.isnan(x[6, own : 2 * own]).all()  # bar 8: the part was silent at bar 6
    np.testing.assert_array_equal(x[6, 2 * own : 3 * own], feats[4])  # bar 8 <- bar 4
    np.testing.assert_array_equal(x[6, 3 * own :], feats[2])  # bar 8 <- bar 2
    assert np.isnan(x[:2, own:]).all()  # nothing before the song begins
