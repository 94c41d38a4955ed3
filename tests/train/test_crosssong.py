"""experiments/crosssong.py: a part's line from its onsets, its grams, and the nearest part of
another song, with and without its register."""

from __future__ import annotations

import numpy as np

from tests.train.experiments import load

crosssong = load("crosssong")

TUNE = [60, 62, 64, 65, 67, 65, 64, 62, 60, 67, 72, 71, 69, 67, 65, 64]
OTHER = [60, 60, 72, 60, 61, 73, 48, 50, 62, 70, 58, 46, 57, 69, 47, 59]


def onsets(parts: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(part, step, pitch)`` of each part's line, one note per step, in shuffled order."""
    part = np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)])
    step = np.concatenate([np.arange(len(p)) for p in parts])
    pitch = np.concatenate([np.asarray(p) for p in parts])
    order = np.random.default_rng(0).permutation(len(part))
    return part[order], step[order], pitch[order]


def test_grams_ignore_transposition_and_read_the_top_note() -> None:
    part, step, pitch = onsets([TUNE, [p - 7 for p in TUNE], OTHER])
    # A chord under the first tune's every note: the line is still its top note.
    part = np.r_[part, np.zeros(len(TUNE), int)]
    step = np.r_[step, np.arange(len(TUNE))]
    pitch = np.r_[pitch, np.array(TUNE) - 12]
    grams, register = crosssong.gram_sets(part, step, pitch, 3)
    a, b, c = (set(grams[i].indices) for i in range(3))
    assert a == b and len(a) >= crosssong.MIN_GRAMS
    assert not a & c
    assert register[0] == np.median(TUNE) and register[1] == np.median(TUNE) - 7


def test_the_nearest_part_and_its_register() -> None:
    part, step, pitch = onsets([TUNE, TUNE, [p - 24 for p in TUNE], OTHER])
    grams, register = crosssong.gram_sets(part, step, pitch, 4)
    q, ref = grams[[0]], grams[[2, 3]]
    best, score = crosssong.nearest(q, ref)
    assert best[0] == 0 and score[0] == 1.0  # two octaves down, the same line
    best, score = crosssong.nearest(q, ref, (register[[0]], register[[2, 3]]))
    assert score[0] < 0.2  # not at its register: only the other line is left
    best, score = crosssong.nearest(q, grams[[3, 1]], (register[[0]], register[[3, 1]]))
    assert best[0] == 1 and score[0] == 1.0


def test_scores_count_agreement_per_threshold() -> None:
    y = np.array([0, 0, 1, 1])
    guess = np.array([0, 1, 1, 1])
    out = crosssong.scores(y, guess, np.array([0.9, 0.1, 0.9, 0.6]), np.ones(4, int), "line")
    assert out["0.0"]["parts"] == 4 and out["0.0"]["agree"] == 0.75
    assert out["0.5"]["parts"] == 3 and out["0.5"]["agree"] == 1.0
    assert "0.9" in out and out["0.9"]["parts"] == 2


def test_rhythmic_grams_tell_the_same_line_in_another_rhythm() -> None:
    part, step, pitch = onsets([TUNE, TUNE])
    step = np.where(part == 1, step * 2, step)  # the second part: the line at half speed
    plain, _ = crosssong.gram_sets(part, step, pitch, 2)
    timed, _ = crosssong.gram_sets(part, step, pitch, 2, rhythm=True)
    assert set(plain[0].indices) == set(plain[1].indices)
    assert not set(timed[0].indices) & set(timed[1].indices)
    assert len(timed[0].indices) == len(plain[0].indices)
