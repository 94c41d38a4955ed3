"""A real MIDI transport for tests and benchmarks: a JACK server with the dummy driver (no sound
card needed), rtmidi clients that play into and listen to the daemon's ports, a frame-accurate
JACK-Client sender (:class:`Performer`), and ``kdlive listen`` in a subprocess
(:func:`start_listen`). Needs jackd (``apt-get install jackd2``) to run, nothing to import."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any


def die_with_parent() -> None:
    """``preexec_fn`` for a child that must not outlive this process (Linux: SIGKILL when the
    parent dies, however it dies; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class JackServer:
    """``jackd --no-realtime -d dummy`` under its own server name; clients of this process and
    of subprocesses given :attr:`env` talk to it (``JACK_DEFAULT_SERVER``)."""

    def __init__(self, name: str, *, rate: int = 48000, period: int = 128) -> None:
        self.name, self.rate, self.period = name, rate, period
        self.proc: subprocess.Popen | None = None
        self.log = Path(tempfile.gettempdir()) / f"jackd-{name}.log"
        self.env = {
            **os.environ,
            "JACK_DEFAULT_SERVER": name,
            "JACK_NO_AUDIO_RESERVATION": "1",
            "MIDO_BACKEND": "mido.backends.rtmidi/UNIX_JACK",
        }

    @staticmethod
    def available() -> str | None:
        """None if a JACK server can run here, else why not."""
        if shutil.which("jackd") is None:
            return "jackd is not installed (apt-get install jackd2)"
        try:
            import rtmidi
        except ImportError:
            return "python-rtmidi is not installed"
        if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
            return "python-rtmidi was built without JACK"
        return None

    def start(self) -> JackServer:
        server = ["jackd", "-n", self.name, "--no-realtime", "-S"]
        driver = ["-d", "dummy", "-r", str(self.rate), "-p", str(self.period)]
        # jackd's log goes to a file, never to a pipe nobody reads: jackd logs every xrun,
        # and once 64 KiB of them filled a pipe, jackd blocked writing the next line and its
        # graph stopped (the benchmarks' "JACK no longer runs the client" stall).
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [*server, *driver],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jackd exited: {self.log_tail()}")
            if self.run(["jack_lsp"]).returncode == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError("jackd did not come up in 10 s")

    def log_tail(self, chars: int = 500) -> str:
        """The end of jackd's log."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def run(self, args: list[str], **kw: Any) -> subprocess.CompletedProcess:
        return subprocess.run(args, env=self.env, capture_output=True, text=True, **kw)

    def ports(self) -> list[str]:
        return [p for p in self.run(["jack_lsp"]).stdout.splitlines() if p.strip()]

    def wait_port(self, suffix: str, timeout: float = 15.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            hits = [p for p in self.ports() if p.endswith(suffix)]
            if hits:
                return hits[0]
            time.sleep(0.1)
        raise TimeoutError(f"no JACK port ending in {suffix!r}: {self.ports()}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.log.unlink(missing_ok=True)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Player:
    """An rtmidi JACK output connected to the daemon's input port."""

    def __init__(self, target_suffix: str, server: JackServer, name: str = "player") -> None:
        import rtmidi

        target = server.wait_port(target_suffix)
        self.midi = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name=name)
        ports = self.midi.get_ports()
        self.midi.open_port(ports.index(target), name="out")

    def send(self, message: list[int]) -> None:
        self.midi.send_message(message)

    def close(self) -> None:
        self.midi.close_port()
        del self.midi


class Listener:
    """An rtmidi JACK input connected to the daemon's output; records (arrival ns, bytes)."""

    def __init__(self, source_suffix: str, server: JackServer, name: str = "listener") -> None:
        import rtmidi

        source = server.wait_port(source_suffix)
        self.received: list[tuple[int, list[int]]] = []
        self.midi = rtmidi.MidiIn(rtapi=rtmidi.API_UNIX_JACK, name=name)
        self.midi.ignore_types(sysex=False, timing=False, active_sense=True)
        self.midi.set_callback(self._on)
        ports = self.midi.get_ports()
        self.midi.open_port(ports.index(source), name="in")

    def _on(self, event: tuple[list[int], float], data: object) -> None:
        self.received.append((time.perf_counter_ns(), list(event[0])))

    def close(self) -> None:
        self.midi.cancel_callback()
        self.midi.close_port()
        del self.midi


class Performer:
    """A JACK client (JACK-Client) that plays MIDI from its own process callback, each event at
    its frame, and records what arrives at its inputs with the frame it arrived at.

    Nothing here can block: events are written straight into the cycle's port buffers (one
    that does not fit is counted in :attr:`dropped`, never waited for), where an rtmidi sender
    queues them into a ring buffer that a stalled JACK client stops draining. Times are JACK
    frames, exact on both ends: a latency is (arrival frame - send frame) / rate.
    """

    def __init__(
        self, name: str, outputs: tuple[str, ...] = ("out",), inputs: tuple[str, ...] = ()
    ):
        import jack

        self.client = jack.Client(
            name, no_start_server=True, servername=os.environ.get("JACK_DEFAULT_SERVER")
        )
        self.rate = self.client.samplerate
        self.outs = {p: self.client.midi_outports.register(p) for p in outputs}
        self.ins = [(p, self.client.midi_inports.register(p)) for p in inputs]
        self.received: list[tuple[int, str, bytes]] = []  # (frame, port, bytes)
        self.sent = 0
        self.dropped = 0
        self._events: Any = iter(())
        self._next: tuple[int, str, bytes] | None = None
        #: Why JACK stopped running this client, if it did: an exception in the process
        #: callback (kept here: raised into JACK, it would take the client out of the graph),
        #: or the server's shutdown reason.
        self.error: str | None = None
        self.client.set_process_callback(self._process)
        self.client.set_shutdown_callback(self._shutdown)
        self.client.activate()

    def port(self, name: str) -> str:
        """The full JACK name of one of this client's ports."""
        return f"{self.client.name}:{name}"

    def play(self, events: Any, lead: float = 0.3) -> int:
        """Play ``events``, an iterable of ``(seconds, port, bytes)`` in time order, from
        ``lead`` seconds from now; returns the frame of second 0. Replaces what was playing."""
        start = self.client.frame_time + int(lead * self.rate)
        rate = self.rate
        self._events = iter((start + int(round(t * rate)), p, bytes(m)) for t, p, m in events)
        self._next = None
        self.done = False
        return start

    done = True

    def _shutdown(self, status: Any, reason: str) -> None:
        self.error = self.error or f"JACK shut the client down: {reason} ({status})"

    def _process(self, frames: int) -> None:
        try:
            self._cycle(frames)
        except Exception as exc:  # never into JACK: a failing callback leaves the graph
            if self.error is None:
                self.error = "".join(traceback.format_exception(exc))

    def _cycle(self, frames: int) -> None:
        start = self.client.last_frame_time
        end = start + frames
        # Inputs first: a port wired to one of our outputs reads that output's buffer, which
        # still holds what we wrote last cycle (a loop takes one period, as between clients).
        for name, port in self.ins:
            for offset, data in port.incoming_midi_events():
                self.received.append((start + offset, name, bytes(data)))
        for port in self.outs.values():
            port.clear_buffer()
        event = self._next
        while True:
            if event is None:
                event = next(self._events, None)
                if event is None:
                    self.done = True
                    break
            frame, name, data = event
            if frame >= end:
                break
            try:
                self.outs[name].write_midi_event(max(0, frame - start), data)
                self.sent += 1
            except Exception:  # the cycle's buffer is full: count it, never wait
                self.dropped += 1
            event = None
        self._next = event

    def close(self, timeout: float = 5.0) -> bool:
        """Stop playing and leave the graph; False if JACK did not let the client go within
        ``timeout`` (in synchronous mode a deactivation waits for every client's cycle), in
        which case the client is left behind rather than hanging the caller."""
        self._events, self._next = iter(()), None

        def close() -> None:
            self.client.deactivate()
            self.client.close()

        closer = threading.Thread(target=close, daemon=True)
        closer.start()
        closer.join(timeout)
        return not closer.is_alive()


def start_listen(server: JackServer, *args: str) -> subprocess.Popen:
    """``kdlive listen --api jack --virtual kdin --channels 1-16 --no-view ARGS`` in a
    subprocess that dies with this one. Its output (log, ``--stats``) goes to a file, read back
    with :func:`listen_output`: a pipe read only at the end fills (64 KiB: about 35 minutes of
    xrun warnings and stats) and then blocks whoever writes the next line (the daemon's log
    thread now; its worker, before log lines went through a queue)."""
    cmd = [sys.executable, "-c", "from live.cli import app; app()", "listen", "--api", "jack"]
    with tempfile.NamedTemporaryFile(
        "w", prefix="kdlive-listen-", suffix=".log", delete=False
    ) as log:
        proc = subprocess.Popen(
            [*cmd, "--virtual", "kdin", "--channels", "1-16", "--no-view", *args],
            env=server.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    proc.log_path = Path(log.name)  # type: ignore[attr-defined]
    return proc


def listen_output(proc: subprocess.Popen, timeout: float = 30.0) -> str:
    """Wait for a :func:`start_listen` daemon to exit (killing it after ``timeout`` s) and
    return everything it printed."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    path: Path = proc.log_path  # type: ignore[attr-defined]
    out = path.read_text(errors="replace")
    path.unlink(missing_ok=True)
    return out
