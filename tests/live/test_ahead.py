"""Computing ahead (:mod:`live.ahead`) on the real engine, transport and shipped model, without
the worker thread: when it computes, and when its answers are handed back at the close."""

from __future__ import annotations

import numpy as np
import pytest

from live.ahead import QUIET_S, Lookahead
from live.engine import FixedMeter, WindowEngine
from live.model import Model
from live.parts import PartTracker
from live.transport import Transport

PERIOD = 20_833_320  # ns per MIDI clock, ~120 BPM
CLOSE = 192  # the clock that closes the first window (2 bars of 4/4, 96 clocks a bar)


@pytest.fixture(scope="module")
def model() -> Model:
    return Model()


class Failing:
    """The shipped model, failing every call (what a broken backend does)."""

    def __init__(self, model: Model) -> None:
        self.contract, self.state_size = model.contract, model.state_size
        self.history_share = model.history_share
        self.input_shape, self.classes = model.input_shape, model.classes

    def predict(self, x: np.ndarray) -> np.ndarray:
        raise RuntimeError("simulated inference failure")

    def step(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, ...]:
        raise RuntimeError("simulated inference failure")


def play_until(model: Model | Failing, last: int) -> tuple[Transport, Lookahead]:
    """Start, then clocks 0..``last`` with an eighth note every 12 clocks on channels 1 and 3."""
    engine = WindowEngine(FixedMeter())
    transport = Transport(engine, say=lambda m: None)
    ahead = Lookahead(engine, transport, PartTracker(model))
    transport.handle(0, [0xFA])
    for k in range(last + 1):
        clock(transport, k)
    return transport, ahead


def clock(transport: Transport, k: int) -> list:
    t = (k + 1) * PERIOD
    closed = transport.handle(t, [0xF8])
    if k % 12 == 0:
        for status in (0x90, 0x92):
            transport.handle(t, [status, 60 + k % 7, 90])
    if k % 12 == 6:
        for status in (0x80, 0x82):
            transport.handle(t, [status, 60 + (k - 6) % 7, 0])
    return closed


def quiet(k: int) -> int:
    """A moment a quarter of a clock after clock ``k``."""
    return (k + 1) * PERIOD + PERIOD // 4


def test_answers_computed_ahead_are_the_closes_own(model: Model) -> None:
    transport, ahead = play_until(model, CLOSE - 1)
    assert ahead.wait_s() == QUIET_S and ahead.due(quiet(CLOSE - 1))
    ahead.compute()
    assert ahead.wait_s() is None  # nothing left to compute before the bar line
    closed = clock(transport, CLOSE)
    assert [w.channel for w in closed] == [1, 3]
    answers = ahead.take()
    assert answers is not None and ahead.used == 1
    fresh = PartTracker(model).compute(closed, transport.engine.epoch)
    assert np.array_equal(answers.window, fresh.window)
    assert np.array_equal(answers.part, fresh.part)
    assert ahead.take() is None  # handed back once


def test_a_note_after_computing_ahead_makes_the_close_compute(model: Model) -> None:
    transport, ahead = play_until(model, CLOSE - 2)
    ahead.compute()
    clock(transport, CLOSE - 1)
    transport.handle(quiet(CLOSE - 1), [0x90, 100, 90])
    assert ahead.wait_s() == QUIET_S  # the pending windows changed
    assert clock(transport, CLOSE) and ahead.take() is None and ahead.used == 0


def test_a_stop_after_computing_ahead_makes_the_close_compute(model: Model) -> None:
    """Stop starts every part's history afresh: answers computed before it carry the old
    history, so the close after Continue does not use them."""
    transport, ahead = play_until(model, CLOSE - 1)
    ahead.compute()
    t = quiet(CLOSE - 1)
    transport.handle(t, [0xFC])
    transport.handle(t + PERIOD, [0xFB])
    assert not transport.handle(t + 2 * PERIOD, [0xF8])  # marks the position
    closed = transport.handle(t + 3 * PERIOD, [0xF8])
    assert closed and ahead.take() is None


def test_not_due_when_the_bar_line_is_near_or_time_stands_still(model: Model) -> None:
    transport, ahead = play_until(model, CLOSE - 1)
    assert not ahead.due((CLOSE + 1) * PERIOD - PERIOD // 10)  # 2 ms before the bar line
    transport.handle(quiet(CLOSE - 1), [0xFC])
    assert ahead.wait_s() == QUIET_S and not ahead.due(quiet(CLOSE - 1) + PERIOD)


def test_a_failing_model_is_not_tried_again_before_the_same_bar_line(model: Model) -> None:
    transport, ahead = play_until(Failing(model), CLOSE - 1)
    with pytest.raises(RuntimeError):
        ahead.compute()
    assert ahead.gave_up_at == 2 and ahead.wait_s() is None and not ahead.due(quiet(CLOSE - 1))
    clock(transport, CLOSE)
    assert ahead.take() is None
    clock(transport, CLOSE + 1)
    assert ahead.wait_s() == QUIET_S  # the next bar line is tried


def test_input_that_keeps_changing_is_computed_ahead_in_the_last_clock_only(model: Model) -> None:
    """Input that changes the pending windows on every clock (controllers crossing a
    threshold, here a note a clock) would waste every computation ahead but the last: before
    the bar line's last clock period the lookahead waits until the windows have stayed the
    same for a period; in that period it computes as soon as the input is quiet."""
    transport, ahead = play_until(model, CLOSE - 40)
    t = (CLOSE - 39) * PERIOD + 2_000_000  # 2 ms after clock CLOSE - 40
    assert not ahead.due(t) and not ahead.due(t + PERIOD // 2)  # changed a moment ago
    assert ahead.due(t + PERIOD)  # the same for a clock period: compute
    for k in range(CLOSE - 39, CLOSE):
        clock(transport, k)
        transport.handle((k + 1) * PERIOD, [0x91, 40 + k % 20, 90])
        assert ahead.due((k + 1) * PERIOD + 2_000_000) == (k == CLOSE - 1), k


def test_the_worker_sleeps_until_the_lookahead_could_compute(model: Model) -> None:
    """Once :meth:`Lookahead.due` has seen the pending windows, the worker need not wake every
    :data:`QUIET_S` to ask again: ``wait_s`` says when ``due`` could first say yes."""
    transport, ahead = play_until(model, CLOSE - 40)
    t = (CLOSE - 39) * PERIOD + 2_000_000
    assert ahead.wait_s(t) == QUIET_S  # not seen yet: wait for the input to be quiet
    assert not ahead.due(t)  # seen now, changed a moment ago
    wait = ahead.wait_s(t + 1_000_000)
    assert wait == pytest.approx((PERIOD - 1_000_000) / 1e9)  # a period after it was seen
    assert not ahead.due(t + 1_000_000 + round(wait * 1e9) - 1_000)
    assert ahead.due(t + 1_000_000 + round(wait * 1e9))
    assert ahead.wait_s() == QUIET_S  # without the time, as before

    transport, ahead = play_until(model, CLOSE - 2)
    t = quiet(CLOSE - 2)  # 1.75 periods before the bar line
    assert not ahead.due(t)
    wait_ns = round(ahead.wait_s(t) * 1e9)  # until the bar line's last period begins
    assert wait_ns == pytest.approx(0.75 * PERIOD - ahead.margin_ns, abs=1_000)
    assert not ahead.due(t + wait_ns - 1_000_000)
    # The transport counts the song's position in ticks, so the wait can end a tick early: then
    # the worker waits QUIET_S once more.
    assert ahead.due(t + wait_ns + round(QUIET_S * 1e9))

    transport.handle(t, [0xFC])  # stopped: nothing can be due until the song moves
    assert not ahead.due(t + PERIOD) and ahead.wait_s(t + PERIOD) is None
