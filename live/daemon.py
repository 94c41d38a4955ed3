"""`kdlive listen`: the daemon. MIDI in -> clock-synced windows -> model -> MIDI CC and OSC out.

Threads, as DESIGN.md asks:

- the port's callback (under JACK: the audio thread) only timestamps each message and puts it
  in the :class:`live.inbox.Inbox`: no parsing, no allocation beyond the tuple, no locks held;
- one worker owns everything else: the transport, the window engine, the model, the outputs.
  It wakes for each message, and at deadlines (the internal clock's next bar line, a MIDI
  clock that stopped, the stats timer, the input port check).

Windows that close together (every followed channel at a bar line) go to the model as one
batch; :class:`live.parts.PartTracker` keeps each channel's running answer beside the window's
own. For each window the part's own channel gets CC ``cc_class`` = the index of the window's
most likely class (all windows' first), CC ``cc_part`` = the running answer's, then CC
``cc_base + i`` = the window's probability of class i scaled to 0-127; OSC gets
``/kdlive/<channel>/probs`` (8 floats, contract order), ``/kdlive/<channel>/class`` (name,
confidence) and ``/kdlive/<channel>/part`` (the running answer's 8 floats). A channel that
declares its instrument (``--declare``, or a Program Change of a program in the classes) also
gets its likeness: CC ``cc_likeness`` = the window's probability of the declared class, 0-127,
and ``/kdlive/<channel>/likeness`` (class name, probability). An empty window emits nothing.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from live.engine import ClosedWindow, WindowEngine
from live.inbox import Inbox
from live.inputs import ONSET
from live.midifile import DRUM_CHANNEL
from live.parts import Answers, PartTracker, StepModel
from live.taxonomy import class_of_program
from live.transport import NS, Transport
from live.view import ChannelRow

log = logging.getLogger("kdlive")
#: The logger of ``--stats`` lines (live.listen prints them as they are, without time or level).
STATS_LOGGER = "kdlive.stats"
stats_log = logging.getLogger(STATS_LOGGER)

LATENCY_RING = 8192
#: Compute ahead once the input has been quiet this long (a chord's notes arrive together)...
SPECULATE_AFTER_S = 0.002
#: ...and only if the bar line is at least this far away (else the closing event could wait).
SPECULATE_MARGIN_NS = 3_000_000


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


@dataclass(frozen=True)
class OutputMap:
    cc_base: int = 20
    cc_class: int = 28
    cc_part: int = 30
    cc_likeness: int = 29

    def __post_init__(self) -> None:
        ccs = (self.cc_base, self.cc_base + 7, self.cc_class, self.cc_part, self.cc_likeness)
        if not all(0 <= cc <= 127 for cc in ccs):
            raise ValueError("CC numbers must be 0-127 (cc_base + 7 included)")
        single = {
            "--cc-class": self.cc_class,
            "--cc-part": self.cc_part,
            "--cc-likeness": self.cc_likeness,
        }
        for flag, cc in single.items():
            if self.cc_base <= cc <= self.cc_base + 7:
                raise ValueError(
                    f"{flag} {cc} collides with the probability CCs "
                    f"{self.cc_base}-{self.cc_base + 7}"
                )
        for (a, x), (b, y) in itertools.combinations(single.items(), 2):
            if x == y:
                raise ValueError(f"{a} and {b} are both {x}: pick two CCs")


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

    def percentiles(self) -> dict[str, float]:
        n = min(self.count, LATENCY_RING)
        if n == 0:
            return {}
        ms = self.latency_ns[:n] / 1e6
        return {
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max()),
            "n": n,
        }


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
        outputs: OutputMap = OutputMap(),
        stats_every: float = 0.0,
        on_emit: Callable[[list[ClosedWindow], Answers], None] | None = None,
        declared: dict[int, str] | None = None,
    ) -> None:
        self.model, self.engine, self.transport = model, engine, transport
        #: Channel -> class the user declared (``--declare``); a Program Change declares too.
        self.declared = dict(declared or {})
        #: Each channel's latest window for the terminal view (:mod:`live.view`): replaced
        #: whole at every bar line, so a reader on another thread never sees it half-made.
        self.board: dict[int, ChannelRow] = {}
        self.inbox = Inbox() if inbox is None else inbox
        self.midi_in, self.midi_out, self.osc, self.map = midi_in, midi_out, list(osc), outputs
        self.classes = list(model.classes)
        self.stop_event = threading.Event()
        self.stats = Stats()
        self.stats_every = stats_every
        self.on_emit = on_emit
        self.parts = PartTracker(model)
        self.thread: threading.Thread | None = None
        #: Answers computed ahead for the pending windows (see :meth:`speculate`).
        self.ahead: Answers | None = None
        self.speculations = 0
        self.reused = 0
        #: The clock of event times: perf_counter, or the JACK sample clock (native input).
        self.clock: Callable[[], int] = time.perf_counter_ns if midi_in is None else midi_in.now_ns
        self.worker_errors = 0
        #: The bar line whose windows failed to compute ahead: not tried again before it.
        self.gave_up_ahead: int | None = None

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
            ahead = not self.engine.peek_current()
            if ahead:
                wait = min(wait, SPECULATE_AFTER_S)
            msg: Sequence[int] | None
            try:
                t_ns, msg = self.inbox.get(timeout=wait)
            except queue.Empty:
                t_ns, msg = self.clock(), None
                if ahead and self._worth_speculating(t_ns):
                    try:
                        self.speculate()
                    except Exception:  # the close will compute it again
                        self.worker_errors += 1
                        self.engine.peek_key = None
                        self.gave_up_ahead = self.engine.next_close()  # once per bar line
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

    def _worth_speculating(self, t_ns: int) -> bool:
        close = self.engine.next_close()
        if close == self.gave_up_ahead:
            return False
        left = self.transport.ns_until(close, t_ns)
        return left is not None and left > SPECULATE_MARGIN_NS

    def speculate(self) -> None:
        """Compute the pending windows' probabilities ahead, while the input is quiet before
        the bar line. A window's roll is final once no event before the bar line is left to
        come, so when the closing event arrives and nothing changed since, its results go out
        at once: the model's time leaves the path from the bar line to the CC."""
        windows = self.engine.peek()
        self.speculations += 1
        self.ahead = self.parts.compute(windows, self.engine.epoch) if windows else None

    def emit(self, closed: list[ClosedWindow], t_event_ns: int) -> None:
        """One model call for the windows that closed together (none if they were computed
        ahead and nothing changed since), then CC and OSC per window."""
        b = len(closed)
        ahead, self.ahead = self.ahead, None
        if self.engine.last_close_reused and ahead is not None and len(ahead.window) == b:
            answers = ahead
            self.reused += 1
        else:
            answers = self.parts.compute(closed, self.engine.epoch)
        self.parts.commit(answers)
        probs = answers.window
        m = self.map
        # All MIDI first, then OSC. The class CCs of every window go first: at small JACK
        # periods a buffer holds ~28 events, and the class is what most mappings use.
        values = np.rint(probs * 127).astype(np.int64).tolist()
        best = probs.argmax(axis=1).tolist()
        part_best = answers.part.argmax(axis=1).tolist()
        likeness = [self.likeness(w.channel, p) for w, p in zip(closed, probs, strict=True)]
        if self.midi_out is not None:
            send = self.midi_out.send_message
            status = [0xB0 | (w.channel - 1) for w in closed]
            try:
                for st, k in zip(status, best, strict=True):
                    send([st, m.cc_class, k])
                for st, k in zip(status, part_best, strict=True):
                    send([st, m.cc_part, k])
                for st, like in zip(status, likeness, strict=True):
                    if like is not None:
                        send([st, m.cc_likeness, int(round(like[1] * 127))])
                for st, vals in zip(status, values, strict=True):
                    for i, v in enumerate(vals):
                        send([st, m.cc_base + i, v])
            except Exception:  # a vanished output port must not kill us
                self.stats.send_errors += 1
        for client in self.osc:
            for w, p, k, q, like in zip(closed, probs, best, answers.part, likeness, strict=True):
                try:
                    client.send_message(f"/kdlive/{w.channel}/probs", [float(x) for x in p])
                    client.send_message(
                        f"/kdlive/{w.channel}/class", [self.classes[k], float(p[k])]
                    )
                    client.send_message(f"/kdlive/{w.channel}/part", [float(x) for x in q])
                    if like is not None:
                        client.send_message(f"/kdlive/{w.channel}/likeness", list(like))
                except OSError:
                    self.stats.send_errors += 1
        self.stats.add(self.clock() - t_event_ns)
        self.board = self.board | self._rows(closed, answers, likeness)
        self.stats.batches += 1
        self.stats.emitted += b
        if self.on_emit is not None:
            self.on_emit(closed, answers)
        self.engine.tidy()

    def _rows(
        self, closed: list[ClosedWindow], answers: Answers, likeness: list[tuple[str, float] | None]
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

    def likeness(self, channel: int, probs: npt.NDArray[np.float32]) -> tuple[str, float] | None:
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
            "computed_ahead": self.reused,
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
