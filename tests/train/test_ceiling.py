"""experiments/ceiling.py: lines, their grams and the matching of two versions' parts."""

from __future__ import annotations

import numpy as np

from live.midifile import Part
from tests.train.experiments import load

ceiling = load("ceiling")

TUNE = [60, 62, 64, 65, 67, 65, 64, 62, 60, 67, 72, 71, 69, 67, 65, 64]
BASS = [36, 36, 43, 41, 38, 43, 36, 31, 33, 40, 41, 43, 36, 29, 31, 36]


def line(pitches: list[int], family: int, *, shift: int = 0, beat: float = 1.0):
    """A Line of ``pitches`` transposed by ``shift``, one note every ``beat`` beats."""
    p = np.array(pitches) + shift
    onsets = np.arange(len(p)) * beat
    return ceiling.Line(
        family,
        float(np.median(p)),
        len(p),
        ceiling.interval_grams(p),
        ceiling.rhythm_grams(p, onsets),
    )


def test_interval_grams_ignore_transposition_and_tempo() -> None:
    a = ceiling.interval_grams(TUNE)
    assert len(a) > 8
    assert np.array_equal(a, ceiling.interval_grams(np.array(TUNE) - 5))
    assert ceiling.jaccard(a, ceiling.interval_grams(BASS)) < 0.1
    # Rhythm grams see a line played at half speed as different; interval grams do not.
    fast, slow = line(TUNE, 0), line(TUNE, 0, beat=2.0)
    assert np.array_equal(fast.grams, slow.grams)
    assert ceiling.jaccard(fast.rhythm, slow.rhythm) == 0


def test_top_line_keeps_the_highest_note_of_each_onset() -> None:
    part = Part(
        0, 0, 0, "", *(np.array(x) for x in ([60, 64, 67, 62], [0, 0, 0, 480], [480] * 4)),
        np.full(4, 100), np.zeros(4, bool),
    )  # fmt: skip
    onsets, pitches = ceiling.top_line(part)
    assert onsets.tolist() == [0, 480] and pitches.tolist() == [67, 62]


def test_parts_match_the_part_that_plays_the_same_material() -> None:
    a = [line(TUNE, 4), line(BASS, 3)]  # Strings melody, Bass
    b = [line(BASS, 3, shift=12), line(TUNE, 7, shift=-3, beat=0.5)]  # re-keyed, Pipe melody
    assert sorted(ceiling.match_lines(a, b)) == [(0, 1, 1.0), (1, 0, 1.0)]


def test_a_doubled_line_matches_the_nearer_register_once() -> None:
    a = [line(TUNE, 6)]
    b = [line(TUNE, 4, shift=-24), line(TUNE, 7, shift=2)]  # strings low, pipe near
    assert ceiling.match_lines(a, b) == [(0, 1, 1.0)]


def test_short_lines_match_nothing() -> None:
    assert ceiling.match_lines([line(TUNE[:5], 0)], [line(TUNE[:5], 0)]) == []


def test_agreement_is_symmetric_and_macro_averages_the_families_present() -> None:
    m = ceiling.Match
    result = ceiling.agreement(
        [m((0, 0), (1, 1), 1, 1, 1), m((0, 6), (1, 1), 1, 1, 1), m((3, 3), (1, 1), 1, 1, 1)]
    )
    assert result["per_family"] == {"Piano": 0.6667, "Bass": 1.0, "Reed": 0.0}
    assert result["agree"] == 4 / 6
    assert abs(result["macro_f1"] - (2 / 3 + 1 + 0) / 3) < 1e-12


def test_agreement_by_bars_weighs_each_part_by_the_bars_it_plays() -> None:
    m = ceiling.Match
    result = ceiling.agreement(
        [m((0, 0), (2, 2), 1, 1, 1), m((0, 6), (6, 1), 1, 1, 1)], by_bars=True
    )
    # Piano: 4 of 10 bars predicted Piano; Reed's 1 bar predicted Piano.
    assert result["agree"] == 4 / 11
    assert result["per_family"]["Piano"] == round(2 * 4 / (10 + 5), 4)
