"""`kdlive listen`'s Python API: open the ports a :class:`live.settings.ListenSettings` names
(:func:`open_ports`), wire the daemon (:func:`build_daemon`), and run it in the foreground until
SIGINT or SIGTERM, then stop it and close its ports without hanging (:func:`run_until_signal`).
"""

from __future__ import annotations

import logging
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from logging.handlers import QueueHandler, QueueListener
from types import FrameType
from typing import Any, cast

from pythonosc.udp_client import SimpleUDPClient

from live.channels import channels_text
from live.daemon import STATS_LOGGER, Daemon
from live.engine import ClosedWindow, WindowEngine
from live.inbox import Inbox
from live.model import Model
from live.parts import Answers
from live.portbase import WatchedInput
from live.ports import close_io, open_io
from live.settings import ListenSettings, osc_address
from live.transport import Transport

log = logging.getLogger("kdlive")

#: How long closing the ports may take before the process exits anyway.
CLOSE_TIMEOUT_S = 3.0
#: The view redraws only this far from a bar line (before it, after it): see
#: :meth:`live.daemon.Daemon.clear_to_draw`.
DRAW_BEFORE_NS, DRAW_AFTER_NS = 30_000_000, 15_000_000
#: ... unless no such moment came for this long (very short bars): then it draws anyway.
DRAW_AT_LEAST_EVERY_S = 1.0


@dataclass
class Ports:
    """The daemon's MIDI ports: the input fills ``inbox`` from its callback; the output has
    ``send_message``. :func:`close_io` closes them."""

    inbox: Inbox
    midi_in: WatchedInput
    midi_out: Any


def open_ports(settings: ListenSettings) -> Ports:
    """Open the input and output ``settings`` name (:func:`live.ports.open_io`)."""
    inbox = Inbox()
    midi_in, midi_out = open_io(
        inbox,
        api=settings.api,
        port=settings.port,
        virtual=settings.virtual,
        out_port=settings.out_port,
        out_virtual=settings.out_virtual,
    )
    return Ports(inbox, midi_in, midi_out)


def build_daemon(settings: ListenSettings, ports: Ports) -> Daemon:
    """The daemon ``settings`` describe, on ``ports``: the model loaded, the window engine on
    the live bar grid, the transport, the outputs (CC map, OSC clients), not yet started."""
    model = Model(settings.model, backend=settings.backend, threads=settings.threads)
    engine = WindowEngine(
        settings.fixed_meter(),
        hop_bars=settings.hop_bars,
        channels=settings.channels,
        max_note_bars=settings.max_note_bars,
        controls=model.contract.controls,
    )
    return Daemon(
        model,
        engine,
        Transport(engine, bpm=settings.bpm, say=log.info),
        inbox=ports.inbox,
        midi_in=ports.midi_in,
        midi_out=ports.midi_out,
        osc=[SimpleUDPClient(*osc_address(target)) for target in settings.osc],
        outputs=settings.outputs,
        stats_every=settings.stats_every,
        on_emit=window_logger(model.classes) if settings.verbose else None,
        declared=settings.declared,
    )


def ready_line(settings: ListenSettings, daemon: Daemon, ports: Ports) -> str:
    """What the daemon says once it listens: ports, CC map, OSC, model, backend, channels."""
    m, model = settings.outputs, cast(Model, daemon.model)
    osc = "".join(f", OSC {t}" for t in settings.osc)
    return (
        f"listening on {ports.midi_in.connected_name!r} -> CC {m.cc_base}-{m.cc_base + 7} "
        f"(+{m.cc_class} class, {m.cc_part} part, {m.cc_likeness} likeness) on "
        f"{settings.out_port or settings.out_virtual!r}{osc}; model "
        f"{model.bundle.dir.name} (contract {model.contract}) on "
        f"{model.backend}; channels {channels_text(settings.channels)}"
    )


def window_logger(classes: Any) -> Callable[[list[ClosedWindow], Answers], None]:
    """``--verbose``: log each window's class and the part's running class, with confidence."""

    def on_emit(closed: list[ClosedWindow], answers: Answers) -> None:
        for w, p, q in zip(closed, answers.window, answers.part, strict=True):
            best, part = classes[int(p.argmax())], classes[int(q.argmax())]
            log.info(
                "ch %d bar %d: %s %.2f (part: %s %.2f)",
                w.channel,
                w.bar + 1,
                best,
                float(p.max()),
                part,
                float(q.max()),
            )

    return on_emit


@contextmanager
def logging_off_the_worker(console: Any = None) -> Iterator[None]:
    """Log lines (and ``--stats``) go through a queue to a thread of their own, which prints
    them: on stderr as ``HH:MM:SS kdlive: ...``, or above the view on a rich ``console``. The
    worker only appends a record: it never waits on a slow or paused terminal (Ctrl-S, a full
    pipe) and never redraws the view (a line printed under rich's Live redraws it)."""
    if console is not None:
        from rich.logging import RichHandler

        lines: logging.Handler = RichHandler(console=console, show_path=False, markup=False)
        stats: logging.Handler = _ConsoleLines(console)
    else:
        lines = logging.StreamHandler(sys.stderr)
        lines.setFormatter(logging.Formatter("%(asctime)s kdlive: %(message)s", "%H:%M:%S"))
        stats = logging.StreamHandler(sys.stderr)
    lines.addFilter(lambda record: record.name != STATS_LOGGER)
    stats.addFilter(lambda record: record.name == STATS_LOGGER)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers, root.level = [QueueHandler(records)], logging.INFO
    listener = QueueListener(records, lines, stats, respect_handler_level=True)
    listener.start()
    try:
        yield
    finally:
        listener.stop()  # prints what is queued
        root.handlers, root.level = saved


class _ConsoleLines(logging.Handler):
    """A record's message, as it is, on a rich console (above its live view, if any)."""

    def __init__(self, console: Any) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(record.getMessage(), markup=False, highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)


def run_until_signal(daemon: Daemon, ports: Ports, ready: str, console: Any = None) -> None:
    """Log ``ready`` once a signal stops the daemon cleanly, start the worker, wait for SIGINT
    or SIGTERM (or the worker's end), then stop it, close the ports and, with ``--stats``,
    print the last counters. With a rich ``console``, draw the live view there meanwhile."""
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        daemon.request_stop()

    # The input callback (under JACK: the audio thread) waits for the GIL while the worker
    # holds it: hand it over every 0.2 ms instead of every 5 ms.
    sys.setswitchinterval(0.0002)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    log.info("%s", ready)
    daemon.start()
    try:
        if console is not None:
            watch(daemon, console)
        while daemon.thread is not None and daemon.thread.is_alive():
            daemon.thread.join(0.2)
    finally:
        daemon.stop()
        close_within(ports.midi_in, ports.midi_out, CLOSE_TIMEOUT_S)
        if daemon.stats_every:
            daemon.print_stats()
        log.info("stopped (%s)", signal.Signals(received[0]).name if received else "")


def watch(daemon: Daemon, console: Any) -> None:
    """Redraw the view (:mod:`live.view`) from a snapshot a few times a second, on this thread,
    until the worker ends; the last drawing stays on the terminal. A redraw waits for a moment
    clear of bar lines, when the worker has nothing due (:meth:`Daemon.clear_to_draw`)."""
    from rich.live import Live

    from live.view import REFRESH_PER_SECOND, render, snapshot

    period = 1 / REFRESH_PER_SECOND
    poll = min(period, DRAW_AFTER_NS / 1e9)
    drawn = time.monotonic()
    with Live(render(snapshot(daemon)), console=console, auto_refresh=False) as live:
        while daemon.thread is not None and daemon.thread.is_alive():
            daemon.thread.join(period if time.monotonic() - drawn < period else poll)
            now = time.monotonic()
            if now - drawn < period:
                continue
            if now - drawn < DRAW_AT_LEAST_EVERY_S and not daemon.clear_to_draw(
                DRAW_BEFORE_NS, DRAW_AFTER_NS
            ):
                continue
            live.update(render(snapshot(daemon)), refresh=True)
            drawn = time.monotonic()


def close_within(midi_in: WatchedInput, midi_out: Any, timeout: float) -> None:
    """Close the ports (callback first, then the ports), but never hang on the way out: a JACK
    server in synchronous mode waits for every client's cycle before letting one go."""
    closer = threading.Thread(target=close_io, args=(midi_in, midi_out), daemon=True)
    closer.start()
    closer.join(timeout)
    if closer.is_alive():
        log.warning("the MIDI ports did not close within %g s; exiting anyway", timeout)
