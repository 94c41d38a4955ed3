"""Contract v2 (live.inputs): each channel against a brute-force reading of its definition."""

from __future__ import annotations

import numpy as np
import pytest

from live.contract import WINDOW
from live.inputs import (
    DRUMS,
    ENSEMBLE,
    ONSET,
    SOUNDING,
    VELOCITY,
    Sources,
    window_inputs,
)
from live.windows import window_roll

STEP = 240  # ticks per eighth at 480 per quarter
T0, T1 = 4 * 1920, 6 * 1920  # bars 4-5 of 4/4


def sources(notes: list[tuple[int, int, int, int, int]], drum: list[bool]) -> Sources:
    """``notes``: (source, pitch, start, end, velocity)."""
    a = np.array(notes, np.int64).reshape(-1, 5)
    return Sources(a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4], np.array(drum, bool))


def random_sources(rng: np.random.Generator, n_sources: int = 4, n_notes: int = 300) -> Sources:
    notes = []
    for _ in range(n_notes):
        start = int(rng.integers(T0 - 2000, T1 + 500))
        notes.append(
            (
                int(rng.integers(0, n_sources)),
                int(rng.integers(20, 100)),
                start,
                start + int(rng.integers(0, 1500)),
                int(rng.integers(1, 128)),
            )
        )
    drum = [False] * n_sources
    drum[-1] = True
    return sources(notes, drum)


def reference(src: Sources, t0: int, t1: int, valid: int) -> np.ndarray:
    """Each cell from the definitions, one note at a time."""
    out = np.zeros((src.n, 5, 128, 16), np.int64)
    for s in range(src.n):
        mine = src.source == s
        roll = np.zeros((128, 16), np.uint8)
        window_roll(src.pitches[mine], src.starts[mine], src.ends[mine], t0, t1, STEP, roll)
        out[s, SOUNDING] = roll
    for i in range(len(src.source)):
        s, p, start, v = src.source[i], src.pitches[i], src.starts[i], src.velocities[i]
        if t0 <= start < t1:
            k = int((start - t0) // STEP)
            if k < valid:
                out[s, ONSET, p, k] = 1
                out[s, VELOCITY, p, k] = max(out[s, VELOCITY, p, k], v)
    for s in range(src.n):
        others = [o for o in range(src.n) if o != s and not src.drum[o]]
        out[s, ENSEMBLE] = out[others, SOUNDING].max(axis=0) if others else 0
        kits = [o for o in range(src.n) if src.drum[o]]
        out[s, DRUMS] = out[kits, ONSET].max(axis=0) if kits else 0
    return out


@pytest.mark.parametrize("seed", range(5))
def test_every_channel_matches_its_definition(seed: int) -> None:
    src = random_sources(np.random.default_rng(seed))
    got, valid = window_inputs(src, T0, T1, STEP)
    assert got.dtype == np.uint8 and got.shape == (src.n, 5, 128, 16) and valid == 16
    np.testing.assert_array_equal(got, reference(src, T0, T1, valid))


def test_three_four_fills_twelve_steps_in_every_channel() -> None:
    src = random_sources(np.random.default_rng(9))
    t1 = T0 + 2 * 1440  # two bars of 3/4
    got, valid = window_inputs(src, T0, t1, STEP)
    assert valid == 12 and not got[..., 12:].any() and got[:, ONSET].any()
    np.testing.assert_array_equal(got, reference(src, T0, t1, valid))


def test_held_notes_sound_without_an_onset_and_the_loudest_onset_wins() -> None:
    src = sources(
        [
            (0, 60, T0 - 100, T0 + 500, 90),  # held over the start: sounds, no onset
            (0, 64, T0 + 3 * STEP, T0 + 4 * STEP, 40),  # step 3
            (0, 64, T0 + 3 * STEP + 10, T0 + 4 * STEP, 100),  # same cell, louder
            (1, 36, T0, T0 + 2 * STEP, 127),  # another part: the ensemble
            (2, 38, T0 + 5 * STEP, T0 + 5 * STEP, 110),  # a snare hit: the drums
        ],
        [False, False, True],
    )
    x, _ = window_inputs(src, T0, T1, STEP)
    assert x[0, SOUNDING, 60, :3].all() and not x[0, ONSET, 60].any()
    assert x[0, ONSET, 64, 3] == 1 and x[0, VELOCITY, 64, 3] == 100
    assert x[0, ENSEMBLE, 36, :2].all() and not x[0, ENSEMBLE, 60].any()  # not its own notes
    assert x[1, ENSEMBLE, 60, 0] == 1 and x[1, ENSEMBLE, 64, 3] == 1
    assert not x[:, ENSEMBLE, 38].any()  # drums are not the ensemble...
    assert (x[:, DRUMS, 38, 5] == 1).all() and x[:, DRUMS].sum() == 3  # ...but every part's drums


def test_channel_zero_is_the_v1_roll() -> None:
    src = random_sources(np.random.default_rng(4))
    x, _ = window_inputs(src, T0, T1, STEP)
    for s in range(src.n):
        mine = src.source == s
        roll = np.zeros((128, 16), np.uint8)
        window_roll(src.pitches[mine], src.starts[mine], src.ends[mine], T0, T1, STEP, roll)
        np.testing.assert_array_equal(x[s, SOUNDING], roll)


def test_no_sources_is_no_input() -> None:
    x, valid = window_inputs(sources([], []), T0, T1, STEP)
    assert x.shape == (0, 5, WINDOW.n_pitches, WINDOW.n_steps) and valid == 16
