"""The window contract: ``quantize``, ``WindowSpec`` and ``WINDOW``."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from live.contract import WINDOW, WindowSpec, quantize
from live.errors import ContractError, LiveError

N_PITCHES = 128
N_STEPS = 16


# ------------------------------------------------------------------------------ reference


def reference_roll(pitches, starts, ends, valid_steps=N_STEPS):
    """Brute force: cell (p, k) is 1 iff a note of pitch p overlaps step [k, k+1)."""
    roll = np.zeros((N_PITCHES, N_STEPS), np.float32)
    n_cols = min(max(valid_steps, 0), N_STEPS)
    for p, s, e in zip(pitches, starts, ends, strict=True):
        for k in range(n_cols):
            hit = math.floor(s) == k if e == s else (s < k + 1 and e > k)
            if hit:
                roll[int(p), k] = 1
    return roll


# ------------------------------------------------------------------------------ strategies

# Times anywhere: fractional, negative, huge and out of the window.
any_time = st.one_of(
    st.floats(min_value=-4.0, max_value=20.0, allow_nan=False),
    st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
    st.sampled_from([-1e12, -1.0, -0.5, 0.0, 0.5, 1.0, 15.0, 15.5, 16.0, 16.5, 17.0, 1e12]),
    st.integers(min_value=-3, max_value=19).map(float),
)


@st.composite
def notes(draw, time=any_time, max_size=12):
    """(pitches, starts, ends); about a fifth of the notes are zero-length."""
    n = draw(st.integers(min_value=0, max_value=max_size))
    pitches, starts, ends = [], [], []
    for _ in range(n):
        p = draw(st.integers(min_value=0, max_value=127))
        a = draw(time)
        b = a if draw(st.integers(0, 4)) == 0 else draw(time)
        s, e = min(a, b), max(a, b)
        pitches.append(p)
        starts.append(s)
        ends.append(e)
    return pitches, starts, ends


# Dyadic times (multiples of 1/8) so that adding a whole number of steps is exact in float.
dyadic_time = st.integers(min_value=-8 * 8, max_value=24 * 8).map(lambda i: i / 8)


# ------------------------------------------------------------------------------ unit tests


def test_empty_input_gives_all_zero_float32_window():
    roll = quantize([], [], [])
    assert roll.shape == (N_PITCHES, N_STEPS)
    assert roll.dtype == np.float32
    assert not roll.any()


def test_note_marks_exactly_the_steps_it_overlaps():
    roll = quantize([60], [2.0], [5.0])
    assert np.flatnonzero(roll[60]).tolist() == [2, 3, 4]
    assert roll.sum() == 3


def test_fractional_note_marks_every_partially_overlapped_step():
    roll = quantize([40], [2.25], [4.5])
    assert np.flatnonzero(roll[40]).tolist() == [2, 3, 4]


def test_end_on_step_boundary_does_not_mark_the_next_step():
    roll = quantize([40], [0.0], [1.0])
    assert np.flatnonzero(roll[40]).tolist() == [0]


def test_zero_length_note_marks_its_onset_step_only():
    roll = quantize([72, 73], [3.0, 7.5], [3.0, 7.5])
    assert np.flatnonzero(roll[72]).tolist() == [3]
    assert np.flatnonzero(roll[73]).tolist() == [7]
    assert roll.sum() == 2


def test_zero_length_notes_outside_window_mark_nothing():
    roll = quantize([10, 11, 12], [-0.5, 16.0, 1e12], [-0.5, 16.0, 1e12])
    assert not roll.any()


def test_notes_outside_window_are_clipped():
    roll = quantize([50, 51, 52, 53], [-5.0, 14.5, -1e12, 16.0], [0.5, 30.0, 1e12, 20.0])
    assert np.flatnonzero(roll[50]).tolist() == [0]
    assert np.flatnonzero(roll[51]).tolist() == [14, 15]
    assert np.flatnonzero(roll[52]).tolist() == list(range(16))
    assert not roll[53].any()


def test_note_ending_exactly_at_window_start_marks_nothing():
    roll = quantize([60], [-3.0], [0.0])
    assert not roll.any()


def test_velocity_is_not_an_input_and_overlaps_stay_binary():
    roll = quantize([60, 60, 60], [0.0, 1.0, 1.5], [4.0, 3.0, 2.0])
    assert set(np.unique(roll).tolist()) <= {0.0, 1.0}
    assert np.flatnonzero(roll[60]).tolist() == [0, 1, 2, 3]


def test_numpy_and_list_inputs_agree():
    p, s, e = [1, 64, 127], [0.0, 3.5, 15.9], [2.0, 3.5, 40.0]
    a = quantize(p, s, e)
    b = quantize(np.array(p, np.uint8), np.array(s, np.float32), np.array(e))
    np.testing.assert_array_equal(a, b)


def test_whole_float_pitches_are_accepted():
    np.testing.assert_array_equal(quantize([60.0], [0.0], [1.0]), quantize([60], [0.0], [1.0]))


def test_valid_steps_12_leaves_columns_12_to_15_zero():
    roll = quantize([60, 61], [0.0, 11.5], [100.0, 11.5], valid_steps=12)
    assert roll[60, :12].all()
    assert not roll[:, 12:].any()
    assert np.flatnonzero(roll[61]).tolist() == [11]


def test_valid_steps_zero_gives_empty_window():
    assert not quantize([60], [0.0], [16.0], valid_steps=0).any()


def test_zero_length_note_past_valid_steps_marks_nothing():
    roll = quantize([60], [13.0], [13.0], valid_steps=12)
    assert not roll.any()


def test_out_fills_preallocated_uint8_array_in_place():
    buf = np.full((4, N_PITCHES, N_STEPS), 7, np.uint8)
    row = buf[2]
    got = quantize([60], [1.0], [3.0], out=row)
    assert got is row
    assert got.dtype == np.uint8
    assert np.flatnonzero(buf[2, 60]).tolist() == [1, 2]
    assert buf[2].sum() == 2  # stale 7s were cleared
    assert (buf[[0, 1, 3]] == 7).all()  # neighbours untouched


def test_out_is_cleared_for_empty_input():
    out = np.ones((N_PITCHES, N_STEPS), np.float64)
    got = quantize([], [], [], out=out)
    assert got is out
    assert not out.any()


def test_out_with_wrong_shape_raises_contract_error():
    with pytest.raises(ContractError, match="shape"):
        quantize([60], [0.0], [1.0], out=np.zeros((128, 12), np.uint8))


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("bad", [-1, 128, 1000, -128])
def test_pitch_outside_midi_range_raises_with_range_in_message(bad):
    with pytest.raises(ContractError, match="0-127") as info:
        quantize([60, bad], [0.0, 1.0], [1.0, 2.0])
    assert str(bad) in str(info.value)


@pytest.mark.parametrize("bad", [60.5, 0.1, float("nan")])
def test_non_integer_pitch_raises(bad):
    with pytest.raises(ContractError, match="0-127"):
        quantize([bad], [0.0], [1.0])


def test_non_numeric_pitch_raises():
    with pytest.raises(ContractError, match="whole MIDI note numbers"):
        quantize(["C4"], [0.0], [1.0])


@pytest.mark.parametrize(
    ("starts", "ends"),
    [
        ([float("nan")], [1.0]),
        ([0.0], [float("nan")]),
        ([0.0], [float("inf")]),
        ([float("-inf")], [1.0]),
    ],
)
def test_non_finite_times_raise(starts, ends):
    with pytest.raises(ContractError, match="finite"):
        quantize([60], starts, ends)


def test_end_before_start_raises():
    with pytest.raises(ContractError, match="end < start"):
        quantize([60, 61], [0.0, 5.0], [1.0, 4.0])


@pytest.mark.parametrize(
    ("pitches", "starts", "ends"),
    [
        ([60, 61], [0.0], [1.0]),
        ([60], [0.0, 1.0], [1.0, 2.0]),
        ([60], [0.0], [1.0, 2.0]),
        ([], [0.0], []),
        ([[60]], [[0.0]], [[1.0]]),
    ],
)
def test_mismatched_or_non_1d_inputs_raise(pitches, starts, ends):
    with pytest.raises(ContractError, match="equal length"):
        quantize(pitches, starts, ends)


def test_contract_error_is_a_value_error_and_live_error():
    with pytest.raises(ValueError):
        quantize([128], [0.0], [1.0])
    with pytest.raises(LiveError):
        quantize([128], [0.0], [1.0])


# ------------------------------------------------------------------------------ properties


@settings(max_examples=200, deadline=None)
@given(notes(), st.one_of(st.none(), st.integers(min_value=-2, max_value=20)))
def test_quantize_is_binary_and_matches_brute_force_reference(data, valid_steps):
    pitches, starts, ends = data
    got = quantize(pitches, starts, ends, valid_steps=valid_steps)
    assert got.shape == (N_PITCHES, N_STEPS) == (WINDOW.n_pitches, WINDOW.n_steps)
    assert got.dtype == np.float32
    assert np.isin(got, [0.0, 1.0]).all()
    want = reference_roll(pitches, starts, ends, N_STEPS if valid_steps is None else valid_steps)
    np.testing.assert_array_equal(got, want)


@settings(max_examples=100, deadline=None)
@given(notes(time=dyadic_time), st.integers(min_value=-15, max_value=15))
def test_shifting_notes_by_whole_steps_shifts_columns(data, k):
    pitches, starts, ends = data
    base = quantize(pitches, starts, ends)
    shifted = quantize(pitches, [s + k for s in starts], [e + k for e in ends])
    # Column j of the original is column j + k of the shifted window, where both exist.
    if k >= 0:
        np.testing.assert_array_equal(shifted[:, k:], base[:, : N_STEPS - k])
    else:
        np.testing.assert_array_equal(shifted[:, : N_STEPS + k], base[:, -k:])


@settings(max_examples=100, deadline=None)
@given(st.data(), st.integers(min_value=0, max_value=12))
def test_shift_of_notes_inside_window_equals_rolled_columns(data, k):
    # Notes that stay inside [0, 16) after the shift: np.roll must not wrap anything.
    inside = st.integers(min_value=0, max_value=8 * (N_STEPS - k)).map(lambda i: i / 8)
    pitches, starts, ends = data.draw(notes(time=inside))
    assume(all(math.floor(s) < N_STEPS - k for s in starts))
    base = quantize(pitches, starts, ends)
    shifted = quantize(pitches, [s + k for s in starts], [e + k for e in ends])
    rolled = np.roll(base, k, axis=1)
    rolled[:, :k] = 0
    assert not base[:, N_STEPS - k :].any()  # nothing wrapped
    np.testing.assert_array_equal(shifted, rolled)


@settings(max_examples=100, deadline=None)
@given(notes())
def test_every_marked_cell_is_overlapped_by_a_note_and_vice_versa(data):
    pitches, starts, ends = data
    roll = quantize(pitches, starts, ends)
    for p in range(N_PITCHES):
        mine = [(s, e) for q, s, e in zip(pitches, starts, ends, strict=True) if q == p]
        for k in np.flatnonzero(roll[p]):
            assert any((s < k + 1 and e > k) or (s == e and math.floor(s) == k) for s, e in mine)
    for p, s, e in zip(pitches, starts, ends, strict=True):
        if s == e:
            if 0 <= s < N_STEPS:
                assert roll[p, math.floor(s)] == 1
        else:
            lo, hi = max(s, 0.0), min(e, float(N_STEPS))
            if lo < hi:
                k0, k1 = math.floor(lo), math.ceil(hi)
                assert roll[p, k0:k1].all()


@settings(max_examples=50, deadline=None)
@given(notes(), st.integers(min_value=0, max_value=16))
def test_valid_steps_only_truncates_columns(data, valid):
    full = quantize(*data)
    cut = quantize(*data, valid_steps=valid)
    np.testing.assert_array_equal(cut[:, :valid], full[:, :valid])
    assert not cut[:, valid:].any()


@settings(max_examples=50, deadline=None)
@given(notes())
def test_out_matches_default_output(data):
    out = np.full((N_PITCHES, N_STEPS), 9, np.uint8)
    got = quantize(*data, out=out)
    assert got is out
    np.testing.assert_array_equal(out.astype(np.float32), quantize(*data))


@settings(max_examples=50, deadline=None)
@given(notes(), st.randoms(use_true_random=False))
def test_note_order_does_not_matter(data, rnd):
    pitches, starts, ends = data
    order = list(range(len(pitches)))
    rnd.shuffle(order)
    np.testing.assert_array_equal(
        quantize(pitches, starts, ends),
        quantize([pitches[i] for i in order], [starts[i] for i in order], [ends[i] for i in order]),
    )


# ------------------------------------------------------------------------------ WindowSpec


def test_window_defaults():
    assert (WINDOW.n_pitches, WINDOW.n_steps) == (128, 16)
    assert WINDOW.bars == 2
    assert WINDOW.steps_per_quarter == 2
    assert WindowSpec() == WINDOW


@pytest.mark.parametrize(
    ("num", "den", "per_bar", "valid"),
    [
        (4, 4, 8, 16),
        (3, 4, 6, 12),
        (6, 8, 6, 12),
        (2, 4, 4, 8),
        (2, 2, 8, 16),
        (5, 4, 10, 16),
        (7, 4, 14, 16),
        (12, 8, 12, 16),
        (7, 8, 7, 14),
    ],
)
def test_steps_per_bar_and_valid_steps_of_two_bars(num, den, per_bar, valid):
    assert WINDOW.steps_per_bar(num, den) == per_bar
    assert WINDOW.valid_steps(WINDOW.bars * WINDOW.steps_per_bar(num, den)) == valid


@pytest.mark.parametrize(
    ("steps", "valid"),
    [(0.0, 0), (-3.0, 0), (0.5, 1), (11.0, 11), (11.2, 12), (12.0, 12), (16.0, 16), (1e9, 16)],
)
def test_valid_steps_rounds_partial_steps_up_and_crops(steps, valid):
    assert WINDOW.valid_steps(steps) == valid


def test_valid_steps_tolerates_float_noise():
    # 12 steps computed through ticks with rounding noise must stay 12, not 13.
    assert WINDOW.valid_steps(12 + 1e-12) == 12
    assert WINDOW.valid_steps(1440 * 2 / 240 * (1 + 1e-15)) == 12
