"""The daemon's core without ports: engine, replay, transport (fake clock), parsing.

The central property: windows made by the live code equal, bit for bit, the rolls the
training pipeline cuts from the same file (``live.windows.cut_windows`` on ``read_song``).
"""

from __future__ import annotations

import collections
from pathlib import Path

import mido
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from live.engine import LIVE_TICKS_PER_QUARTER, FixedMeter, GridBars, WindowEngine
from live.midifile import Song, load_midi, read_song
from live.replay import replay_windows
from live.testing.songs import Track, melody, write_song
from live.transport import NS, Transport, classify
from live.windows import cut_windows

#: A clock period whose 40 sub-ticks are whole nanoseconds: note times are exact (~120 BPM).
PERIOD = 40 * 520_833


def offline(path: Path, hop: int = 1) -> dict[tuple[int, int], bytes]:
    """(channel 1-16, bar) -> roll bytes, as training cuts them (one part per channel)."""
    song = read_song(load_midi(path))
    parts = collections.defaultdict(list)
    for p in song.parts:
        parts[p.channel + 1].append(p)
    out = {}
    for ch, ps in parts.items():
        assert len(ps) == 1, "test files have one part per channel"
        for w in cut_windows(ps[0], song.bars, song.ticks_per_beat, hop_bars=hop):
            out[(ch, w.bar)] = w.roll.tobytes()
    return out


def replayed(path: Path, hop: int = 1) -> dict[tuple[int, int], bytes]:
    """Every channel's windows, the drums' too (replay follows all but 10 by default)."""
    return {
        (w.channel, w.bar): w.roll.tobytes()
        for batch in replay_windows(path, hop_bars=hop, channels=range(1, 17))
        for w in batch
    }


# --------------------------------------------------------------- chunked equals offline


@st.composite
def songs(draw: st.DrawFn) -> dict:
    tpb = draw(st.sampled_from([96, 480, 960]))
    meter = draw(st.sampled_from([(4, 4), (3, 4), (6, 8), (7, 8), (5, 4)]))
    tracks = []
    for ch in draw(st.lists(st.integers(0, 15), min_size=1, max_size=4, unique=True)):
        notes = draw(
            st.lists(
                st.tuples(
                    st.integers(30, 90),
                    st.integers(0, 24 * 4 * 4),  # start in 1/24 beat
                    st.integers(0, 24 * 3),
                    st.integers(1, 127),
                ),  # length (0: an onset)
                min_size=1,
                max_size=30,
            )
        )
        tracks.append(Track(f"t{ch}", 0, ch, [(p, s / 24, n / 24, v) for p, s, n, v in notes]))
    return {"tracks": tracks, "tpb": tpb, "meter": meter}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(song=songs(), hop=st.sampled_from([1, 2]))
def test_replay_windows_equal_the_training_windows(song: dict, hop: int, tmp_path: Path) -> None:
    """Random songs: overlapping and repeated notes, odd meters, zero-length notes, several
    resolutions; the engine's windows are the training windows, bit for bit."""
    path = write_song(tmp_path / "s.mid", song["tracks"], tpb=song["tpb"], meter=song["meter"])
    assert replayed(path, hop) == offline(path, hop)


def test_replay_handles_retriggers_and_meter_changes(tmp_path: Path) -> None:
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    conductor.append(mido.MetaMessage("time_signature", numerator=3, denominator=4, time=480 * 8))
    mid.tracks.append(conductor)
    t = mido.MidiTrack()
    # a doubled note-on, a retrigger (on before off on one tick), a note-off with no note-on,
    # and a note never released (ends with its track)
    for msg in [
        ("note_on", 60, 0),
        ("note_on", 60, 240),
        ("note_on", 60, 480),
        ("note_off", 60, 0),
        ("note_off", 60, 480),
        ("note_off", 61, 10),
        ("note_on", 64, 100),
        ("note_on", 67, 3000),
        ("note_off", 64, 2000),
    ]:
        kind, note, dt = msg
        t.append(mido.Message(kind, note=note, velocity=80 if kind == "note_on" else 0, time=dt))
    t.append(mido.MetaMessage("end_of_track", time=4000))
    mid.tracks.append(t)
    path = tmp_path / "r.mid"
    mid.save(path)
    for hop in (1, 2):
        assert replayed(path, hop) == offline(path, hop)


@pytest.mark.slow
def test_replay_of_the_demo_corpus_equals_training(demo_files: list[Path]) -> None:
    """Real files (the demo corpus), channels holding one part: equal, both hops."""
    checked = 0
    for path in demo_files[::4]:
        song = read_song(load_midi(path))
        counts = collections.Counter(p.channel for p in song.parts)
        single = {c + 1 for c, n in counts.items() if n == 1}
        for hop in (1, 2):
            live = {k: v for k, v in replayed(path, hop).items() if k[0] in single}
            off = {k: v for k, v in offline_parts(song, hop).items() if k[0] in single}
            assert live == off, path
            checked += len(off)
    assert checked > 1000


def offline_parts(song: Song, hop: int) -> dict[tuple[int, int], bytes]:
    out = {}
    for p in song.parts:
        for w in cut_windows(p, song.bars, song.ticks_per_beat, hop_bars=hop):
            out[(p.channel + 1, w.bar)] = w.roll.tobytes()
    return out


# ------------------------------------------------------------ live transport = offline


def play(
    path: Path,
    *,
    jitter_ns: int = 0,
    garbage: list | None = None,
    seed: int = 0,
    start: bool = True,
) -> tuple[dict, Transport]:
    """Play a file (ticks_per_beat 960) through the Transport with MIDI clock as a DAW would:
    Start, a clock every PERIOD ns, each note at its exact time; returns the windows."""
    midi = load_midi(path)
    assert midi.ticks_per_beat == LIVE_TICKS_PER_QUARTER
    song = read_song(midi)
    num, den = int(song.bars.numerators[0]), int(song.bars.denominators[0])
    engine = WindowEngine(FixedMeter(num, den), max_note_bars=0)
    transport = Transport(engine, say=lambda m: None)
    rng = np.random.default_rng(seed)
    events = []  # (time, order, message)
    from live.replay import NOTE_ON, file_events

    for tick, _, i, kind, ch, pitch, _ in file_events(midi):
        t = tick * PERIOD // 40
        if kind == NOTE_ON:
            events.append((t, 1, i, [0x90 | (ch - 1), pitch, 100]))
        elif pitch >= 0:
            events.append((t, 1, i, [0x80 | (ch - 1), pitch, 0]))
        else:
            events.append((t, 1, i, [0xB0 | (ch - 1), 123, 0]))
    last_clock = int(song.bars.starts[-1]) // 40
    for k in range(last_clock + 1):
        events.append((k * PERIOD, 0, 0, [0xF8]))  # the clock first on a shared instant
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    out = {}
    t0 = 1_000 * NS
    if start:
        transport.handle(t0 - 1000, [0xFA])
    for n, (t, order, _, msg) in enumerate(events):
        if garbage is not None and rng.random() < 0.3:
            transport.handle(t0 + t, garbage[n % len(garbage)])
        j = int(rng.integers(-jitter_ns, jitter_ns + 1)) if jitter_ns and order == 0 else 0
        for w in transport.handle(t0 + t + j, msg):
            out[(w.channel, w.bar)] = w.roll.tobytes()
    return out, transport


def _song(tmp_path: Path, meter: tuple[int, int] = (4, 4), seed: int = 0) -> Path:
    tracks = [
        Track("a", 0, 0, melody(8, seed=seed, step=0.5)),
        Track("b", 33, 1, melody(8, low=36, seed=seed + 1, step=1.0)),
        Track("c", 48, 5, [(60 + i % 7, i * 1.5, 2.25, 80) for i in range(20)]),
    ]
    return write_song(tmp_path / f"p{seed}.mid", tracks, tpb=960, meter=meter)


@pytest.mark.parametrize("meter", [(4, 4), (3, 4), (6, 8)])
def test_clocked_transport_equals_offline(tmp_path: Path, meter: tuple[int, int]) -> None:
    path = _song(tmp_path, meter)
    live, transport = play(path)
    assert live == offline(path)
    assert transport.counters.malformed == 0
    assert transport.bpm == pytest.approx(60 * NS / (PERIOD * 24))


def test_clock_jitter_does_not_move_notes(tmp_path: Path) -> None:
    """Clock ticks arriving up to 1 ms early or late (USB MIDI) change nothing."""
    path = _song(tmp_path)
    live, transport = play(path, jitter_ns=1_000_000)
    assert live == offline(path)
    assert transport.bpm == pytest.approx(120.0, rel=0.01)


GARBAGE = [
    [0x45],  # a data byte where a status byte must be
    [0x90, 60],  # truncated note-on
    [0x90, 60, 100, 5],  # too long
    [0xF0, 0x7E, 0x01],  # sysex with no end
    [0xF4],  # undefined system common
    [0xFD, 0x10],  # undefined realtime, with data
    [0xF2, 0x10],  # truncated song position pointer
    [0x80, 200, 3],  # data byte out of range
    [],
    [0xF7],  # sysex end with no start
    [0xF0, 0x01, 0x90, 0xF7],  # status byte inside a sysex
]


def test_garbage_between_valid_messages_changes_nothing(tmp_path: Path) -> None:
    path = _song(tmp_path)
    clean, _ = play(path)
    dirty, transport = play(path, garbage=GARBAGE, seed=3)
    assert dirty == clean
    assert transport.counters.malformed > 20
    assert transport.counters.unterminated_sysex > 0


@pytest.mark.parametrize("msg", GARBAGE)
def test_malformed_messages_are_classified_as_such(msg: list[int]) -> None:
    assert classify(msg) is None


@pytest.mark.parametrize(
    "msg,kind",
    [
        ([0x90, 60, 100], "voice"),
        ([0xC3, 5], "voice"),
        ([0xF8], "realtime"),
        ([0xF2, 0, 1], "common"),
        ([0xF0, 1, 2, 0xF7], "sysex"),
        ([0xFE], "realtime"),
    ],
)
def test_well_formed_messages_are_accepted(msg: list[int], kind: str) -> None:
    assert classify(msg) == kind


@given(st.lists(st.lists(st.integers(0, 255), max_size=6), max_size=200))
def test_random_bytes_never_raise(messages: list[list[int]]) -> None:
    transport = Transport(WindowEngine(FixedMeter()), say=lambda m: None)
    t = 0
    for m in messages:
        t += 5_000_000
        transport.handle(t, m)
    transport.tick(t + 10 * NS)


# ----------------------------------------------------------------- transport semantics


def _clocks(transport: Transport, n: int, t: int, period: int = PERIOD) -> tuple[list, int]:
    closed = []
    for _ in range(n):
        t += period
        closed += transport.handle(t, [0xF8])
    return closed, t


def test_window_closes_on_the_clock_at_the_bar_line() -> None:
    engine = WindowEngine(FixedMeter(4, 4))
    tr = Transport(engine, say=lambda m: None)
    tr.handle(0, [0xFA])
    closed, t = _clocks(tr, 1, 0)  # the first clock after Start is position 0
    tr.handle(t, [0x90, 60, 100])
    closed, t = _clocks(tr, 191, t)
    assert closed == []  # 2 bars = 192 clocks: not yet
    closed, t = _clocks(tr, 1, t)
    assert [(w.channel, w.bar) for w in closed] == [(1, 0)]
    assert closed[0].roll[60].all()  # held through the whole window


def test_stop_halts_and_continue_resumes() -> None:
    engine = WindowEngine(FixedMeter(4, 4))
    tr = Transport(engine, say=lambda m: None)
    tr.handle(0, [0xFA])
    _, t = _clocks(tr, 1, 0)
    tr.handle(t, [0x90, 60, 100])
    _, t = _clocks(tr, 100, t)
    tr.handle(t, [0xFC])
    closed, t = _clocks(tr, 200, t)  # DAWs keep sending clock while stopped
    assert closed == [] and tr.mode == "stopped"
    tr.handle(t, [0xFB])
    closed, t = _clocks(tr, 93, t)
    assert [w.bar for w in closed] == [0]


def test_song_position_pointer_relocates() -> None:
    engine = WindowEngine(FixedMeter(4, 4))
    tr = Transport(engine, say=lambda m: None)
    tr.handle(0, [0xF2, 64, 0])  # sixteenth 64 = bar 5 (0-based bar 4)
    tr.handle(1, [0xFB])
    _, t = _clocks(tr, 1, 1)
    tr.handle(t, [0x90, 50, 100])
    closed, t = _clocks(tr, 192, t)
    assert [w.bar for w in closed] == [4]
    assert engine.counters.relocations == 1


@pytest.mark.parametrize(("hop", "first_bar"), [(1, 3), (2, 4)])
def test_song_position_pointer_mid_bar_starts_at_the_first_whole_window(
    hop: int, first_bar: int
) -> None:
    """SPP into the middle of a bar (bar 2, beat 3 of 4/4; bars 0-based): the part of that bar
    is never a window. The first window starts on the next bar line (on the hop grid), and its
    roll holds the notes from that bar line on, at their steps: not the bar the SPP landed
    in, and not a window that starts where the SPP put the song."""
    engine = WindowEngine(FixedMeter(4, 4), hop_bars=hop, max_note_bars=0)
    tr = Transport(engine, say=lambda m: None)
    spp_clock = 2 * 96 + 2 * 24  # bar 2, beat 3: sixteenth 40
    tr.handle(0, [0xF2, 40, 0])
    tr.handle(1, [0xFB])
    closed: list[tuple[int, int, np.ndarray]] = []  # bar, start tick, roll
    t = 1
    # From the SPP on, one note per beat (pitch 60 + beats since the SPP), an eighth long.
    for clock in range(spp_clock, 6 * 96 + 12):
        t += PERIOD
        # The first clock after Continue is the SPP's position itself.
        closed += [(w.bar, w.start, w.roll.copy()) for w in tr.handle(t, [0xF8])]
        if clock % 24 == 0:
            tr.handle(t, [0x90, 60 + (clock - spp_clock) // 24, 100])
        elif clock % 24 == 12:
            tr.handle(t, [0x80, 60 + (clock - 12 - spp_clock) // 24, 0])
    bar, start, roll = closed[0]
    assert (bar, start) == (first_bar, first_bar * FixedMeter().bar_ticks)
    want = np.zeros((128, 16), np.uint8)
    for beat in range(4 * first_bar, 4 * first_bar + 8):
        want[60 + beat - spp_clock // 24, 2 * (beat - 4 * first_bar)] = 1
    np.testing.assert_array_equal(roll, want)


def test_tempo_follows_the_clock_and_its_changes() -> None:
    tr = Transport(WindowEngine(FixedMeter()), say=lambda m: None)
    tr.handle(0, [0xFA])
    _, t = _clocks(tr, 48, 0, period=int(60 * NS / (90 * 24)))
    assert tr.bpm == pytest.approx(90, rel=1e-3)
    _, t = _clocks(tr, 48, t, period=int(60 * NS / (140 * 24)))
    assert tr.bpm == pytest.approx(140, rel=1e-3)


def test_internal_clock_without_midi_clock() -> None:
    """No clock: the internal clock at --bpm starts at the first note; the worker's deadline
    is the bar line 2 bars later, and the window closes then."""
    engine = WindowEngine(FixedMeter(4, 4))
    messages = []
    tr = Transport(engine, bpm=120, say=messages.append)
    t0 = 5 * NS
    tr.handle(t0, [0x90, 62, 90])
    tr.handle(t0 + NS // 2, [0x80, 62, 0])  # one beat at 120 BPM
    assert tr.mode == "internal"
    assert tr.deadline_ns() == pytest.approx(t0 + 4 * NS, abs=1000)  # 2 bars of 4/4, 120 BPM
    assert tr.tick(t0 + 4 * NS - 1_000_000) == []
    closed = tr.tick(tr.deadline_ns())
    assert [(w.channel, w.bar) for w in closed] == [(1, 0)]
    assert np.flatnonzero(closed[0].roll[62]).tolist() == [0, 1]  # one beat = two eighths


def test_clock_that_stops_falls_back_to_the_internal_clock_on_the_same_grid() -> None:
    engine = WindowEngine(FixedMeter(4, 4))
    said = []
    tr = Transport(engine, say=said.append)
    tr.handle(0, [0xFA])
    _, t = _clocks(tr, 1, 0)
    tr.handle(t, [0x90, 60, 100])
    _, t = _clocks(tr, 96, t)  # one bar, then the clock is gone (cable pulled)
    tr.tick(t + NS)
    assert any("stopped arriving" in s for s in said)
    # Notes still come: the internal clock carries on from the last clock at its tempo.
    t_note = t + 2 * NS + PERIOD // 2
    closed = tr.handle(t_note, [0x90, 64, 100])
    assert tr.mode == "internal" and tr.counters.clock_fallbacks == 1
    expected = (96 + (2 * NS + PERIOD // 2) // PERIOD) * 40  # as if the clock had kept coming
    assert abs(tr.position(t_note) - expected) <= 40
    assert [w.bar for w in closed] == [0]  # the bar line passed while the clock was away
    closed = tr.tick(tr.deadline_ns())
    assert [w.bar for w in closed] == [1] and closed[0].roll[64].any()


# ------------------------------------------------------------------------- engine


def test_stuck_note_is_ended_after_max_note_bars() -> None:
    engine = WindowEngine(FixedMeter(4, 4), max_note_bars=2)
    engine.note_on(1, 60, 0)  # never released
    bar = FixedMeter().bar_ticks
    windows = engine.advance(6 * bar)
    assert engine.counters.stuck_notes == 1
    held = {w.bar: bool(w.roll[60].any()) for w in windows}
    assert held[0] and held[1] and 2 not in held  # ended after 2 bars: windows from bar 2 empty


def test_orphan_note_off_is_counted_and_harmless() -> None:
    engine = WindowEngine(FixedMeter(4, 4))
    engine.note_off(3, 70, 10)
    assert engine.counters.orphan_note_offs == 1
    assert engine.advance(10 * FixedMeter().bar_ticks) == []


def test_channels_not_followed_are_ignored() -> None:
    engine = WindowEngine(FixedMeter(4, 4), channels=[1, 2])
    engine.note_on(10, 36, 0)
    engine.note_on(2, 40, 0)
    closed = engine.advance(2 * FixedMeter().bar_ticks)
    assert [w.channel for w in closed] == [2]


def test_sixteen_busy_channels_close_as_one_batch_without_allocation_per_channel() -> None:
    engine = WindowEngine(FixedMeter(4, 4))
    rng = np.random.default_rng(0)
    for ch in range(1, 17):
        for k in range(64):
            p = int(rng.integers(30, 90))
            engine.note_on(ch, p, k * 120)
            engine.note_off(ch, p, k * 120 + 100)
    closed = engine.advance(2 * FixedMeter().bar_ticks)
    assert sorted(w.channel for w in closed) == list(range(1, 17))
    assert all(np.shares_memory(w.roll, engine.inputs) for w in closed)  # rows of one buffer


def test_note_capacity_overflow_is_counted() -> None:
    engine = WindowEngine(FixedMeter(4, 4), capacity=8)
    for k in range(20):
        engine.note_on(1, 60, k * 10)
        engine.note_off(1, 60, k * 10 + 5)
    assert engine.counters.dropped_notes == 12


def test_grid_bars_extend_past_the_file() -> None:
    song = read_song(
        load_midi(write_song(Path("/tmp") / "kd_grid.mid", [Track("a", 0, 0, melody(3))]))
    )
    bars = GridBars(song.bars)
    n = len(song.bars)
    step = int(song.bars.starts[1] - song.bars.starts[0])
    assert bars.start(n + 2) == int(song.bars.starts[-1]) + 3 * step
    assert bars.index(bars.start(n + 2) + 1) == n + 2


@pytest.mark.parametrize("late_note", [False, True])
def test_the_pending_windows_are_the_ones_that_close(late_note: bool) -> None:
    """What :meth:`WindowEngine.pending` shows before a bar line is what closes there (its
    inputs copied, counted once), unless something is heard in between: then the key changes
    and the close makes its windows afresh, with the late note in them."""
    engines = [WindowEngine(FixedMeter(4, 4), channels=range(1, 17)) for _ in range(2)]
    bar = FixedMeter().bar_ticks
    for engine in engines:  # channel 1 plays, channel 2 only plays bar 1: empty in bars 2-3
        for k in range(14):
            engine.note_on(1, 60 + k % 5, k * 480, 90)
            engine.note_off(1, 60 + k % 5, k * 480 + 400)
        engine.note_on(2, 40, 0)
        engine.note_off(2, 40, bar)  # ends where bars 2-3 start: kept, sounding nowhere there
        engine.advance(2 * bar)
        engine.tidy()
    watched, plain = engines
    key = watched.pending_key()
    pending = [(w.channel, w.inputs.copy()) for w in watched.pending()]
    assert watched.pending_key() == key and [c for c, _ in pending] == [1]
    for engine in engines:
        if late_note:
            engine.note_on(3, 70, 3 * bar - 100, 80)
        closed = engine.advance(3 * bar)
    assert (watched.closed_key == key) is not late_note
    a, b = watched.advance(3 * bar), plain.advance(3 * bar)  # nothing more: already closed
    assert a == b == []
    got = {w.channel: w.inputs for w in closed}
    assert watched.counters == plain.counters
    assert plain.counters.empty_windows == 1  # channel 2 at bars 2-3, counted once
    if late_note:
        assert sorted(got) == [1, 3] and got[1][:, 70].any()  # heard as channel 1's ensemble
    else:
        assert sorted(got) == [1] and np.array_equal(got[1], pending[0][1])
