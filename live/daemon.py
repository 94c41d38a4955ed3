"""`kdlive listen`: the daemon. MIDI in -> clock-synced windows -> model -> MIDI CC and OSC out.

Threads, as DESIGN.md asks:

- the port's callback (under JACK: the audio thread) only timestamps each message and puts it
  in the :class:`live.inbox.Inbox`: no parsing, no allocation beyond the tuple, no locks held;
- one worker owns everything else: the transport, the window engine, the model, the outputs.
  It wakes for each message, and at deadlines (the internal clock's next bar line, a MIDI
  clock that stopped, the stats timer, the input port check).

Windows that close together (every followed channel at a bar line) go to the model as one
batch; :class:`live.parts.PartTracker` keeps each channel's running answer beside the window's
own, and :class:`live.outputs.Encoder` turns the answers into CC and OSC (what each carries is
there). While the input is quiet before a bar line, :class:`live.ahead.Lookahead` computes the
pending windows, so that at the bar line the worker only sends. An empty window emits nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from live.ahead import Lookahead
from live.engine import ClosedWindow, WindowEngine
from live.inbox import Inbox
from live.inputs import ONSET
from live.latency import summary
from live.midifile import DRUM_CHANNEL
from live.outputs import Encoder, Likeness, OutputMap
from live.parts import Answers, PartTracker, StepModel
from live.taxonomy import class_of_program
from live.transport import NS, Transport
from live.view import ChannelRow

log = logging.getLogger("kdlive")
#: The logger of ``--stats`` lines (live.listen prints them as they are, without time or level).
STATS_LOGGER = "kdlive.stats"
stats_log = logging.getLogger(STATS_LOGGER)

#: Latencies kept for ``--stats`` (the last this many batches).
LATENCY_RING = 8192


class Predictor(StepModel, Protocol):
    """The model (:class:`live.model.Model`): its classes, and answers by input contract."""

    @property
    def classes(self) -> Sequence[str]: ...


class MidiInput(Protocol):
    """The input port, as the worker sees it (:class:`live.portbase.WatchedInput`)."""

    #: Times the source vanished or was disconnected (its notes end then).
    losses: int

    def check(self) -> None:
        """Notice a vanished source and reconnect (called about once a second)."""

    def counters(self) -> dict[str, int]:
        """The port's own counters (reconnects; JACK xruns), for ``--stats``."""

    def now_ns(self) -> int:
        """Now, on the clock that stamps the input's event times."""


class MidiSender(Protocol):
    def send_message(self, message: Sequence[int]) -> None: ...


class OscSender(Protocol):
    def send_message(self, address: str, value: Any) -> None: ...


class Stats:
    """Latency (closing event's arrival -> last output sent) and counters, for ``--stats``."""

    def __init__(self) -> None:
        self.latency_ns = np.zeros(LATENCY_RING, np.int64)
        self.count = 0
        self.batches = 0
        self.emitted = 0
        self.send_errors = 0

    def add(self, ns: int) -> None:
        self.latency_ns[self.count % LATENCY_RING] = ns
        self.count += 1

    def percentiles(self) -> dict[str, Any]:
        """``p50_ms``, ``p99_ms``, ``max_ms`` and ``n`` over the last :data:`LATENCY_RING`
        batches; empty before the first."""
        n = min(self.count, LATENCY_RING)
        if n == 0:
            return {}
        return {**summary(self.latency_ns[:n] / 1e6), "n": n}


class Daemon:
    """The worker and its state. Ports are injected: messages come through ``inbox`` (the
    input's callback fills it), CC go to anything with ``send_message``, and ``midi_in`` (if
    any) is checked about once a second and gives the clock of event times."""

    def __init__(
        self,
        model: Predictor,
        engine: WindowEngine,
        transport: Transport,
        *,
        inbox: Inbox | None = None,
        midi_in: MidiInput | None = None,
        midi_out: MidiSender | None = None,
        osc: Sequence[OscSender] = (),
        outputs: OutputMap | None = None,
        stats_every: float = 0.0,
        on_emit: Callable[[list[ClosedWindow], Answers], None] | None = None,
        declared: dict[int, str] | None = None,
    ) -> None:
        self.model, self.engine, self.transport = model, engine, transport
        #: Channel -> class the user declared (``--declare``); a Program Change declares too.
        self.declared = dict(declared or {})
        #: Each channel's latest window, as the terminal view shows it (:mod:`live.view`):
        #: replaced whole at every bar line, so a reader on another thread never sees it
        #: half-made.
        self.view_rows: dict[int, ChannelRow] = {}
        self.inbox = Inbox() if inbox is None else inbox
        self.midi_in, self.midi_out, self.osc = midi_in, midi_out, list(osc)
        self.classes = list(model.classes)
        self.encoder = Encoder(outputs or OutputMap(), self.classes)
        self.stop_event = threading.Event()
        self.stats = Stats()
        self.stats_every = stats_every
        self.on_emit = on_emit
        self.parts = PartTracker(model)
        #: The answers for the pending windows, computed while the input is quiet.
        self.ahead = Lookahead(engine, transport, self.parts)
        self.thread: threading.Thread | None = None
        #: The clock of event times: perf_counter, or the JACK sample clock (native input).
        self.clock: Callable[[], int] = time.perf_counter_ns if midi_in is None else midi_in.now_ns
        self.worker_errors = 0

    # ----------------------------------------------------------------------- worker

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name="kdlive-worker", daemon=True)
        self.thread.start()

    def request_stop(self) -> None:
        """Ask the worker to stop (safe from a signal handler); :meth:`stop` also waits."""
        self.stop_event.set()
        self.inbox.wake()

    def stop(self, timeout: float = 2.0) -> None:
        self.request_stop()
        if self.thread is not None:
            self.thread.join(timeout)

    def run(self) -> None:
        next_stats = time.monotonic() + self.stats_every if self.stats_every > 0 else None
        next_check = time.monotonic() + 1.0
        while not self.stop_event.is_set():
            now_ns = self.clock()
            wait = 0.5
            deadline = self.transport.deadline_ns()
            if deadline is not None:
                wait = min(wait, max(0.0, (deadline - now_ns) / NS))
            if next_stats is not None:
                wait = min(wait, max(0.0, next_stats - time.monotonic()))
            quiet_s = self.ahead.wait_s(now_ns)
            if quiet_s is not None:
                wait = min(wait, quiet_s)
            msg: Sequence[int] | None
            try:
                t_ns, msg = self.inbox.get(timeout=wait)
            except queue.Empty:
                t_ns, msg = self.clock(), None
                if quiet_s is not None and self.ahead.due(t_ns):
                    try:
                        self.ahead.compute()
                    except Exception:  # the close will compute it again
                        self.worker_errors += 1
                        log.exception("error while computing ahead (kept running)")
                    continue
            if self.stop_event.is_set():
                break
            try:
                if msg is None:
                    closed = self.transport.tick(t_ns)
                else:
                    closed = self.transport.handle(t_ns, msg)
                if closed:
                    self.emit(closed, t_ns)
            except Exception:  # never die of one bad event: count and log it
                self.worker_errors += 1
                log.exception("error while handling MIDI input (kept running)")
            mono = time.monotonic()
            if next_stats is not None and mono >= next_stats:
                self.print_stats()
                next_stats = mono + self.stats_every
            if self.midi_in is not None and mono >= next_check:
                next_check = mono + 1.0
                try:
                    losses = self.midi_in.losses
                    self.midi_in.check()
                    if self.midi_in.losses != losses:
                        self.end_notes(self.clock())
                except Exception:
                    log.exception("input port check failed (will retry)")

    def end_notes(self, t_ns: int) -> None:
        """The input vanished or was disconnected: its note-offs are lost, so every note it
        left sounding ends now (an All Notes Off on each channel), and a channel's next
        window holds only what comes after."""
        for channel in range(16):
            closed = self.transport.handle(t_ns, [0xB0 | channel, 123, 0])
            if closed:
                self.emit(closed, t_ns)

    def emit(self, closed: list[ClosedWindow], t_event_ns: int) -> None:
        """One model call for the windows that closed together (none if their answers were
        computed ahead), then all their CC, then their OSC."""
        answers = self.ahead.take()
        if answers is None:
            answers = self.parts.compute(closed, self.engine.epoch)
        self.parts.commit(answers)
        channels = [w.channel for w in closed]
        batch = (channels, answers.window, answers.part)
        likeness = [self.likeness(c, p) for c, p in zip(channels, answers.window, strict=True)]
        if self.midi_out is not None:
            send = self.midi_out.send_message
            try:
                for message in self.encoder.cc(*batch, likeness):
                    send(message)
            except Exception:  # a vanished output port must not kill us
                self.stats.send_errors += 1
        if self.osc:
            windows = self.encoder.osc(*batch, likeness)
            for client in self.osc:
                for window in windows:
                    try:
                        for address, values in window:
                            client.send_message(address, values)
                    except OSError:
                        self.stats.send_errors += 1
        self.stats.add(self.clock() - t_event_ns)
        self.view_rows = self.view_rows | self._rows(closed, answers, likeness)
        self.stats.batches += 1
        self.stats.emitted += len(closed)
        if self.on_emit is not None:
            self.on_emit(closed, answers)
        self.engine.tidy()

    def _rows(
        self, closed: list[ClosedWindow], answers: Answers, likeness: list[Likeness]
    ) -> dict[int, ChannelRow]:
        """The view's rows of the windows just sent (after the outputs: off the latency)."""
        names, bars = self.classes, self.engine.spec.bars
        rows = {}
        for w, p, q, like in zip(closed, answers.window, answers.part, likeness, strict=True):
            k, j = int(p.argmax()), int(q.argmax())
            onsets = np.count_nonzero(w.inputs[ONSET]) if len(w.inputs) > ONSET else 0
            rows[w.channel] = ChannelRow(
                w.channel,
                w.bar + 1,
                names[k],
                float(p[k]),
                names[j],
                float(q[j]),
                onsets / bars,
                like[0] if like else None,
                like[1] if like else None,
            )
        return rows

    def likeness(self, channel: int, probs: npt.NDArray[np.float32]) -> Likeness:
        """The class the channel declares (``--declare``, else its last Program Change, if that
        program is one of the classes) and the window's probability of it, or None."""
        name = self.declared.get(channel)
        program = self.transport.programs[channel]
        if name is None and program is not None:
            name = class_of_program(program, is_drum=channel == DRUM_CHANNEL + 1)
        if name is None or name not in self.classes:
            return None
        return name, float(probs[self.classes.index(name)])

    def clear_to_draw(self, before_ns: int, after_ns: int) -> bool:
        """Whether the worker is clear of bar lines now: the next closes more than
        ``before_ns`` away, the last closed more than ``after_ns`` ago (or time stands still).
        The view draws only then, so that its redraw never competes with a close for the GIL
        (called from the drawing thread; a torn read only misplaces one redraw)."""
        engine = self.engine
        try:
            now = self.clock()
            nxt = self.transport.ns_until(engine.next_close(), now)
            prev = self.transport.ns_until(engine.bars.start(engine.next_end_bar - engine.hop), now)
        except Exception:
            return True
        if nxt is None or prev is None:
            return True
        return nxt > before_ns and -prev > after_ns

    # ------------------------------------------------------------------------ stats

    def counters(self) -> dict[str, Any]:
        return {
            **asdict(self.transport.counters),
            **asdict(self.engine.counters),
            "batches": self.stats.batches,
            "emitted": self.stats.emitted,
            "send_errors": self.stats.send_errors,
            "computed_ahead": self.ahead.used,
            "worker_errors": self.worker_errors,
            **(self.midi_in.counters() if self.midi_in is not None else {}),
            "mode": self.transport.mode,
            "bpm": round(self.transport.bpm, 2),
        }

    def print_stats(self) -> None:
        p = self.stats.percentiles()
        lat = (
            f"latency p50 {p['p50_ms']:.2f} ms, p99 {p['p99_ms']:.2f} ms, max "
            f"{p['max_ms']:.2f} ms over {p['n']} batches"
            if p
            else "no windows yet"
        )
        c = self.counters()
        # through logging: its queue keeps the worker off the terminal (live.listen)
        stats_log.info("[stats] %s; %s", lat, ", ".join(f"{k} {v}" for k, v in c.items()))
