"""`kdlive learn`: one CC on the daemon's output port, its value sweeping slowly, until Ctrl-C.

A DAW or controller software maps a CC by "MIDI learn": it waits for the first CC to arrive.
The daemon sends CC 29 (likeness) or CC 30 (running answer) only when a channel plays through
a bar line; ``kdlive learn 30`` sends CC 30 alone, on the port ``kdlive listen`` sends on (same
``--out-virtual``/``--out-port``/``--api``, same names), so the mapping is learnt in one step.
The value sweeps 0 -> 127 -> 0 (:func:`sweep`) so that a learn that wants movement (a range,
a direction) sees some.
"""

from __future__ import annotations

import itertools
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

from live.errors import SettingError
from live.ports import close_output, open_output_port

#: Seconds between two messages.
PERIOD_S = 0.05
#: Value step of the sweep: 0 -> 127 -> 0 in 64 messages, 3.2 s at :data:`PERIOD_S`.
STEP = 4


def sweep_cycle(step: int = STEP) -> list[int]:
    """One cycle of the sweep: ``0, step, ..., 127`` up, then down to ``step - 1`` (the next
    cycle starts at 0 again)."""
    return [*range(0, 127, step), 127, *range(127 - step, 0, -step)]


def sweep(step: int = STEP) -> Iterator[int]:
    """The values sent, one per message, for ever: :func:`sweep_cycle` repeated."""
    return itertools.cycle(sweep_cycle(step))


@dataclass(frozen=True)
class LearnSettings:
    """What ``kdlive learn`` sends and where (the output options are ``kdlive listen``'s).

    Attributes:
        cc: the controller number, 0-127.
        channel: 1-16.
        out_port / out_virtual: an existing output port, else a new virtual one.
        api: MIDI API (``jack``, ``alsa``, ``coremidi``, ``winmm``); None: the platform's.
        period: seconds between two messages.
    """

    cc: int
    channel: int = 1
    out_port: str | None = None
    out_virtual: str = "kdlive out"
    api: str | None = None
    period: float = PERIOD_S

    def __post_init__(self) -> None:
        if not 0 <= self.cc <= 127:
            raise SettingError(f"{{cc}} {self.cc}: CC numbers are 0-127", "cc")
        if not 1 <= self.channel <= 16:
            raise SettingError(f"{{channel}} {self.channel}: channels are 1-16", "channel")
        if self.period <= 0:
            raise SettingError("{period} must be more than 0", "period")

    def message(self, value: int) -> list[int]:
        """The Control Change carrying ``value`` (3 bytes)."""
        return [0xB0 | (self.channel - 1), self.cc, value]

    def describe(self) -> str:
        where = self.out_port or self.out_virtual
        return (
            f"sending CC {self.cc} on channel {self.channel} to {where!r}: values 0-127-0, "
            f"one every {self.period * 1000:g} ms, until Ctrl-C; MIDI-learn it in the DAW now"
        )


def run(settings: LearnSettings, say: Callable[[str], Any]) -> None:
    """Open the output, say what it sends where, send the sweep until SIGINT or SIGTERM, close
    the port."""
    out = open_output_port(api=settings.api, port=settings.out_port, virtual=settings.out_virtual)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    saved = signal.signal(signal.SIGINT, on_signal), signal.signal(signal.SIGTERM, on_signal)
    try:
        say(settings.describe())
        send(out, settings, stop)
    finally:
        close_output(out)
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGTERM, saved[1])
    say("stopped")


def send(out: Any, settings: LearnSettings, stop: threading.Event) -> int:
    """Send the sweep on ``out`` (``send_message``), a message every period, until ``stop``
    is set; returns how many were sent."""
    sent = 0
    for value in sweep():
        out.send_message(settings.message(value))
        sent += 1
        if stop.wait(settings.period):
            return sent
    return sent  # never reached: the sweep has no end
