"""`kdlive listen` in the foreground: run a built :class:`live.daemon.Daemon` until SIGINT or
SIGTERM, then stop it and close its ports without hanging."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

from live.daemon import Daemon
from live.portbase import WatchedInput
from live.ports import close_io

log = logging.getLogger("kdlive")

#: How long closing the ports may take before the process exits anyway.
CLOSE_TIMEOUT_S = 3.0


def run_until_signal(
    daemon: Daemon, midi_in: WatchedInput, midi_out: Any, ready: str, console: Any = None
) -> None:
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
        close_within(midi_in, midi_out, CLOSE_TIMEOUT_S)
        if daemon.stats_every:
            daemon.print_stats()
        log.info("stopped (%s)", signal.Signals(received[0]).name if received else "")


def watch(daemon: Daemon, console: Any) -> None:
    """Redraw the view (:mod:`live.view`) from a snapshot a few times a second, on this thread,
    until the worker ends; the last drawing stays on the terminal."""
    from rich.live import Live

    from live.view import REFRESH_PER_SECOND, render, snapshot

    period = 1 / REFRESH_PER_SECOND
    with Live(render(snapshot(daemon)), console=console, auto_refresh=False) as live:
        while daemon.thread is not None and daemon.thread.is_alive():
            daemon.thread.join(period)
            live.update(render(snapshot(daemon)), refresh=True)


def close_within(midi_in: WatchedInput, midi_out: Any, timeout: float) -> None:
    """Close the ports (callback first, then the ports), but never hang on the way out: a JACK
    server in synchronous mode waits for every client's cycle before letting one go."""
    closer = threading.Thread(target=close_io, args=(midi_in, midi_out), daemon=True)
    closer.start()
    closer.join(timeout)
    if closer.is_alive():
        log.warning("the MIDI ports did not close within %g s; exiting anyway", timeout)
