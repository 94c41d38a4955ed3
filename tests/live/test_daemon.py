"""The daemon's worker with injected in-memory ports (the shipped model; no MIDI transport)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from live.daemon import Daemon
from live.engine import FixedMeter, WindowEngine
from live.model import Model
from live.outputs import OutputMap
from live.testing.daemon import (
    PERIOD,
    check_cc_and_osc_carry_the_models_answers,
    make_daemon,
    run_daemon,
    song_messages,
)
from live.transport import Transport


class CountingModel:
    def __init__(self, model: Model, fail_first: bool = False, fail_always: bool = False) -> None:
        self.model, self.calls, self.fail_first = model, [], fail_first
        self.fail_always = fail_always
        self.classes, self.contract = model.classes, model.contract
        self.state_size, self.input_shape = model.state_size, model.input_shape
        self.history_share = model.history_share

    def predict(self, rolls: np.ndarray) -> np.ndarray:
        self._count(len(rolls))
        return self.model.predict(rolls)

    def step(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, ...]:
        self._count(len(x))
        return self.model.step(x, state)

    def _count(self, n: int) -> None:
        self.calls.append(n)
        if self.fail_always or (self.fail_first and len(self.calls) == 1):
            raise RuntimeError("simulated inference failure")


@pytest.fixture(scope="module")
def model() -> Model:
    return Model()  # the shipped bundle (other kinds of bundle: tests/export/test_daemon.py)


def test_cc_and_osc_carry_the_models_probabilities(model: Model) -> None:
    check_cc_and_osc_carry_the_models_answers(model)


def test_custom_cc_numbers(model: Model) -> None:
    d, midi, _, _ = make_daemon(model, outputs=OutputMap(cc_base=70, cc_class=80, cc_part=81))
    run_daemon(d, song_messages(), expect_batches=1)
    assert sorted({m[1] for m in midi.sent}) == [*range(70, 78), 80, 81]


def test_a_declared_instrument_gets_its_likeness_on_cc_and_osc(model: Model) -> None:
    """Channel 1 declared on the command line (Strings), channel 2 by a Program Change (33,
    Fingered Bass), channel 3 by a program outside the classes (81, a synth lead), channel 5
    not at all: the first two get CC 29 = the window's probability of their class and OSC
    /likeness; the others neither."""
    d, midi, osc, emitted = make_daemon(model, declared={1: "Strings"})
    messages = song_messages(channels=(1, 2, 3, 5), bars=3)
    messages = [(0, [0xC1, 33]), (0, [0xC2, 81]), *messages]
    run_daemon(d, messages, expect_batches=2)
    assert len(emitted) == 2
    classes = list(model.classes)
    want_cc, want_osc = [], []
    for batch in emitted:
        for ch, _, _, p in batch:
            name = {1: "Strings", 2: "Bass"}.get(ch)
            if name:
                like = float(p[classes.index(name)])
                want_cc.append([0xB0 | (ch - 1), 29, int(round(like * 127))])
                want_osc.append((f"/kdlive/{ch}/likeness", [name, like]))
    assert [m for m in midi.sent if m[1] == 29] == want_cc and len(want_cc) == 4
    got = [(a, v) for a, v in osc.sent if a.endswith("/likeness")]
    assert [a for a, _ in got] == [a for a, _ in want_osc]
    assert all(
        v[0] == w[0] and abs(v[1] - w[1]) < 1e-6
        for (_, v), (_, w) in zip(got, want_osc, strict=True)
    )
    assert d.transport.counters.ignored == 0  # a Program Change is not an ignored message


def test_the_view_snapshot_follows_the_last_window_of_each_channel(model: Model) -> None:
    from live.view import snapshot

    d, _, _, emitted = make_daemon(model, declared={5: "Piano"})
    run_daemon(d, song_messages(channels=(1, 5), bars=4), expect_batches=3)
    snap = snapshot(d)
    classes = list(model.classes)
    last = {ch: (bar, p) for ch, bar, _, p in emitted[-1]}
    assert [r.channel for r in snap.rows] == [1, 5]
    for r in snap.rows:
        bar, p = last[r.channel]
        assert (r.bar, r.window, r.confidence) == (bar + 1, classes[int(p.argmax())], p.max())
        assert r.notes_per_bar == 8.0  # an eighth note every eighth
    assert (snap.rows[0].declared, snap.rows[1].declared) == (None, "Piano")
    assert snap.rows[1].likeness == float(last[5][1][classes.index("Piano")])
    assert snap.windows == 6 and snap.clock == "clock" and snap.latency["n"] == 3
    assert snap.bar == 5 and abs(snap.bpm - 60 * 1e9 / (PERIOD * 24)) < 0.5


def test_an_empty_window_emits_nothing(model: Model) -> None:
    d, midi, osc, emitted = make_daemon(model)
    msgs = [(t, m) for t, m in song_messages() if m[0] >> 4 not in (0x8, 0x9)]  # clock only
    run_daemon(d, msgs, expect_batches=1, timeout=1.0)
    assert emitted == [] and midi.sent == [] and osc.sent == []


def test_sixteen_channels_are_one_model_call(model: Model) -> None:
    """A bar line's pitched channels are one call; the drums, classified only when asked,
    one more (a student whose channels attend to each other never learnt them among its
    parts)."""
    counting = CountingModel(model)
    d, midi, _, _ = make_daemon(counting, channels=[c for c in range(1, 17) if c != 10])
    run_daemon(d, song_messages(channels=tuple(range(1, 17)), bars=2), expect_batches=1)
    assert counting.calls and set(counting.calls) == {15}  # (computed ahead, or at the close)
    assert len(midi.sent) == 15 * 10
    counting = CountingModel(model)
    d, midi, _, _ = make_daemon(counting)
    run_daemon(d, song_messages(channels=tuple(range(1, 17)), bars=2), expect_batches=1)
    assert counting.calls and sorted(set(counting.calls)) == [1, 15]
    assert len(midi.sent) == 16 * 10
    assert {m[0] & 0x0F for m in midi.sent} == set(range(16))


def test_a_failing_model_call_is_counted_and_the_worker_goes_on(model: Model) -> None:
    counting = CountingModel(model, fail_first=True)
    d, midi, _, _ = make_daemon(counting)
    run_daemon(d, song_messages(bars=3), expect_batches=1)
    assert d.worker_errors == 1 and d.thread is not None and not d.thread.is_alive()
    # The call that failed (ahead of a bar line, or at it) cost at most one window.
    assert len(midi.sent) in (10, 20) and len(counting.calls) >= 2


def test_a_model_that_keeps_failing_is_tried_once_ahead_per_bar_line(model: Model) -> None:
    """While the input is quiet before a bar line the worker computes ahead every few ms; a
    model that fails there is not retried (and logged) on every one of them."""
    messages = song_messages(channels=(1,), bars=2)
    closing = max(i for i, (_, m) in enumerate(messages) if m == [0xF8])
    counting = CountingModel(model, fail_always=True)
    d, midi, _, _ = make_daemon(counting)
    t0 = time.perf_counter_ns()
    d.start()
    for i, (t, m) in enumerate(messages):
        if i == closing:
            time.sleep(0.2)  # quiet: about a hundred chances to compute ahead
        d.inbox.feed(m, t0 + t)
    time.sleep(0.2)
    d.stop()
    assert midi.sent == [] and d.thread is not None and not d.thread.is_alive()
    # once ahead of each of the (at most 2) bar lines in reach, once at the close (not once
    # per quiet wake-up)
    assert 1 <= d.worker_errors <= 4 and d.ahead.computed <= 3


def test_a_vanished_output_port_is_counted(model: Model) -> None:
    class Broken:
        def send_message(self, message: list[int]) -> None:
            raise OSError("port closed")

    engine = WindowEngine(FixedMeter())
    d = Daemon(model, engine, Transport(engine, say=lambda m: None), midi_out=Broken())
    run_daemon(d, song_messages(bars=2), expect_batches=1)
    assert d.stats.send_errors == 1 and d.stats.batches == 1


def test_the_input_port_is_checked_and_its_counters_reported(model: Model) -> None:
    """The daemon is built with its input: the worker checks it about once a second (to
    reconnect a vanished source), takes event times from its clock, and ``--stats`` shows
    its counters."""

    class WatchedPort:
        def __init__(self) -> None:
            self.checks, self.clock_reads, self.losses = 0, 0, 0

        def check(self) -> None:
            self.checks += 1

        def counters(self) -> dict[str, int]:
            return {"reconnects": 3}

        def now_ns(self) -> int:
            self.clock_reads += 1
            return time.perf_counter_ns()

    port = WatchedPort()
    engine = WindowEngine(FixedMeter())
    d = Daemon(model, engine, Transport(engine, say=lambda m: None), midi_in=port)
    d.start()
    end = time.monotonic() + 5
    while port.checks == 0 and time.monotonic() < end:
        time.sleep(0.05)
    d.stop()
    assert port.checks >= 1 and port.clock_reads >= 1
    assert d.counters()["reconnects"] == 3


MALFORMED = st.one_of(
    st.lists(st.integers(0, 0x7F), min_size=1, max_size=4),  # data bytes without status
    st.tuples(st.sampled_from([0x80, 0x90, 0xB0, 0xE0]), st.integers(0, 127)).map(list),
    st.lists(st.integers(0, 0x7F), max_size=5).map(lambda d: [0xF0, *d]),  # no sysex end
    st.sampled_from([[0xF4], [0xF5], [0xF9], [0xFD], [0xF7], [0xF2, 1], [0xF8, 0], []]),
    st.tuples(st.sampled_from([0x90, 0x80]), st.integers(128, 255), st.integers(0, 127)).map(list),
)


@settings(max_examples=15, deadline=None)
@given(garbage=st.lists(MALFORMED, min_size=30, max_size=120), seed=st.integers(0, 10**6))
def test_fuzz_garbage_changes_no_output(model: Model, garbage: list, seed: int) -> None:
    """Malformed messages interleaved with a song: the daemon stays up and sends exactly the
    CCs it sends for the song alone."""
    clean = song_messages(channels=(1, 2), bars=3)
    rng = np.random.default_rng(seed)
    dirty = list(clean)
    for g in garbage:
        i = int(rng.integers(1, len(dirty)))
        dirty.insert(i, (dirty[i - 1][0], g))  # same instant as its neighbour: no time shift
    outs = []
    for messages in (clean, dirty):
        d, midi, _, _ = make_daemon(model, channels=(1, 2))
        run_daemon(d, messages, expect_batches=2)
        outs.append(midi.sent)
        assert d.worker_errors == 0
    assert outs[1] == outs[0] and len(outs[0]) == 2 * 2 * 10


def _paced(d: Daemon, messages: list[tuple[int, list[int]]], pause_before: int) -> None:
    """Feed ``messages`` with their timestamps, pausing (quiet input, real time) before the
    message at index ``pause_before``: what a player does before a bar line."""
    t0 = time.perf_counter_ns()
    d.start()
    for i, (t, m) in enumerate(messages):
        if i == pause_before:
            time.sleep(0.1)
        d.inbox.feed(m, t0 + t)
    end = time.monotonic() + 5
    while d.stats.batches < 1 and time.monotonic() < end:
        time.sleep(0.01)
    d.stop()


@pytest.mark.parametrize("computed_ahead", [True, False])
def test_windows_computed_ahead_send_the_same_cc(model: Model, computed_ahead: bool) -> None:
    """With the input quiet before the bar line, the daemon computes the pending windows then,
    and at the closing clock only sends: the CC are the ones computed at the close."""
    messages = [(t, m) for t, m in song_messages(channels=(1, 3), bars=2)]
    closing = max(i for i, (_, m) in enumerate(messages) if m == [0xF8])
    counting = CountingModel(model)
    d, midi, _, _ = make_daemon(counting)
    if not computed_ahead:
        d.ahead.quiet_s = 1e9  # never quiet long enough
    _paced(d, messages, pause_before=closing)
    assert len(midi.sent) == 2 * 10
    assert d.ahead.used == d.counters()["computed_ahead"] == (1 if computed_ahead else 0)
    test_windows_computed_ahead_send_the_same_cc.sent = getattr(  # type: ignore[attr-defined]
        test_windows_computed_ahead_send_the_same_cc, "sent", []
    ) + [midi.sent]
    sent = test_windows_computed_ahead_send_the_same_cc.sent  # type: ignore[attr-defined]
    if len(sent) == 2:
        assert sent[0] == sent[1]


def test_a_note_after_the_computation_ahead_is_not_lost(model: Model) -> None:
    """A note that arrives after the pending windows were computed (still before the bar
    line) invalidates them: the window sent includes it."""
    messages = song_messages(channels=(1,), bars=2)
    closing = max(i for i, (_, m) in enumerate(messages) if m == [0xF8])
    t_close = messages[closing][0]
    late = [(t_close - 3 * PERIOD, [0x90, 100, 90]), (t_close - 2 * PERIOD, [0x80, 100, 0])]
    messages = messages[:closing] + late + messages[closing:]
    d, midi, _, emitted = make_daemon(model)
    t0 = time.perf_counter_ns()
    d.start()
    for i, (t, m) in enumerate(messages):
        if i in (closing, closing + 2):
            time.sleep(0.1)  # quiet: the worker computes ahead, then the late note comes
        d.inbox.feed(m, t0 + t)
    end = time.monotonic() + 5
    while d.stats.batches < 1 and time.monotonic() < end:
        time.sleep(0.01)
    d.stop()
    assert d.ahead.computed >= 2 and len(emitted) == 1
    ((ch, bar, x, p),) = emitted[0]
    assert x[0, 100, 15] == 1  # the late note sounds in the last step of the window


def test_the_view_draws_only_clear_of_bar_lines(model: Model) -> None:
    """The drawing thread asks the worker's state whether a bar line is near: not within
    30 ms before a close nor 15 ms after it (at 120 BPM a MIDI clock is 20.8 ms)."""
    d, _, _, _ = make_daemon(model)
    now = [0]
    d.clock = lambda: now[0]
    assert d.clear_to_draw(30_000_000, 15_000_000)  # no clock yet: time stands still

    d.transport.handle(0, [0xFA])
    drawable = {}
    for k in range(3 * 96):  # the song at clock k (96 a bar), a ms after it came
        d.transport.handle(k * PERIOD + 1, [0xF8])
        now[0] = k * PERIOD + 1_000_000
        if k > 96:
            drawable[k] = d.clear_to_draw(30_000_000, 15_000_000)
    assert drawable[96 + 48] and drawable[2 * 96 + 48]  # mid-bar
    assert not drawable[2 * 96 - 1]  # 20 ms before the first close
    assert not drawable[2 * 96] and drawable[2 * 96 + 1]  # 1 ms after it, then 22 ms after
    assert not drawable[3 * 96 - 1] and drawable[3 * 96 - 2]  # 41 ms before the next
    assert sum(not v for v in drawable.values()) == 3  # those three alone
