"""In-process FluidSynth: a file sounds the same whatever its worker rendered before it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from live.testing.songs import TIMGM, Track, melody, write_song
from train.data import fluid
from train.data.render import render


@pytest.fixture
def songs(tmp_path: Path, fluidsynth: str) -> tuple[Path, Path]:
    if fluid.library() is None:
        pytest.skip("libfluidsynth not loadable: the program renders, one process per file")
    a = write_song(tmp_path / "a.mid", [Track("flute", 73, 0, melody(4, low=72, step=0.5))])
    b = write_song(
        tmp_path / "b.mid",
        [
            Track("strings", 48, 0, melody(3, low=55, step=1.5)),
            Track("bass", 33, 1, melody(3, low=36)),
        ],
        bpm=97,
    )
    return a, b


def test_a_file_renders_the_same_after_another(songs: tuple[Path, Path], monkeypatch) -> None:
    monkeypatch.delenv("KDLIVE_FLUIDSYNTH", raising=False)
    a, b = songs
    first = render(a, TIMGM)
    assert np.abs(first).max() > 0.01  # it sounds
    render(b, TIMGM)  # the worker's synth has played something else since
    again = render(a, TIMGM)
    np.testing.assert_array_equal(again, first)


def test_a_synth_that_never_played_renders_it_so(songs: tuple[Path, Path]) -> None:
    a, b = songs
    used = fluid.Synth(TIMGM, sample_rate=22050, gain=0.5)
    used.render(b)
    fresh = fluid.Synth(TIMGM, sample_rate=22050, gain=0.5)
    try:
        np.testing.assert_array_equal(used.render(a), fresh.render(a))
    finally:
        used.close()
        fresh.close()
