"""Shared fixtures: small MIDI songs and Slakh folders written by the tests themselves."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TIMGM = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")


@dataclass
class Track:
    """One track of a generated song: notes are (pitch, start_beat, length_beats, velocity)."""

    name: str
    program: int
    channel: int
    notes: Sequence[tuple[int, float, float, int]]
    controls: Sequence[tuple[float, int, int]] = field(default_factory=list)  # (beat, cc, value)


def write_song(
    path: Path,
    tracks: Sequence[Track],
    *,
    bpm: float = 120.0,
    meter: tuple[int, int] = (4, 4),
    tpb: int = 480,
    tempo_changes: Sequence[tuple[float, float]] = (),  # (beat, bpm)
) -> Path:
    """A type-1 MIDI file: a conductor track, then one track per ``Track``."""
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    conductor = [(0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))]
    conductor.append(
        (0, mido.MetaMessage("time_signature", numerator=meter[0], denominator=meter[1]))
    )
    for beat, new_bpm in tempo_changes:
        conductor.append(
            (round(beat * tpb), mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(new_bpm)))
        )
    mid.tracks.append(_track(conductor))
    for t in tracks:
        events = [(0, mido.MetaMessage("track_name", name=t.name))]
        events.append((0, mido.Message("program_change", channel=t.channel, program=t.program)))
        for beat, cc, value in t.controls:
            events.append(
                (
                    round(beat * tpb),
                    mido.Message("control_change", channel=t.channel, control=cc, value=value),
                )
            )
        for pitch, start, length, velocity in t.notes:
            on, off = round(start * tpb), round((start + length) * tpb)
            events.append(
                (on, mido.Message("note_on", channel=t.channel, note=pitch, velocity=velocity))
            )
            events.append((off, mido.Message("note_off", channel=t.channel, note=pitch)))
        mid.tracks.append(_track(events))
    path.parent.mkdir(parents=True, exist_ok=True)
    mid.save(path)
    return path


def _track(events: list[tuple[int, mido.Message]]) -> mido.MidiTrack:
    # note_off before note_on at the same tick, so repeated notes do not overlap
    events = sorted(events, key=lambda e: (e[0], 0 if e[1].type == "note_off" else 1))
    track = mido.MidiTrack()
    last = 0
    for tick, msg in events:
        track.append(msg.copy(time=tick - last))
        last = tick
    return track


def melody(bars: int, *, low: int = 60, step: float = 1.0, velocity: int = 90, seed: int = 0):
    """A simple part: one note per ``step`` beats for ``bars`` bars of 4/4."""
    rng = np.random.default_rng(seed)
    n = int(bars * 4 / step)
    return [(int(low + rng.integers(0, 12)), i * step, step * 0.9, velocity) for i in range(n)]


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


def write_slakh_track(
    folder: Path,
    stems: dict[str, dict],
    *,
    sample_rate: int = 16000,
    bars: int = 4,
    audio: str = "wav",
) -> Path:
    """A Slakh-layout track: metadata.yaml, MIDI/Snn.mid and a tone per stem (if rendered)."""
    (folder / "MIDI").mkdir(parents=True, exist_ok=True)
    (folder / "stems").mkdir(exist_ok=True)
    seconds = bars * 2.0 + 0.5  # 4/4 at 120 BPM
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    for i, (stem_id, info) in enumerate(stems.items()):
        program = int(info.get("program_num", 0))
        write_song(
            folder / "MIDI" / f"{stem_id}.mid",
            [
                Track(
                    stem_id,
                    program if program < 128 else 0,
                    9 if info.get("is_drum") else 0,
                    melody(bars, seed=i),
                )
            ],
        )
        if info.pop("_audio", True):
            y = 0.3 * np.sin(2 * np.pi * (220 + 50 * i) * t)
            soundfile.write(folder / "stems" / f"{stem_id}.{audio}", y, sample_rate)
    meta = {"UUID": folder.name, "audio_dir": "stems", "midi_dir": "MIDI", "stems": stems}
    (folder / "metadata.yaml").write_text(yaml.safe_dump(meta))
    return folder


def slakh_stem(
    inst_class: str, program: int, *, rendered: bool = True, drum: bool = False, audio: bool = True
) -> dict:
    return {
        "inst_class": inst_class,
        "program_num": program,
        "is_drum": drum,
        "audio_rendered": rendered,
        "plugin_name": "test.nkm",
        "_audio": audio,
    }
