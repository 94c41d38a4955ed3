"""How a long job tells what it is doing: progress bars in a terminal, plain lines in a log.

The pipeline reports through a :class:`Reporter`: ``say(stage, message)`` for events (a stage
starts, is current, an epoch ends) and ``progress(task, done, total, info)`` for counts (songs
rendered, steps of an epoch). :func:`reporter` picks bars when the output is a terminal, and
:class:`PlainReporter` otherwise: one line per task at most every few seconds, with its rate,
so a CI log or ``kdtrain all > log`` reads cleanly instead of filling with bar fragments.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, TextIO


class Reporter(Protocol):
    def say(self, stage: str, message: str) -> None: ...

    def progress(self, task: str, done: int, total: int, info: str = "") -> None: ...


class Silent:
    """Reports nothing (library use, tests)."""

    def say(self, stage: str, message: str) -> None:
        pass

    def progress(self, task: str, done: int, total: int, info: str = "") -> None:
        pass


class PlainReporter:
    """Plain lines: every ``say``, and per task its first count, then at most one count every
    ``every`` seconds, and its last (``done == total``): ``stage: 120/594 (3.1/s) info``."""

    def __init__(self, stream: TextIO | None = None, *, every: float = 10.0) -> None:
        self.stream, self.every = stream, every
        self._tasks: dict[str, tuple[float, float]] = {}  # task -> (started, last line)
        self._finished: set[str] = set()

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)

    def say(self, stage: str, message: str) -> None:
        self._print(f"{stage}: {message}")

    def progress(self, task: str, done: int, total: int, info: str = "") -> None:
        now = time.monotonic()
        if task not in self._tasks:
            self._tasks[task] = (now, float("-inf"))
        started, last = self._tasks[task]
        final = done >= total
        if (final and task in self._finished) or (not final and now - last < self.every):
            return
        if final:
            self._finished.add(task)
        rate = done / (now - started) if now > started and done else 0.0
        tail = f" {info}" if info else ""
        self._print(f"{task}: {done}/{total} ({rate:.1f}/s){tail}")
        self._tasks[task] = (started, now)


class BarReporter:
    """rich progress bars, one per task; ``say`` prints above them."""

    def __init__(self, bars) -> None:
        self.bars = bars
        self._tasks: dict[str, int] = {}

    def say(self, stage: str, message: str) -> None:
        self.bars.console.print(f"[bold]{stage}[/bold]: {message}", highlight=False)

    def progress(self, task: str, done: int, total: int, info: str = "") -> None:
        if task not in self._tasks:
            self._tasks[task] = self.bars.add_task(task, total=total, info=info)
        self.bars.update(self._tasks[task], completed=done, total=total, info=info)


@contextmanager
def reporter(*, plain: bool | None = None) -> Iterator[Reporter]:
    """Bars on a terminal (stderr), plain lines otherwise or with ``plain=True``."""
    from rich.console import Console

    console = Console(stderr=True)
    if plain or (plain is None and not console.is_terminal):
        yield PlainReporter()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        "{task.fields[info]}",
    )
    with Progress(*columns, console=console) as bars:
        yield BarReporter(bars)
