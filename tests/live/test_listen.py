"""live.listen: what the daemon's log lines and ``--stats`` cost the worker."""

from __future__ import annotations

import io
import logging
import threading
import time

import pytest
from rich.console import Console

from live.daemon import STATS_LOGGER
from live.listen import logging_off_the_worker


class StuckStream(io.StringIO):
    """A terminal that does not take output (paused with Ctrl-S, or a pipe nobody reads)
    until ``go`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def write(self, text: str) -> int:
        self.go.wait()
        return super().write(text)


def test_a_stuck_terminal_never_blocks_a_log_line(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = StuckStream()
    monkeypatch.setattr("sys.stderr", stderr)
    with logging_off_the_worker():
        t0 = time.monotonic()
        for i in range(200):
            logging.getLogger("kdlive").info("window %d", i)
        logging.getLogger(STATS_LOGGER).info("[stats] %s", "latency p50 1.00 ms")
        took = time.monotonic() - t0
        assert stderr.getvalue() == ""  # nothing got through yet
        stderr.go.set()
    assert took < 1.0, f"logging waited on the terminal for {took:.2f} s"
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 201
    assert lines[0].endswith(" kdlive: window 0") and lines[199].endswith(" kdlive: window 199")
    assert lines[200] == "[stats] latency p50 1.00 ms"  # as it is: benchmarks parse it


def test_under_the_view_lines_print_on_the_console_and_errors_keep_their_traceback() -> None:
    console = Console(file=io.StringIO(), width=200, force_terminal=False)
    log = logging.getLogger("kdlive")
    before = logging.getLogger().handlers[:]
    with logging_off_the_worker(console):
        logging.getLogger(STATS_LOGGER).info("[stats] no windows yet; mode idle")
        try:
            raise RuntimeError("simulated")
        except RuntimeError:
            log.exception("error while handling MIDI input (kept running)")
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "[stats] no windows yet; mode idle" in out.splitlines()
    assert "error while handling MIDI input" in out and "RuntimeError: simulated" in out
    assert logging.getLogger().handlers == before  # put back as it was
