"""Contract 3 (live.controls): a part's controllers as step states, against a brute-force reading
of their definition, and the engine, replay and transport that keep them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from live.contracts import V2, V3, contract
from live.controls import (
    BEND,
    EXPRESSION,
    MODULATION,
    N_ROWS,
    PEDAL,
    ROWS,
    STREAMS,
    Controls,
    control_rows,
    controls_of,
    file_controls,
)
from live.engine import FixedMeter, WindowEngine
from live.inputs import DRUMS, Sources, song_inputs, sources_of, window_inputs
from live.midifile import load_midi, read_song
from live.replay import replay_windows
from live.testing.songs import Track, write_song
from live.transport import Transport

STEP = 240  # ticks per eighth at 480 per quarter
T0 = 4 * 1920  # bar 4 of 4/4


def reference(c: Controls, n: int, t0: int, step: float, valid: int) -> np.ndarray:
    """Each state from its definition, one step and one event at a time."""
    out = np.zeros((n, N_ROWS, 16), np.uint8)
    for s in range(n):
        for r, rules in enumerate(ROWS):
            for stream, threshold in rules:
                mine = [
                    (int(t), int(v))
                    for src, st, t, v in zip(c.source, c.stream, c.ticks, c.values, strict=True)
                    if src == s and st == stream
                ]
                mine.sort(key=lambda e: e[0])  # stable: a tick's events keep their order

                def on(v: int, threshold: int | None = threshold) -> bool:
                    assert threshold is not None
                    return v < -threshold if threshold < 0 else v >= threshold

                for k in range(valid):
                    s0, s1 = t0 + k * step, t0 + (k + 1) * step
                    inside = [v for t, v in mine if s0 <= t < s1]
                    if threshold is None:
                        hit = bool(inside)
                    else:
                        before = [v for t, v in mine if t <= s0]
                        hit = bool(before and on(before[-1])) or any(on(v) for v in inside)
                    out[s, r, k] |= hit
    return out


def random_controls(rng: np.random.Generator, n: int, count: int = 120) -> Controls:
    stream = rng.integers(0, len(STREAMS), count)
    ticks = rng.integers(T0 - 3000, T0 + 16 * STEP + 500, count)
    ticks[: count // 4] = ticks[count // 4 : count // 2]  # events sharing a tick
    values = np.where(stream == BEND, rng.integers(0, 8193, count), rng.integers(0, 128, count))
    values[rng.random(count) < 0.2] = 0
    return Controls(rng.integers(0, n, count), stream, ticks, values)


@pytest.mark.parametrize("valid", [16, 12, 0])
@pytest.mark.parametrize("seed", range(4))
def test_control_rows_follow_their_definition(seed: int, valid: int) -> None:
    rng = np.random.default_rng(seed)
    c = random_controls(rng, n=4)
    got = control_rows(c, 4, T0, STEP, valid)
    assert np.array_equal(got, reference(c, 4, T0, STEP, valid))
    assert got[:, :, valid:].sum() == 0
    if valid:
        assert got.sum() > 0  # the random events do turn states on


def test_a_state_held_from_before_the_window_and_the_later_of_two_events_on_a_tick() -> None:
    # Pedal down long before the window, up at step 5; two modulation events on one tick,
    # the later (0) decides what is held after it.
    c = Controls(
        np.zeros(4, np.int64),
        np.array([PEDAL, PEDAL, MODULATION, MODULATION]),
        np.array([0, T0 + 5 * STEP + 10, T0 + 2 * STEP, T0 + 2 * STEP]),
        np.array([127, 0, 90, 0]),
    )
    rows = control_rows(c, 1, T0, STEP, 16)[0]
    assert rows[0].tolist() == [1] * 6 + [0] * 10  # on through the step the pedal lifts in
    assert rows[3].tolist() == [0, 0, 1] + [0] * 13  # on in its step only
    assert rows[[1, 2, 4, 5, 6, 7]].sum() == 0


def test_contract_3_is_contract_2_with_the_drums_rows_0_to_7_for_controls() -> None:
    assert contract(3) is V3 and V3.controls and not V2.controls
    assert V3.input_shape == V2.input_shape and V3.outputs(64) == V2.outputs(64)
    # a piano and a drum kit with a hit on key 5 (below any General MIDI drum) and on 36
    notes = np.array([[0, 60, T0, T0 + 960, 90], [1, 5, T0, T0 + 10, 90], [1, 36, T0, T0 + 10, 90]])
    src = Sources(*(notes[:, k] for k in range(5)), drum=np.array([False, True]))
    pedal = Controls(np.array([0]), np.array([PEDAL]), np.array([T0 + 3 * STEP]), np.array([100]))
    v2, _ = window_inputs(src, T0, T0 + 16 * STEP, STEP)
    v3, _ = window_inputs(src, T0, T0 + 16 * STEP, STEP, controls=pedal)
    assert v2[0, DRUMS, 5, 0] == 1 and v3[0, DRUMS, 5, 0] == 0  # the kit's key 5 gives way
    assert v3[0, DRUMS, 36, 0] == 1 and v3[0, DRUMS, 0].tolist() == [0] * 3 + [1] * 13
    assert v3[1, DRUMS, :N_ROWS].sum() == 0  # the kit's channel sends no controls
    rest = np.ones(v2.shape, bool)
    rest[:, DRUMS, :N_ROWS] = False
    assert np.array_equal(v2[rest], v3[rest])


def song_with_controls(path: Path) -> Path:
    """Piano with its pedal, a guitar that bends, strings with expression and modulation, drums
    (one hit on key 5), two tracks on the guitar's channel."""
    piano = Track(
        "piano",
        0,
        0,
        [(60 + k % 7, k, 0.9, 80) for k in range(32)],
        controls=[(b, 64, 127 if b % 8 < 4 else 0) for b in range(0, 32, 2)],
    )
    guitar = Track(
        "guitar",
        25,
        1,
        [(52 + k % 5, k / 2, 0.4, 90) for k in range(64)],
        bends=[(b / 4, int(4000 * np.sin(b / 3))) for b in range(0, 128, 3)],
    )
    guitar2 = Track("guitar fx", 25, 1, [], controls=[(6.5, 1, 64), (6.5, 1, 0), (20.25, 1, 3)])
    strings = Track(
        "strings",
        48,
        2,
        [(67, 4 * k, 3.9, 70) for k in range(8)],
        controls=[(b / 2, 11, 60 + (b * 7) % 67) for b in range(0, 64, 5)]
        + [(8, 2, 50), (9, 2, 0), (12, 66, 127), (14, 66, 0)],
    )
    drums = Track("drums", 0, 9, [(36, k, 0.1, 100) for k in range(32)] + [(5, 3, 0.1, 90)])
    return write_song(path, [piano, guitar, guitar2, strings, drums])


def test_replay_gives_the_training_windows_of_a_file_with_controls(tmp_path: Path) -> None:
    """``kdlive replay`` (the engine, fed event by event) and the training cut of the file
    (:func:`live.inputs.window_inputs` of all its parts at once) make the same contract-3
    inputs, bit for bit."""
    path = song_with_controls(tmp_path / "song.mid")
    midi = load_midi(path)
    song = read_song(midi)
    parts = [p for p in song.parts if len(p)]
    controls = controls_of([p.channel for p in parts], file_controls(midi))
    step = song.ticks_per_beat / 2
    want: dict[tuple[int, int], np.ndarray] = {}
    for bar, t0, t1, _, valid in song_inputs(sources_of(parts), song.bars, song.ticks_per_beat):
        x, _ = window_inputs(sources_of(parts), t0, t1, step, controls=controls)
        assert valid == 16
        for i, p in enumerate(parts):
            if x[i, 0].any():
                want[(p.channel + 1, bar)] = x[i]
    got = {
        (w.channel, w.bar): w.inputs
        for batch in replay_windows(path, controls=True, channels=range(1, 17))
        for w in batch
    }
    assert got.keys() == want.keys()
    for key, x in want.items():
        assert np.array_equal(got[key], x), key
    rows = np.stack([x[DRUMS, :N_ROWS] for x in got.values()])
    assert rows.sum(axis=(0, 2)).min() > 0  # every state is on somewhere
    plain = {
        (w.channel, w.bar): w.inputs
        for batch in replay_windows(path, channels=range(1, 17))
        for w in batch
    }
    # contract 2: no controls, and the kit's key 5 where contract 3 has the expression row
    assert plain[(1, 0)][DRUMS, :N_ROWS].sum() == 1 and plain[(1, 0)][DRUMS, 5, 6] == 1
    assert not np.array_equal(plain[(3, 0)][DRUMS, 5], got[(3, 0)][DRUMS, 5])


def feed(engine: WindowEngine, events: list[tuple[int, str, int, int, int]]) -> None:
    for pos, kind, channel, a, b in events:
        engine.advance(pos)
        if kind == "on":
            engine.note_on(channel, a, pos, b)
        elif kind == "off":
            engine.note_off(channel, a, pos)
        else:
            engine.control(channel, a, b, pos)


@pytest.mark.parametrize("seed", range(3))
def test_the_pending_key_changes_whenever_the_pending_windows_do(seed: int) -> None:
    """A controller event that leaves the pending key alone (so that what was computed ahead
    is used at the close) leaves the pending windows' inputs exactly as they were; and a run
    of events inside one step that changes nothing does not count as heard."""
    rng = np.random.default_rng(seed)
    engine = WindowEngine(FixedMeter(), controls=True, max_note_bars=0)
    pos, unchanged, events = 0, 0, 0
    engine.note_on(1, 60, 0, 90)
    before = (engine.pending_key(), [w.inputs.copy() for w in engine.pending()])
    for _ in range(600):
        pos += int(rng.choice([0, 0, 7, 40, 200]))
        engine.advance(pos)
        if rng.random() < 0.1:
            engine.note_on(int(rng.integers(1, 3)), int(rng.integers(50, 70)), pos, 90)
        else:
            stream = int(rng.choice([PEDAL, BEND, EXPRESSION, MODULATION]))
            value = int(rng.integers(0, 8193 if stream == BEND else 128))
            engine.control(int(rng.integers(1, 3)), stream, value, pos)
            events += 1
        key = engine.pending_key()
        now = [w.inputs.copy() for w in engine.pending()]
        if key == before[0]:
            unchanged += 1
            assert len(now) == len(before[1])
            assert all(np.array_equal(a, b) for a, b in zip(now, before[1], strict=True))
        before = (key, now)
    assert unchanged > 50  # the rule does spare recomputation


def test_a_held_pedal_outlives_the_pruning_of_old_events() -> None:
    engine = WindowEngine(FixedMeter(), controls=True)
    events = [(0, "cc", 1, PEDAL, 127)]
    events += [(480 * k, "on", 1, 60, 90) for k in range(64)]
    events += [(480 * k + 400, "off", 1, 60, 0) for k in range(64)]
    events += [(480 * k + 1, "cc", 1, EXPRESSION, 100) for k in range(64)]
    events.sort(key=lambda e: (e[0], e[1] != "off"))
    closed = []
    for pos, kind, ch, a, b in events:
        closed += engine.advance(pos)
        engine.tidy()
        feed(engine, [(pos, kind, ch, a, b)])
    assert len(closed) >= 6
    for w in closed:
        assert w.inputs[DRUMS, 0].tolist() == [1] * 16  # the pedal, down since tick 0
        assert w.inputs[DRUMS, 4].tolist() == [1] * 16  # expression sent in every step
    assert engine.control_log[1].n < 40  # old events were dropped all the same


def test_a_relocation_forgets_the_controls() -> None:
    engine = WindowEngine(FixedMeter(), controls=True)
    feed(engine, [(0, "cc", 1, PEDAL, 127), (0, "on", 1, 60, 90)])
    engine.relocate(8 * 1920)
    feed(engine, [(8 * 3840, "on", 1, 60, 90)])
    (w,) = engine.pending()
    assert w.inputs[DRUMS, :N_ROWS].sum() == 0


def test_the_transport_routes_controllers_to_a_contract_3_engine_only() -> None:
    engine = WindowEngine(FixedMeter(), controls=True)
    tr = Transport(engine, say=lambda m: None)
    for msg in ([0x91, 60, 90], [0xB1, 64, 127], [0xE1, 0x00, 0x40], [0xE1, 0x7F, 0x7F]):
        tr.handle(0, msg)
    tr.handle(0, [0xB1, 7, 100])  # volume: a mixer's, not tracked
    log = engine.control_log[2]
    assert log.streams[: log.n].tolist() == [PEDAL, BEND, BEND]
    assert log.values[: log.n].tolist() == [127, 0, 8191]
    assert engine.counters.controls == 3 and tr.counters.ignored == 1

    plain = WindowEngine(FixedMeter())
    tr = Transport(plain, say=lambda m: None)
    for msg in ([0x91, 60, 90], [0xB1, 64, 127], [0xE1, 0x00, 0x40]):
        tr.handle(0, msg)
    assert plain.control_log[2].n == 0 and tr.counters.ignored == 2
