"""Fixtures of the train tests: FluidSynth, and a small MIDI collection to build data from."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from live.testing.songs import TIMGM, Track, melody, write_song


@pytest.fixture(scope="session")
def fluidsynth() -> str:
    """FluidSynth must be there in CI; on a developer machine without it, skip with why."""
    path = shutil.which("fluidsynth")
    if path is None or not TIMGM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must install fluidsynth and timgm6mb-soundfont (see scripts/setup.sh)")
        pytest.skip("needs fluidsynth and /usr/share/sounds/sf2/TimGM6mb.sf2 (scripts/setup.sh)")
    return path


@pytest.fixture
def song_folder(tmp_path: Path) -> Path:
    """A tiny MIDI collection: good songs, filtered tracks, and bad files."""
    folder = tmp_path / "midi"
    write_song(
        folder / "a" / "pop.mid",
        [
            Track("Piano", 0, 0, melody(8, seed=1)),
            Track("Bass", 33, 1, melody(8, low=36, seed=2)),
            Track("Drums", 0, 9, [(36, i, 0.5, 100) for i in range(32)]),
            Track("Melody_WA", 73, 2, melody(8, low=72, seed=3)),
            Track("Ghost", 40, 3, melody(8, seed=4, velocity=1)),
            Track("Muted", 65, 4, melody(8, seed=5), controls=[(0, 7, 0)]),
        ],
    )
    write_song(
        folder / "b" / "waltz.mid",
        [
            Track("Strings", 48, 0, melody(6, step=1.5, seed=6)),
            Track("Flute", 73, 1, melody(6, low=72, seed=7)),
        ],
        meter=(3, 4),
        bpm=90,
    )
    write_song(
        folder / "c.MID",
        [
            Track("Organ", 16, 0, melody(8, seed=8)),
            Track("Trumpet", 56, 1, melody(8, seed=9)),
            Track("Sax", 65, 2, melody(8, seed=10)),
            Track("Guitar", 25, 3, melody(8, seed=11)),
        ],
        tempo_changes=[(16, 140)],
    )
    (folder / "empty.mid").write_bytes(b"")
    (folder / "garbage.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage" + bytes(range(256)))
    good = (folder / "a" / "pop.mid").read_bytes()
    (folder / "truncated.mid").write_bytes(good[: len(good) // 3])
    write_song(folder / "slow.mid", [Track("Piano", 0, 0, melody(2))], bpm=10)
    write_song(
        folder / "drums_only.mid", [Track("Kit", 0, 9, [(36, i, 0.5, 100) for i in range(8)])]
    )
    shutil.copyfile(folder / "c.MID", folder / "copy_of_c.mid")
    return folder
