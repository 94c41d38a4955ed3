"""Port matching and the shared watch-and-reconnect logic, with an in-memory port list (the
real JACK path is in test_jack.py)."""

from __future__ import annotations

import logging

import pytest

from live.errors import PortError
from live.jackio import FrameClock
from live.portbase import WatchedInput, find_port


class FakeInput(WatchedInput):
    """A WatchedInput over a list of source names that the test edits."""

    def __init__(self, wanted: str, sources: list[str]) -> None:
        self.wanted, self.sources = wanted, sources
        self.connected: str | None = None
        self.opened: list[str] = []
        names = self._sources()
        i = find_port(names, wanted, "input")
        self._reconnect(names, i)
        self.connected_name = names[i]

    def _sources(self) -> list[str]:
        return list(self.sources)

    def _is_connected(self) -> bool:
        return self.connected == self.connected_name

    def _reconnect(self, names: list[str], i: int) -> None:
        self.connected = names[i]
        self.opened.append(names[i])


def test_find_port_prefers_an_exact_name_and_refuses_ambiguity() -> None:
    names = ["IAC Driver Bus 1", "IAC Driver Bus 10", "loopMIDI Port"]
    assert find_port(names, "iac driver bus 1", "input") == 0
    assert find_port(names, "loop", "input") == 2
    with pytest.raises(PortError, match="several"):
        find_port(names, "IAC", "input")
    with pytest.raises(PortError, match="no MIDI input"):
        find_port(names, "nothing", "input")


def test_a_vanished_source_is_logged_once_and_reconnected_when_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sources = ["IAC Driver Bus 1", "other"]
    port = FakeInput("IAC", sources)
    caplog.set_level(logging.WARNING, logger="kdlive")
    port.check()
    assert (port.lost, port.reconnects, port.opened) == (False, 0, ["IAC Driver Bus 1"])

    sources.remove("IAC Driver Bus 1")
    port.check()
    port.check()
    assert port.lost and port.reconnects == 0 and port.losses == 1  # the daemon ends notes once
    assert sum("disappeared" in r.message for r in caplog.records) == 1

    sources.append("IAC Driver Bus 1 #2")  # the driver came back under a new name
    port.check()
    assert (port.lost, port.reconnects) == (False, 1)
    assert port.connected_name == "IAC Driver Bus 1 #2" == port.connected
    assert any("reconnected" in r.message for r in caplog.records)


def test_an_ambiguous_comeback_waits_and_a_dropped_connection_is_restored() -> None:
    sources = ["synth A"]
    port = FakeInput("synth", sources)
    sources[:] = ["synth B", "synth C"]  # gone, and two candidates: pick neither
    port.check()
    assert port.lost and port.connected == "synth A"
    sources[:] = ["synth A"]
    port.check()
    assert not port.lost and port.reconnects == 1

    port.connected = None  # someone disconnected it by hand (JACK): connect again
    port.check()
    assert port.connected == "synth A" and port.reconnects == 2
    assert port.losses == 2  # the note-offs sent meanwhile were lost too: notes end


def test_virtual_ports_are_not_watched() -> None:
    port = FakeInput("x", ["x"])
    port.wanted = None
    port.sources.clear()
    port.check()
    assert not port.lost


def test_the_jack_frame_counter_keeps_counting_past_its_wrap() -> None:
    """JACK's frame counter is 32 bits (about 25 h at 48 kHz): event times must not jump back."""
    clock = FrameClock()
    assert clock.extend(2**32 - 10) == 2**32 - 10
    assert clock.extend(5) == 2**32 + 5
    assert clock.extend(6) == 2**32 + 6
