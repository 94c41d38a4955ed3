"""Cutting parts into 2-bar windows on the bar grid: cut_windows and window_bounds."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from live.contract import WINDOW, quantize
from live.midifile import BarGrid, Part
from live.windows import Window, cut_windows, window_bounds

TPB = 480
STEP = TPB // 2  # ticks per eighth note
BAR_44 = 4 * TPB


def make_part(notes: list[tuple[int, int, int]], *, channel: int = 0, program: int = 0) -> Part:
    """Part from (pitch, start tick, end tick) triples."""
    notes = sorted(notes, key=lambda n: n[1])
    n = len(notes)
    return Part(
        track=0,
        channel=channel,
        program=program,
        name="test",
        pitches=np.array([p for p, _, _ in notes], np.int64).reshape(n),
        starts=np.array([s for _, s, _ in notes], np.int64).reshape(n),
        ends=np.array([e for _, _, e in notes], np.int64).reshape(n),
        velocities=np.full(n, 80, np.int64),
        muted=np.zeros(n, bool),
    )


def grid(meters: list[tuple[int, int, int]], end_tick: int, tpb: int = TPB) -> BarGrid:
    return BarGrid.from_meters(tpb, meters, end_tick)


def marked(window: Window, pitch: int) -> list[int]:
    return np.flatnonzero(window.roll[pitch]).tolist()


def by_bar(windows) -> dict[int, Window]:
    return {w.bar: w for w in windows}


# ------------------------------------------------------------------------------ 4/4 basics


def test_eighth_note_at_tick_zero_marks_step_zero_only():
    part = make_part([(60, 0, STEP)])
    (w, *_) = list(cut_windows(part, grid([], 4 * BAR_44), TPB))
    assert (w.bar, w.start_tick, w.end_tick, w.valid_steps) == (0, 0, 2 * BAR_44, 16)
    assert marked(w, 60) == [0]
    assert w.roll.sum() == 1
    assert w.roll.shape == (128, 16) and w.roll.dtype == np.uint8


def test_steps_follow_the_eighth_note_grid():
    # A quarter note on beat 2 of bar 2 covers eighths 10 and 11 of a window at bar 0.
    part = make_part([(64, BAR_44 + TPB, BAR_44 + 2 * TPB)])
    w = by_bar(cut_windows(part, grid([], 2 * BAR_44), TPB))[0]
    assert marked(w, 64) == [10, 11]


def test_note_starting_off_grid_marks_every_step_it_touches():
    part = make_part([(50, STEP + 1, 2 * STEP + 1)])
    w = by_bar(cut_windows(part, grid([], BAR_44), TPB))[0]
    assert marked(w, 50) == [1, 2]


def test_held_note_across_bar_line_is_in_both_overlapping_windows():
    # Bars 0..3; the note runs from the last eighth of bar 1 into bar 2.
    start, end = 2 * BAR_44 - STEP, 2 * BAR_44 + 2 * STEP
    part = make_part([(48, start, end)])
    windows = by_bar(cut_windows(part, grid([], 4 * BAR_44 - 1), TPB, hop_bars=1))
    assert sorted(windows) == [0, 1, 2]
    assert marked(windows[0], 48) == [15]  # bars 0-1
    assert marked(windows[1], 48) == [7, 8, 9]  # bars 1-2
    assert marked(windows[2], 48) == [0, 1]  # bars 2-3: the held tail


def test_note_ending_on_the_window_start_is_not_in_that_window():
    part = make_part([(60, 0, BAR_44)])  # exactly bar 0
    windows = by_bar(cut_windows(part, grid([], 3 * BAR_44), TPB))
    assert 1 not in windows
    assert marked(windows[0], 60) == list(range(8))


def test_zero_length_note_on_a_bar_line_marks_one_onset():
    part = make_part([(70, 2 * BAR_44, 2 * BAR_44)])
    windows = by_bar(cut_windows(part, grid([], 3 * BAR_44), TPB))
    assert marked(windows[1], 70) == [8]
    assert marked(windows[2], 70) == [0]
    assert 0 not in windows  # the window [bar 0, bar 2) ends at its tick


def test_hop_two_bars_gives_non_overlapping_windows():
    part = make_part([(60, i * BAR_44, i * BAR_44 + STEP) for i in range(8)])
    bars = grid([], 8 * BAR_44 - 1)
    windows = list(cut_windows(part, bars, TPB, hop_bars=2))
    assert [w.bar for w in windows] == [0, 2, 4, 6]
    for a, b in itertools.pairwise(windows):
        assert a.end_tick == b.start_tick
    assert all(marked(w, 60) == [0, 8] for w in windows)


def test_hop_one_windows_overlap_by_one_bar():
    bars = grid([], 4 * BAR_44 - 1)
    bounds = list(window_bounds(bars, hop_bars=1))
    assert bounds == [(0, 0, 2 * BAR_44), (1, BAR_44, 3 * BAR_44), (2, 2 * BAR_44, 4 * BAR_44)]


@pytest.mark.parametrize("hop", [0, -1])
def test_hop_below_one_raises(hop):
    with pytest.raises(ValueError, match="hop_bars"):
        list(window_bounds(grid([], BAR_44), hop_bars=hop))


def test_window_bounds_are_whole_windows_on_the_grid():
    bars = grid([(0, 4, 4), (3 * BAR_44, 3, 4)], 10_000)
    starts = bars.starts.tolist()
    bounds = list(window_bounds(bars))
    assert len(bounds) == len(starts) - 2
    for bar, t0, t1 in bounds:
        assert (t0, t1) == (starts[bar], starts[bar + 2])


def test_empty_windows_are_dropped_unless_keep_empty():
    part = make_part([(60, 0, STEP), (62, 5 * BAR_44, 5 * BAR_44 + STEP)])
    bars = grid([], 6 * BAR_44 - 1)  # bar lines 0..6: windows at bars 0..4
    kept = list(cut_windows(part, bars, TPB, hop_bars=1))
    assert [w.bar for w in kept] == [0, 4]
    everything = list(cut_windows(part, bars, TPB, hop_bars=1, keep_empty=True))
    assert [w.bar for w in everything] == list(range(len(bars) - 2))
    empty = [w for w in everything if w.bar not in {0, 4}]
    assert empty and all(not w.roll.any() and w.valid_steps == 16 for w in empty)


def test_part_without_notes_gives_no_windows():
    part = make_part([])
    assert list(cut_windows(part, grid([], 4 * BAR_44), TPB)) == []
    assert len(list(cut_windows(part, grid([], 4 * BAR_44), TPB, keep_empty=True))) > 0


def test_every_note_lands_in_some_window():
    # The grid runs past the end, so even the last note of a song is windowed.
    notes = [(60 + i, i * 700, i * 700 + 300) for i in range(12)]
    part = make_part(notes)
    end = max(e for _, _, e in notes)
    windows = list(cut_windows(part, grid([], end), TPB))
    for p, s, _ in notes:
        assert any(w.start_tick <= s < w.end_tick and w.roll[p].any() for w in windows), p


# ------------------------------------------------------------------------------ other meters


def test_three_four_windows_have_12_valid_steps_and_empty_padding():
    bar = 3 * TPB
    part = make_part([(60, 0, 4 * bar), (61, bar - STEP, bar + STEP)])
    windows = list(cut_windows(part, grid([(0, 3, 4)], 4 * bar), TPB))
    assert windows
    for w in windows:
        assert w.valid_steps == 12
        assert w.end_tick - w.start_tick == 2 * bar
        assert not w.roll[:, 12:].any()
    first = by_bar(windows)[0]
    assert marked(first, 60) == list(range(12))
    assert marked(first, 61) == [5, 6]


def test_six_eight_windows_have_12_valid_steps():
    bar = 3 * TPB
    part = make_part([(60, 0, 10 * bar)])
    windows = list(cut_windows(part, grid([(0, 6, 8)], 4 * bar), TPB))
    assert windows and {w.valid_steps for w in windows} == {12}


def test_seven_four_windows_are_cropped_to_16_steps():
    bar = 7 * TPB  # 14 eighths; two bars are 28
    part = make_part([(60, 0, 4 * bar), (62, 20 * STEP, 21 * STEP)])
    windows = by_bar(cut_windows(part, grid([(0, 7, 4)], 4 * bar), TPB))
    w = windows[0]
    assert w.valid_steps == 16
    assert w.end_tick - w.start_tick == 2 * bar
    assert marked(w, 60) == list(range(16))
    assert not w.roll[62].any()  # step 20 is past the crop


def test_meter_change_inside_window_gives_14_valid_steps():
    # One bar of 3/4 (6 eighths), then 4/4 (8 eighths).
    meters = [(0, 3, 4), (3 * TPB, 4, 4)]
    part = make_part([(60, 0, 100 * STEP), (72, 13 * STEP, 14 * STEP)])
    bars = grid(meters, 3 * TPB + 3 * BAR_44)
    windows = by_bar(cut_windows(part, bars, TPB))
    w = windows[0]
    assert (w.start_tick, w.end_tick) == (0, 3 * TPB + BAR_44)
    assert w.valid_steps == 14
    assert marked(w, 60) == list(range(14))
    assert marked(w, 72) == [13]
    assert not w.roll[:, 14:].any()
    assert windows[1].valid_steps == 16  # bars 1-2 are both 4/4


def test_odd_ticks_per_beat():
    tpb = 97  # an eighth is 48.5 ticks
    part = make_part([(60, 0, 49), (61, 97 * 4, 97 * 4)])
    w = by_bar(cut_windows(part, grid([], 8 * 97, tpb=tpb), tpb))[0]
    assert marked(w, 60) == [0, 1]  # 49 ticks is just past one eighth
    assert marked(w, 61) == [8]


# ------------------------------------------------------------------------------ same as quantize


@pytest.mark.parametrize(
    ("meters", "tpb"),
    [([], 480), ([(0, 3, 4)], 480), ([(0, 4, 4), (1000, 5, 8)], 480), ([], 96), ([(0, 7, 4)], 120)],
)
def test_window_roll_equals_quantize_by_hand(meters, tpb):
    rng = np.random.default_rng(7)
    n = 200
    starts = rng.integers(0, 40 * tpb, n)
    lengths = np.where(rng.random(n) < 0.1, 0, rng.integers(1, 6 * tpb, n))
    pitches = rng.integers(0, 128, n)
    notes = list(zip(pitches.tolist(), starts.tolist(), (starts + lengths).tolist(), strict=True))
    part = make_part(notes)
    bars = grid(meters, int((starts + lengths).max()), tpb=tpb)
    windows = list(cut_windows(part, bars, tpb, keep_empty=True))
    assert len(windows) == len(bars) - 2
    step = tpb / 2
    for w in windows:
        sel = [(p, s, e) for p, s, e in notes if s < w.end_tick and e >= w.start_tick]
        want = quantize(
            [p for p, _, _ in sel],
            [(s - w.start_tick) / step for _, s, _ in sel],
            [(e - w.start_tick) / step for _, _, e in sel],
            valid_steps=WINDOW.valid_steps((w.end_tick - w.start_tick) / step),
        )
        np.testing.assert_array_equal(w.roll, want.astype(np.uint8))
        if (w.end_tick - w.start_tick) % step and w.valid_steps < WINDOW.n_steps:
            # The last column is partly past the window end: notes of the next bar that
            # start there are not this window's, so feeding every note would differ.
            continue
        # Fed every note of the song instead: far-away notes must not matter.
        everything = quantize(
            pitches,
            (starts - w.start_tick) / step,
            (starts + lengths - w.start_tick) / step,
            valid_steps=w.valid_steps,
        )
        np.testing.assert_array_equal(w.roll, everything.astype(np.uint8))
