"""The queue between the MIDI input and the daemon's worker.

The input's callback (under JACK: the audio thread) only timestamps a message and puts it here;
the worker takes it out. An :class:`Inbox` is made first, the ports are opened with its
callbacks, and then the daemon is built with it.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Sequence

#: A raw MIDI message as a MIDI API delivers it: ``list[int]`` from rtmidi, ``bytes`` from JACK.
Message = Sequence[int]


class Inbox:
    """Timestamped messages, ``(t_ns, message)``, in arrival order."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[tuple[int, Message]] = queue.SimpleQueue()

    def rtmidi_callback(self, event: tuple[list[int], float], data: object = None) -> None:
        """python-rtmidi's input callback: timestamp (``time.perf_counter_ns``) and enqueue."""
        self.queue.put((time.perf_counter_ns(), event[0]))

    def enqueue(self, t_ns: int, message: bytes) -> None:
        """The native JACK input's callback: already timestamped to the sample."""
        self.queue.put((t_ns, message))

    def feed(self, message: Message, t_ns: int | None = None) -> None:
        """Enqueue a message as a callback would (tests, in-process sources)."""
        self.queue.put((time.perf_counter_ns() if t_ns is None else t_ns, list(message)))

    def wake(self) -> None:
        """Wake the worker waiting in :meth:`get` (it then sees that it should stop)."""
        self.queue.put((0, b""))

    def get(self, timeout: float) -> tuple[int, Message]:
        """The next message, waiting up to ``timeout`` s; raises :class:`queue.Empty`."""
        return self.queue.get(timeout=timeout)
