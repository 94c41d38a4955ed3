"""`kdlive replay`: a MIDI file through the daemon's engine and model, with no ports.

The file's note events (and, for a contract-3 student, its controller events:
:mod:`live.controls`) are merged in time order and fed to :class:`live.engine.WindowEngine`
at their tick positions, with bar lines from the file's time signatures: the daemon's buffer
code with the file's tempo map standing in for MIDI clock. Each window that closes is batched
with the others closing on the same bar line, as live.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np
import numpy.typing as npt

from live.channels import PITCHED
from live.controls import BEND, CC_STREAM, bend_value
from live.engine import ClosedWindow, GridBars, WindowEngine
from live.midifile import load_midi, read_song

NOTE_ON, NOTE_OFF, TRACK_END, CONTROL = 1, 0, 2, 3
#: ``(tick, track, index in the track, kind, channel 1-16, pitch or -1, velocity)``; a
#: CONTROL's pitch is its stream (:data:`live.controls.STREAMS`) and its velocity the value
Event = tuple[int, int, int, int, int, int, int]


@dataclass
class ReplayWindow:
    """A window of one channel, bars ``[bar, bar + 2)``, with its own copy of the input
    (contract 2; ``roll`` is its channel 0, contract 1's input)."""

    channel: int
    bar: int
    start_tick: int
    end_tick: int
    inputs: npt.NDArray[np.uint8]

    @property
    def roll(self) -> npt.NDArray[np.uint8]:
        return self.inputs[0]


def file_events(midi: mido.MidiFile, *, controls: bool = False) -> list[Event]:
    """``(tick, track, index, kind, channel 1-16, pitch, velocity)`` of every note event (and
    with ``controls`` every tracked controller event), in file order within a track and tick
    order across tracks; each track's end releases its notes."""
    events: list[Event] = []
    for t, track in enumerate(midi.tracks):
        tick = 0
        channels: set[int] = set()
        for i, msg in enumerate(track):
            tick += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                events.append((tick, t, i, NOTE_ON, msg.channel + 1, msg.note, msg.velocity))
                channels.add(msg.channel + 1)
            elif msg.type in ("note_on", "note_off"):
                events.append((tick, t, i, NOTE_OFF, msg.channel + 1, msg.note, 0))
            elif controls and msg.type == "control_change" and msg.control in CC_STREAM:
                stream = CC_STREAM[msg.control]
                events.append((tick, t, i, CONTROL, msg.channel + 1, stream, msg.value))
            elif controls and msg.type == "pitchwheel":
                events.append((tick, t, i, CONTROL, msg.channel + 1, BEND, bend_value(msg.pitch)))
        for c in sorted(channels):
            events.append((tick, t, len(track), TRACK_END, c, -1, 0))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    return events


def replay_windows(
    path: Path | str,
    *,
    hop_bars: int = 1,
    channels: Iterable[int] = PITCHED,
    controls: bool = False,
) -> Iterator[list[ReplayWindow]]:
    """The windows of a file, one list per bar line where windows close (a batch); with
    ``controls``, contract 3's (the channels' controllers in them). The file is read now (a
    bad file raises :class:`live.errors.MidiFileError` here), windows lazily."""
    midi = load_midi(path)
    song = read_song(midi)
    engine = WindowEngine(
        GridBars(song.bars),
        ticks_per_quarter=song.ticks_per_beat,
        hop_bars=hop_bars,
        channels=channels,
        max_note_bars=0,
        controls=controls,
    )
    return _run(engine, file_events(midi, controls=controls), int(song.bars.starts[-1]))


def _run(engine: WindowEngine, events: list[Event], last: int) -> Iterator[list[ReplayWindow]]:
    def batch(closed: list[ClosedWindow]) -> list[ReplayWindow]:
        return [ReplayWindow(w.channel, w.bar, w.start, w.end, w.inputs.copy()) for w in closed]

    # Events past the grid's last bar line (late end-of-track markers) close nothing more.
    for tick, _, _, kind, channel, pitch, velocity in events:
        closed = engine.advance(min(tick, last))
        if closed:
            yield batch(closed)
        if kind == NOTE_ON:
            engine.note_on(channel, pitch, tick, velocity)
        elif kind == NOTE_OFF:
            engine.note_off(channel, pitch, tick)
        elif kind == CONTROL:
            engine.control(channel, pitch, velocity, tick)
        else:
            engine.all_notes_off(channel, tick)
    closed = engine.advance(last)  # the last bar line closes the last window, as offline
    if closed:
        yield batch(closed)
