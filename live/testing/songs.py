"""Songs for tests and benchmarks, written with mido: whole songs from :class:`Track` lists
(:func:`write_song`, :func:`melody`), files message by message (:func:`make_midi` with
:func:`on`, :func:`off`, :func:`meta`, ...), and the Debian demo corpus (:func:`demo_midi_files`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mido
import numpy as np

#: The General MIDI soundfont ``scripts/setup.sh`` installs (``timgm6mb-soundfont``).
TIMGM = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
#: The Debian demo corpus (``scripts/setup.sh``): the folders ``train.data.build.DEMO_DIRS``
#: trains on by default (a test in tests/train keeps the two lists equal).
DEMO_DIRS = (
    Path("/usr/share/games/openttd/baseset/openmsx"),  # openttd-openmsx
    Path("/usr/share/games/simutrans/music"),  # simutrans-data
    Path("/usr/share/planetblupi/music"),  # planetblupi-music-midi
)
#: Demo files whose key signatures plain mido refuses (simutrans-data).
KEY_SIGNATURE_DEMOS = (
    Path("/usr/share/games/simutrans/music/05-Boring-afternoon.mid"),
    Path("/usr/share/games/simutrans/music/30-On-the-waterfront.mid"),
)
#: Ticks per quarter note of :func:`make_midi`'s files unless told.
TPB = 480


@dataclass
class Track:
    """One track of a generated song: notes are (pitch, start_beat, length_beats, velocity)."""

    name: str
    program: int
    channel: int
    notes: Sequence[tuple[int, float, float, int]]
    controls: Sequence[tuple[float, int, int]] = field(default_factory=list)  # (beat, cc, value)
    bends: Sequence[tuple[float, int]] = field(default_factory=list)  # (beat, -8192 .. 8191)


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
        for beat, pitch in t.bends:
            bend = mido.Message("pitchwheel", channel=t.channel, pitch=pitch)
            events.append((round(beat * tpb), bend))
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


def melody(
    bars: int, *, low: int = 60, step: float = 1.0, velocity: int = 90, seed: int = 0
) -> list[tuple[int, float, float, int]]:
    """A simple part: one note per ``step`` beats for ``bars`` bars of 4/4."""
    rng = np.random.default_rng(seed)
    n = int(bars * 4 / step)
    return [(int(low + rng.integers(0, 12)), i * step, step * 0.9, velocity) for i in range(n)]


# ---------------------------------------------------------------------- message by message

#: A message at its absolute tick, as :func:`make_midi` takes them.
Event = tuple[int, mido.Message | mido.MetaMessage]


def on(tick: int, note: int, velocity: int = 80, channel: int = 0) -> Event:
    return tick, mido.Message("note_on", note=note, velocity=velocity, channel=channel)


def off(tick: int, note: int, channel: int = 0, *, as_note_on: bool = False) -> Event:
    """A note-off, or (``as_note_on``) the note-on with velocity 0 that means the same."""
    if as_note_on:
        return tick, mido.Message("note_on", note=note, velocity=0, channel=channel)
    return tick, mido.Message("note_off", note=note, velocity=64, channel=channel)


def program(tick: int, prog: int, channel: int = 0) -> Event:
    return tick, mido.Message("program_change", program=prog, channel=channel)


def cc(tick: int, control: int, value: int, channel: int = 0) -> Event:
    return tick, mido.Message("control_change", control=control, value=value, channel=channel)


def meta(tick: int, kind: str, **kwargs: Any) -> Event:
    return tick, mido.MetaMessage(kind, **kwargs)


def make_midi(
    tracks: Sequence[Sequence[Event]],
    *,
    tpb: int = TPB,
    end_ticks: Sequence[int | None] | None = None,
) -> mido.MidiFile:
    """A type-1 file of ``tracks``, each a list of (absolute tick, message) in stream order;
    track ``i`` ends at ``end_ticks[i]`` if given, else at its last message."""
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    for i, events in enumerate(tracks):
        track = mido.MidiTrack()
        last = 0
        for tick, msg in events:
            if tick < last:
                raise ValueError(f"track {i}: events must be in time order ({tick} < {last})")
            track.append(msg.copy(time=tick - last))
            last = tick
        end = end_ticks[i] if end_ticks is not None else None
        track.append(mido.MetaMessage("end_of_track", time=(last if end is None else end) - last))
        mid.tracks.append(track)
    return mid


def write_midi(path: Path, tracks: Sequence[Sequence[Event]], **kwargs: Any) -> Path:
    """:func:`make_midi`, saved to ``path``."""
    make_midi(tracks, **kwargs).save(path)
    return path


# ------------------------------------------------------------------------ the demo corpus


def demo_midi_files() -> list[Path]:
    """Every MIDI file of the installed demo corpus, sorted; empty if none is installed."""
    suffixes = {".mid", ".midi", ".kar", ".smf"}
    return sorted(
        p
        for d in DEMO_DIRS
        if d.is_dir()
        for p in d.rglob("*")
        if p.suffix.lower() in suffixes and p.is_file()
    )
