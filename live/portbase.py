"""What the rtmidi ports (:mod:`live.ports`) and the JACK client (:mod:`live.jackio`) share:
the client name, matching a port by name, and watching an input to reconnect it."""

from __future__ import annotations

import logging
import time

from live.errors import PortError

log = logging.getLogger("kdlive")

CLIENT_NAME = "kdlive"


def find_port(names: list[str], wanted: str, kind: str) -> int:
    """Index of the port whose name contains ``wanted`` (case-insensitive); an exact match
    wins over substrings; several substring matches are an error listing them."""
    low = wanted.lower()
    exact = [i for i, n in enumerate(names) if n.lower() == low]
    if exact:
        return exact[0]
    hits = [i for i, n in enumerate(names) if low in n.lower()]
    if len(hits) == 1:
        return hits[0]
    listing = ", ".join(repr(n) for n in names) or "none"
    if not hits:
        raise PortError(
            f"no MIDI {kind} port matches {wanted!r} (ports: {listing}); `kdlive ports` lists them"
        )
    raise PortError(
        f"{wanted!r} matches several MIDI {kind} ports "
        f"({', '.join(repr(names[i]) for i in hits)}): be more specific"
    )


class WatchedInput:
    """Watch-and-reconnect for an input opened with ``--port``: the same logic over rtmidi
    and over JACK, each subclass saying how to list sources and how to (re)connect one.

    :meth:`check`, called about once a second by the worker, notices a source that vanished
    (logged once) and reconnects to the first source matching ``--port`` again when there is
    one, the same name or a new one ("IAC Driver Bus 1" after the IAC driver restarts).
    Logged, counted in :attr:`reconnects`, never raised."""

    wanted: str | None = None
    connected_name: str | None = None
    lost = False
    reconnects = 0
    #: Times the source vanished or was disconnected: the daemon ends the notes it left.
    losses = 0

    def _sources(self) -> list[str]:
        raise NotImplementedError

    def _is_connected(self) -> bool:
        raise NotImplementedError

    def _reconnect(self, names: list[str], i: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the callback first (no call into a half-closed object), then close."""
        raise NotImplementedError

    def counters(self) -> dict[str, int]:
        """For ``--stats``."""
        return {"reconnects": self.reconnects}

    def now_ns(self) -> int:
        """Now on the clock that stamps event times: ``time.perf_counter_ns``, as
        :meth:`live.inbox.Inbox.rtmidi_callback` does (JACK's input overrides it)."""
        return time.perf_counter_ns()

    def check(self) -> None:
        if self.wanted is None:
            return
        names = self._sources()
        present = self.connected_name in names
        if present and not self.lost and self._is_connected():
            return
        if not self.lost:  # vanished, or still there but no longer connected to us
            self.lost = True
            self.losses += 1
            log.warning(
                "input port %r %s; the notes it left sounding end now; waiting for it to come back",
                self.connected_name,
                "disappeared" if not present else "was disconnected",
            )
        try:
            i = find_port(names, self.wanted, "input")
        except PortError:
            return  # not back yet (or ambiguous): try again at the next check
        self._reconnect(names, i)
        self.connected_name, self.lost = names[i], False
        self.reconnects += 1
        log.warning("input port %r is back: reconnected", self.connected_name)
