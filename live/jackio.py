"""The daemon's MIDI ports as one native JACK client (``--api jack``), through JACK-Client.

Why not rtmidi here: RtMidi's JACK input treats a SysEx that does not end in F7 as continuing
into the next events, and holds back every following message (notes, clock) until some event
ends in F7. One malformed SysEx from any source would silence the daemon. A JACK MIDI event is
already one framed message, so this client hands each event to the worker as it is, and a bad
one is counted and dropped alone. It also gets each event's sample offset, so arrival times are
exact to the sample instead of to the period.

Output goes through the same client: a JACK MIDI buffer holds only so many events per
period (about 28 three-byte events at 64 frames), and RtMidi's JACK output drops what does not
fit. Here the messages wait in a queue and go out in the next periods instead: 16 channels'
144 CC at ``-p 64`` take 5 periods, none is lost.

The process callback (the JACK audio thread) only timestamps and enqueues input, and moves
queued output into the port buffer.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from live.errors import PortError
from live.portbase import CLIENT_NAME, WatchedInput, find_port

log = logging.getLogger("kdlive")


def _open_client(name: str) -> Any:
    """A ``jack.Client`` of a running server, or :class:`PortError` saying what is missing."""
    try:
        import jack
    except (ImportError, OSError) as exc:
        raise PortError(
            f"JACK is not available ({exc}): install JACK and `pip install JACK-Client`"
        ) from None
    try:
        return jack.Client(name, no_start_server=True)
    except jack.JackError as exc:
        raise PortError(
            f"no JACK server is running ({exc}): start one (jackd -d dummy works without a "
            "sound card)"
        ) from None


class FrameClock:
    """JACK's frame counter (``jack_nframes_t``, 32 bits: it wraps after about 25 h at
    48 kHz) made monotonic."""

    def __init__(self) -> None:
        self.last, self.wraps = 0, 0

    def extend(self, frame: int) -> int:
        """``frame`` (the counter now) as a frame count that never wraps."""
        if frame < self.last:
            self.wraps += 1
        self.last = frame
        return frame + (self.wraps << 32)


class JackOutput:
    """The output side: ``send_message`` queues, the process callback writes what fits."""

    def __init__(self) -> None:
        self.pending: deque[bytes] = deque()
        self.dropped = 0

    def send_message(self, message: Sequence[int]) -> None:
        if len(self.pending) > 65536:  # nothing reads the port: do not grow without bound
            self.dropped += 1
            return
        self.pending.append(bytes(message))


def _drain(pending: deque[bytes], out_port: Any) -> None:
    """Move queued messages into this period's output buffer (in the process callback): as
    many as fit, the rest go out next period."""
    out_port.clear_buffer()
    while pending:
        message = pending[0]
        slot = out_port.reserve_midi_event(0, len(message))
        if not slot:
            break  # this period's buffer is full
        slot[:] = message
        pending.popleft()


def _connect_output(client: Any, out_port: Any, wanted: str, own: str | None = None) -> None:
    """Connect ``out_port`` to the MIDI input whose name matches ``wanted`` (not ``own``)."""
    names = [p.name for p in client.get_ports(is_midi=True, is_input=True) if p.name != own]
    client.connect(out_port, names[find_port(names, wanted, "output")])


class JackOutputClient:
    """A JACK client with the daemon's output port alone (``kdlive learn``): the same client
    and port names as ``kdlive listen``'s, so what a DAW learns from it is the daemon's port.
    ``send_message`` queues; the process callback writes what fits each period."""

    def __init__(
        self,
        *,
        out_port: str | None = None,
        out_virtual: str = "kdlive out",
        client: str = CLIENT_NAME,
    ) -> None:
        self.client = _open_client(client)
        self.out_port = self.client.midi_outports.register(
            out_virtual if out_port is None else "out"
        )
        self.output = JackOutput()
        self.client.set_process_callback(lambda frames: _drain(self.output.pending, self.out_port))
        self.client.activate()
        if out_port is not None:
            _connect_output(self.client, self.out_port, out_port)

    def send_message(self, message: Sequence[int]) -> None:
        self.output.send_message(message)

    def close(self) -> None:
        """Stop the callback (deactivate), then close the client and its port."""
        try:
            self.client.deactivate()
        finally:
            self.client.close()


class JackInput(WatchedInput):
    """A JACK client with a MIDI input port, connected to ``port`` (a source, re-connected
    when it comes back) or left for others to connect to (``virtual``), and a MIDI output port
    (:attr:`output`), connected to ``out_port`` or named ``out_virtual``. Each input event goes
    to ``enqueue(t_ns, message)``, ``t_ns`` on JACK's sample clock (:meth:`now_ns`)."""

    def __init__(
        self,
        enqueue: Callable[[int, bytes], None],
        *,
        port: str | None = None,
        virtual: str | None = None,
        out_port: str | None = None,
        out_virtual: str = "kdlive out",
        client: str = CLIENT_NAME,
    ) -> None:
        if (port is None) == (virtual is None):
            raise PortError("give either --port NAME or --virtual NAME")
        self.client = _open_client(client)
        self.port = self.client.midi_inports.register(virtual or "in")
        self.out_port = self.client.midi_outports.register(
            out_virtual if out_port is None else "out"
        )
        self.output = JackOutput()
        self.enqueue = enqueue
        self.wanted, self.connected_name = port, virtual
        self.ns_per_frame = 1e9 / self.client.samplerate
        self._frames = FrameClock()
        self._cycle = (0, time.perf_counter_ns())  # (sample-clock ns, wall ns) of the last cycle
        self.client.set_process_callback(self._process)
        self.xruns, self._xruns_logged, self._xrun_quiet_until = 0, 0, 0.0
        self.client.set_xrun_callback(self._xrun)
        self.client.activate()
        if port is not None:
            self._connect()
        if out_port is not None:
            _connect_output(self.client, self.out_port, out_port, own=self.port.name)

    def _process(self, frames: int) -> None:
        """The JACK process callback (the audio thread): timestamp and enqueue the input,
        move queued output into the port buffer. Each event's time is its sample: the cycle's
        first frame plus its offset, on JACK's sample clock (the DAW's timeline), unmoved by
        when this thread ran."""
        base = self._frames.extend(self.client.last_frame_time)
        ns_per_frame, enqueue = self.ns_per_frame, self.enqueue
        self._cycle = (int(base * ns_per_frame), time.perf_counter_ns())
        for offset, data in self.port.incoming_midi_events():
            enqueue(int((base + offset) * ns_per_frame), bytes(data))
        _drain(self.output.pending, self.out_port)

    def _xrun(self, delay_usecs: float) -> None:
        """JACK's xrun callback (its notification thread, not the audio one)."""
        self.xruns += 1

    def now_ns(self) -> int:
        """Now on the sample clock that event times use (the worker's deadlines need it): the
        last cycle's start plus the wall time since. (JACK's own estimate runs ahead of the
        frames actually processed when a driver falls behind, which would make a steady MIDI
        clock look stopped.)"""
        cycle_ns, at = self._cycle
        return cycle_ns + (time.perf_counter_ns() - at)

    @property
    def name(self) -> str:
        return self.port.name

    def _sources(self) -> list[str]:
        return [
            p.name
            for p in self.client.get_ports(is_midi=True, is_output=True)
            if p.name != self.port.name
        ]

    def _connect(self) -> None:
        names = self._sources()
        i = find_port(names, self.wanted or "", "input")
        self._reconnect(names, i)
        self.connected_name = names[i]

    def _is_connected(self) -> bool:
        return self.port.is_connected_to(self.connected_name)

    def _reconnect(self, names: list[str], i: int) -> None:
        self.client.connect(names[i], self.port)

    def check(self) -> None:
        """:meth:`WatchedInput.check`, and a warning when JACK reported xruns (at most one
        every 10 s, so an overloaded machine does not also flood the log)."""
        now = time.monotonic()
        if self.xruns != self._xruns_logged and now >= self._xrun_quiet_until:
            log.warning(
                "JACK reported %d xrun(s) (%d in all): the machine is overloaded, MIDI may "
                "arrive late or be lost (close busy programs, raise the period, or run JACK "
                "with realtime priority)",
                self.xruns - self._xruns_logged,
                self.xruns,
            )
            self._xruns_logged, self._xrun_quiet_until = self.xruns, now + 10.0
        super().check()

    def counters(self) -> dict[str, int]:
        return {**super().counters(), "xruns": self.xruns}

    def close(self) -> None:
        """Stop the callback (deactivate), then close the client and its port."""
        try:
            self.client.deactivate()
        finally:
            self.client.close()
