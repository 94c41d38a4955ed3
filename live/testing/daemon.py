"""The daemon's worker with in-memory ports: a :class:`Recorder` for each output, a clocked
song of raw messages fed to its inbox, and the answers the model itself gives to the inputs
the engine made (for any bundle: with a state or without)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from live.daemon import Daemon
from live.engine import FixedMeter, WindowEngine
from live.model import Model
from live.taxonomy import CLASSES
from live.transport import Transport

PERIOD = 20_833_320  # ns per MIDI clock, ~120 BPM
#: What ``on_emit`` recorded of a window: channel, bar, inputs (contract 2), probabilities.
Emitted = tuple[int, int, np.ndarray, np.ndarray]
#: A raw MIDI message at its time (ns from the start of the song).
Timed = tuple[int, list[int]]


class Recorder:
    """An in-memory output port: MIDI (``send_message(bytes)``) or OSC (address, values)."""

    def __init__(self) -> None:
        self.sent: list = []

    def send_message(self, *args: Any) -> None:
        self.sent.append(args[0] if len(args) == 1 else args)


def make_daemon(model: Any, **kw: Any) -> tuple[Daemon, Recorder, Recorder, list[list[Emitted]]]:
    """A daemon following ``channels`` (default all 16) in 4/4, with a MIDI and an OSC
    :class:`Recorder`, and the windows it emitted, batch by batch; ``kw`` go to ``Daemon``.
    ``model`` is a :class:`~live.model.Model` or anything with its ``predict``/``step``."""
    engine = WindowEngine(FixedMeter(4, 4), channels=kw.pop("channels", range(1, 17)))
    transport = Transport(engine, say=lambda m: None)
    midi, osc = Recorder(), Recorder()
    emitted: list[list[Emitted]] = []
    d = Daemon(
        model,
        engine,
        transport,
        midi_out=midi,
        osc=[osc],
        on_emit=lambda closed, answers: emitted.append(
            [
                (w.channel, w.bar, w.inputs.copy(), p.copy())
                for w, p in zip(closed, answers.window, strict=True)
            ]
        ),
        **kw,
    )
    return d, midi, osc, emitted


def song_messages(channels: tuple[int, ...] = (1,), bars: int = 4, seed: int = 0) -> list[Timed]:
    """Start, clocks for ``bars`` bars, and a note every eighth on each channel."""
    rng = np.random.default_rng(seed)
    out = [(0, [0xFA])]
    for k in range(bars * 96 + 1):
        t = (k + 1) * PERIOD
        out.append((t, [0xF8]))
        if k % 12 == 0 and k < bars * 96:
            for ch in channels:
                p = int(rng.integers(36, 84))
                out.append((t, [0x90 | (ch - 1), p, 90]))
                out.append((t + 5 * PERIOD, [0x80 | (ch - 1), p, 0]))
    return sorted(out, key=lambda e: e[0])


def run_daemon(
    d: Daemon, messages: list[Timed], expect_batches: int, timeout: float = 10.0
) -> None:
    """Start the worker, feed it ``messages`` (timed from now), wait for ``expect_batches``
    bar lines' answers (at most ``timeout`` s), stop it."""
    t0 = time.perf_counter_ns()
    d.start()
    for t, m in messages:
        d.inbox.feed(m, t0 + t)
    end = time.monotonic() + timeout
    while d.stats.batches < expect_batches and time.monotonic() < end:
        time.sleep(0.01)
    time.sleep(0.05)
    d.stop()


def expected_answers(
    model: Model, bar_lines: list[list[tuple[int, np.ndarray]]]
) -> dict[int, tuple[list, list]]:
    """Each channel's window answers and running answers, from the model itself, given each
    bar line's ``(channel, inputs)``: a bar line's channels answered together (as the daemon
    does: a student whose channels attend to each other reads them all), the state carried
    window to window, or (without one) the mean of the window answers so far; with both, the
    model's ``history_share`` of the state's answer and the rest the mean."""
    out: dict[int, tuple[list, list]] = {}
    state: dict[int, np.ndarray] = {}
    total: dict[int, np.ndarray] = {}
    for line in bar_lines:
        channels = [c for c, _ in line]
        x = np.stack([x[: model.input_shape[0]] for _, x in line]).astype(np.float32)
        if model.state_size:
            zero = np.zeros(model.state_size, np.float32)
            h = np.stack([state.get(c, zero) for c in channels])
            windows, history, h = model.step(x, h)
            state.update(zip(channels, h, strict=True))
        else:
            windows = model.predict(x)
        means = []
        for c, w in zip(channels, windows, strict=True):
            total[c] = total.get(c, 0) + w
            means.append(total[c] / (len(out.get(c, ([], []))[0]) + 1))
        share = model.history_share if model.state_size else 0.0
        parts = np.stack(means) if share == 0 else share * history + (1 - share) * np.stack(means)
        for c, w, part in zip(channels, windows, parts, strict=True):
            mine = out.setdefault(c, ([], []))
            mine[0].append(w)
            mine[1].append(part)
    return out


def check_cc_and_osc_carry_the_models_answers(model: Model) -> None:
    """Two channels for three bar lines through a daemon: its CC and OSC carry exactly the
    model's answers (``AssertionError`` saying what differs otherwise)."""
    d, midi, osc, emitted = make_daemon(model)
    run_daemon(d, song_messages(channels=(1, 5)), expect_batches=3)
    assert [len(b) for b in emitted] == [2, 2, 2]  # bars 1-2, 2-3, 3-4 on channels 1 and 5
    # The answers are the model's on the engine's inputs: each window's own, and the running
    # answer (the state carried from window to window, or the mean of the windows so far).
    expected = expected_answers(model, [[(c, x) for c, _, x, _ in b] for b in emitted])
    for ch in (1, 5):
        windows = [p for batch in emitted for c, _, _, p in batch if c == ch]
        assert np.allclose(windows, expected[ch][0], atol=1e-5)
        parts = [args for address, args in osc.sent if address == f"/kdlive/{ch}/part"]
        assert len(parts) == len(windows) == 3
        for k in range(3):
            assert np.allclose(parts[k], expected[ch][1][k], atol=1e-5), (parts[k], k)
    # 10 CCs per window on the part's own channel: first every window's class index (CC 28),
    # then every part's running class (CC 30), then the probabilities (CC 20-27).
    ccs = list(midi.sent[:20])
    assert [m[1] for m in ccs[:4]] == [28, 28, 30, 30]
    for ch in (1, 5):
        mine = [m for m in ccs if m[0] == 0xB0 | (ch - 1)]
        p, part = expected[ch][0][0], expected[ch][1][0]
        assert [m[1] for m in mine] == [28, 30, *range(20, 28)]
        assert (mine[0][2], mine[1][2]) == (int(p.argmax()), int(part.argmax()))
        assert [m[2] for m in mine[2:]] == [int(round(x * 127)) for x in p]
    # OSC: /kdlive/<ch>/probs (8 floats, contract order), /kdlive/<ch>/class (name, conf) and
    # /kdlive/<ch>/part (the running answer's 8 floats).
    sent = dict(osc.sent[:6])
    for ch in (1, 5):
        p = expected[ch][0][0]
        assert np.allclose(sent[f"/kdlive/{ch}/probs"], p, atol=1e-5)
        name, conf = sent[f"/kdlive/{ch}/class"]
        assert name == CLASSES[int(p.argmax())] and abs(conf - float(p.max())) <= 1e-5
    assert d.stats.percentiles()["n"] == 3
