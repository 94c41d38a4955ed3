"""experiments/controllers.py: a channel's controllers read from a real MIDI file, as
statistics of a window. (Their states at each eighth-note step are contract 3's,
:mod:`live.controls`, tested in tests/live/test_controls.py.)"""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pytest

from live.midifile import load_midi
from tests.train.experiments import load

controllers = load("controllers")

TPB = 480
BAR = 4 * TPB
STEP = TPB // 2  # an eighth note


def write_song(path: Path) -> Path:
    """Four bars of 4/4: channel 0 (a piano) holds the pedal from bar 1 to the middle of bar
    2 and resets it at 0 first; channel 1 bends once in bar 2 and back, turns modulation on
    in bar 3; channel 2 sends a single expression value (a reset, not a use)."""
    f = mido.MidiFile(ticks_per_beat=TPB)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    f.tracks.append(meta)
    events: list[tuple[int, mido.Message]] = []
    for bar in range(4):
        for ch, note in ((0, 60), (1, 72), (2, 48)):
            events.append((bar * BAR, mido.Message("note_on", channel=ch, note=note, velocity=90)))
            events.append((bar * BAR + BAR - 10, mido.Message("note_off", channel=ch, note=note)))
    events += [
        (0, mido.Message("control_change", channel=0, control=64, value=0)),
        (BAR, mido.Message("control_change", channel=0, control=64, value=127)),
        (2 * BAR + 2 * TPB, mido.Message("control_change", channel=0, control=64, value=0)),
        (BAR + 3 * STEP + 10, mido.Message("pitchwheel", channel=1, pitch=4096)),
        (BAR + 5 * STEP, mido.Message("pitchwheel", channel=1, pitch=0)),
        (3 * BAR, mido.Message("control_change", channel=1, control=1, value=64)),
        (0, mido.Message("control_change", channel=2, control=11, value=100)),
    ]
    track = mido.MidiTrack()
    track.append(mido.Message("program_change", channel=1, program=40, time=0))
    tick = 0
    for t, msg in sorted(events, key=lambda e: e[0]):
        track.append(msg.copy(time=t - tick))
        tick = t
    f.tracks.append(track)
    f.save(path)
    return path


def test_channel_events_and_what_counts_as_use(tmp_path: Path) -> None:
    midi = load_midi(write_song(tmp_path / "song.mid"))
    ev = controllers.channel_events(midi)
    ticks, values = ev[0]["pedal"]
    assert ticks.tolist() == [0, BAR, 2 * BAR + 2 * TPB] and values.tolist() == [0, 1, 0]
    assert ev[1]["bend"][1].tolist() == [0.5, 0.0]  # |bend| / 8192
    assert controllers.used(ev[0]) == ["pedal"]
    assert controllers.used(ev[1]) == ["bend", "modulation"]
    assert controllers.used(ev[2]) == []  # one expression value is a reset, not a use
    assert "pedal" not in ev.get(1, {})


def test_window_statistics_read_the_window_and_what_is_held_at_its_end(tmp_path: Path) -> None:
    ev = controllers.channel_events(load_midi(write_song(tmp_path / "song.mid")))
    events, top, held, so_far = controllers._stats(ev[0]["pedal"], BAR, 3 * BAR, True)
    assert (events, top, held) == (2, 1.0, 0.0) and so_far == pytest.approx(np.log1p(3))
    assert controllers._stats(ev[0]["pedal"], 0, BAR, True)[:3] == [1.0, 0.0, 0.0]
    assert controllers._stats(None, 0, BAR, True) == [0.0, 0.0, -1.0, 0.0]
    assert controllers._stats(ev[1]["modulation"], 0, 2 * BAR, False) == [0.0, -1.0]  # not yet
    assert len(controllers.feature_names()) == controllers.N_PERF + 2 * len(controllers.MIXER)
