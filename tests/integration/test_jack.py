"""`kdlive listen` over a REAL MIDI transport: a JACK server with the dummy driver.

The daemon runs as a subprocess; separate JACK clients play clock and notes into it and listen
to its CC; OSC is received by a python-osc server. These tests run in CI (``.ci/run`` installs
jackd2, jack-midi-clock and liblo-tools); they skip, saying why, where no JACK server can run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from live.controls import BEND, CC_STREAM
from live.midifile import load_midi, read_song
from live.model import Model
from live.parts import PartTracker
from live.replay import CONTROL, NOTE_ON, file_events, replay_windows
from live.testing.jack import JackServer, Listener, Player, free_udp_port
from live.testing.songs import Track, write_song
from tests.integration.needs_jack import JACK_MARKS

if TYPE_CHECKING:
    from pythonosc.osc_server import ThreadingOSCUDPServer

pytestmark = JACK_MARKS

BPM = 300
#: ``kdlive`` run by this interpreter (the console script may belong to another).
KDLIVE = [sys.executable, "-c", "from live.cli import app; app()"]
PERIOD_S = 60 / BPM / 24


class Daemon:
    """``kdlive listen`` in a subprocess, with its log captured."""

    def __init__(self, server: JackServer, *args: str, port_name: str = "kdin") -> None:
        cmd = [*KDLIVE, "listen", "--api", "jack", *args]
        if "--port" not in args:
            cmd += ["--virtual", port_name]
        self.proc = subprocess.Popen(
            cmd, env=server.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for("listening on")

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in self.lines:
                if text in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"daemon never said {text!r}:\n" + "\n".join(self.lines))

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            raise AssertionError("daemon did not stop:\n" + "\n".join(self.lines)) from None
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def song(tmp_path: Path, name: str = "live.mid") -> Path:
    """Notes start on eighth-note clock ticks and end 10 clocks later (inside a step), so the
    transport's cycle-sized arrival jitter cannot move them across a step boundary. The parts
    also play their controllers (a contract-3 student hears them): a sustain pedal on channel
    1, bends on channel 2, expression and modulation on channel 5, each 2 clocks into a step
    for the same reason."""
    rng = np.random.default_rng(7)
    tracks = []
    into = 2 / 24  # beats: 2 clocks into a step
    controls = {
        0: [(4 * b + into, 64, 127 * (b % 2 == 0)) for b in range(6)],
        4: [(k / 2 + into, 11, 40 + 9 * k) for k in range(0, 12, 3)] + [(8 + into, 1, 60)],
    }
    bends = {1: [(k / 2 + into, 3000 * (k % 3 - 1)) for k in range(8, 24)]}
    for ch, (low, every) in {0: (60, 1), 1: (36, 2), 4: (55, 1)}.items():
        notes = []
        for k in range(0, 6 * 8, every):  # eighth notes over 6 bars
            length = (10 + 12 * int(rng.integers(0, 2))) / 24  # 10 or 22 clocks
            notes.append((int(low + rng.integers(0, 12)), k / 2, length, 90))
        tracks.append(Track(f"ch{ch}", 0, ch, notes, controls.get(ch, []), bends=bends.get(ch, [])))
    # drums on channel 10: heard as the others' context, not classified by default
    kicks = [(36 + 2 * (k % 2), k, 10 / 24, 100) for k in range(6 * 4)]
    tracks.append(Track("drums", 0, 9, kicks))
    return write_song(tmp_path / name, tracks, tpb=960, bpm=BPM)


def expected(path: Path) -> dict[int, list[tuple[np.ndarray, np.ndarray]]]:
    """Per channel, each window's probabilities and the part's running answer, in order, from
    `kdlive replay`'s code."""
    model, out = Model(), {}
    parts = PartTracker(model)
    for batch in replay_windows(path, controls=model.contract.controls):
        answers = parts.compute(batch, epoch=0)
        parts.commit(answers)
        for w, p, q in zip(batch, answers.window, answers.part, strict=True):
            out.setdefault(w.channel, []).append((p, q))
    return out


def cc_of(p: np.ndarray, q: np.ndarray) -> list[int]:
    """The CC values the daemon sends for a window: CC 20-27, 28 (class), 30 (part class)."""
    return [int(round(x * 127)) for x in p] + [int(p.argmax()), int(q.argmax())]


def perform(player: Player, path: Path, *, garbage: list[list[int]] = (), seed: int = 0) -> None:
    """Start, then MIDI clock at BPM with each note sent right after its clock tick, up to the
    file's last bar line; garbage (if any) sprinkled between; then Stop."""
    midi = load_midi(path)
    last_clock = int(read_song(midi).bars.starts[-1]) // 40
    by_clock: dict[int, list[list[int]]] = {}
    cc_of_stream = {stream: cc for cc, stream in CC_STREAM.items()}
    for tick, _, _, kind, ch, pitch, value in file_events(midi, controls=True):
        assert tick % 40 == 0
        if kind == CONTROL and pitch == BEND:
            bend = 8192 + value  # the same |bend| (the sign is not heard)
            msg = [0xE0 | (ch - 1), bend & 0x7F, bend >> 7]
        elif kind == CONTROL:
            msg = [0xB0 | (ch - 1), cc_of_stream[pitch], value]
        elif pitch < 0:
            continue
        else:
            msg = [0x90 | (ch - 1), pitch, 90] if kind == NOTE_ON else [0x80 | (ch - 1), pitch, 0]
        by_clock.setdefault(tick // 40, []).append(msg)
    rng = np.random.default_rng(seed)
    player.send([0xFA])
    t0 = time.perf_counter()
    for k in range(last_clock + 1):
        time.sleep(max(0.0, t0 + k * PERIOD_S - time.perf_counter()))
        player.send([0xF8])
        for msg in by_clock.get(k, []):
            player.send(msg)
            if garbage and rng.random() < 0.5:
                player.send(garbage[int(rng.integers(len(garbage)))])
    player.send([0xFC])


def cc_groups(received: list[tuple[int, list[int]]]) -> dict[int, list[list[int]]]:
    """Per channel, each window's CC values in the order CC 20-27, 28, 30. (The daemon sends
    the class CC 28 and the part CC 30 of every window closing together first, then the
    probabilities.)"""
    out: dict[int, list[list[int]]] = {}
    current: dict[int, dict[int, int]] = {}
    for _, msg in received:
        ch = (msg[0] & 0x0F) + 1
        assert msg[0] & 0xF0 == 0xB0, msg
        current.setdefault(ch, {})[msg[1]] = msg[2]
        if msg[1] == 27:  # the last probability: the window is complete
            cc = current.pop(ch)
            out.setdefault(ch, []).append([cc[n] for n in (*range(20, 29), 30)])
    return out


def osc_server(port: int) -> tuple[ThreadingOSCUDPServer, list[tuple[str, tuple]]]:
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import ThreadingOSCUDPServer

    got: list[tuple[str, tuple]] = []
    d = Dispatcher()
    d.set_default_handler(lambda address, *args: got.append((address, args)))
    server = ThreadingOSCUDPServer(("127.0.0.1", port), d)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, got


@dataclass
class Session:
    """The daemon over JACK with OSC to a local receiver, a player on its input and a
    listener on its output (:func:`osc_session`)."""

    daemon: Daemon
    listener: Listener
    player: Player
    osc: list[tuple[str, tuple]]
    code: int | None = None  # the daemon's exit code, once stopped


@contextmanager
def osc_session(jack: JackServer, *args: str) -> Iterator[Session]:
    """A :class:`Session` of ``kdlive listen ARGS``; everything is closed after, the daemon
    stopped with Ctrl-C (its exit code in ``code``)."""
    port = free_udp_port()
    server, osc = osc_server(port)
    daemon = Daemon(jack, "--osc", f"127.0.0.1:{port}", *args)
    session = Session(daemon, Listener(":kdlive out", jack), Player(":kdin", jack), osc)
    try:
        yield session
    finally:
        session.player.close()
        session.listener.close()
        server.shutdown()
        session.code = daemon.stop(signal.SIGINT)


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.05)


# ----------------------------------------------------------------------------- tests


@pytest.mark.slow
def test_listen_sends_the_replay_classes_as_cc_and_osc(jack: JackServer, tmp_path: Path) -> None:
    path = song(tmp_path)
    want = expected(path)
    with osc_session(jack, "--stats", "1") as session:
        listener, osc = session.listener, session.osc
        perform(session.player, path)
        n_windows = sum(len(v) for v in want.values())
        wait_until(lambda: len(listener.received) >= 10 * n_windows)
        got = cc_groups(listener.received)
        assert sorted(got) == sorted(want) == [1, 2, 5]
        for ch, answers in want.items():
            assert got[ch] == [cc_of(p, q) for p, q in answers], f"channel {ch}"
        wait_until(lambda: len(osc) >= 3 * n_windows)
        by_kind: dict[tuple[int, str], list] = {}
        for address, args in osc:
            _, _, ch, kind = address.split("/")
            by_kind.setdefault((int(ch), kind), []).append(args)
            if kind == "class":
                assert args[0] in Model().classes and 0 < args[1] <= 1
        for ch, answers in want.items():
            for k, kind in enumerate(("probs", "part")):
                sent = np.array(by_kind[(ch, kind)])
                assert np.allclose(sent, np.array([a[k] for a in answers]), atol=1e-6)
    assert session.code == 0
    stats = [line for line in session.daemon.lines if line.startswith("[stats]")]
    assert stats and "mode stopped" in stats[-1] and "malformed 0" in stats[-1]  # after Stop
    # (No tempo check here: this player paces itself by wall time, the daemon reads JACK's
    # sample clock, and the dummy driver's samples fall behind wall time on a loaded machine.
    # The jack_midi_clock test below checks the tempo, on the sample clock at both ends.)


@pytest.mark.slow
def test_a_declared_instrument_gets_its_likeness_over_jack(
    jack: JackServer, tmp_path: Path
) -> None:
    """Channel 1 declares Strings by a Program Change (48), channel 2 Bass with --declare;
    channel 5 declares nothing. Each window of the first two gets CC 29 = the probability of
    its class in the window's answer (as `kdlive replay` computes it), and OSC /likeness."""
    path = song(tmp_path)
    want = expected(path)
    classes = list(Model().classes)
    declared = {1: "Strings", 2: "Bass"}
    with osc_session(jack, "--declare", "2=bass") as session:
        listener, osc = session.listener, session.osc
        session.player.send([0xC0, 48])  # String Ensemble 1
        perform(session.player, path)
        n = sum(len(want[ch]) for ch in declared)
        wait_until(lambda: sum(m[1] == 29 for _, m in listener.received) >= n)
        wait_until(lambda: sum(a.endswith("/likeness") for a, _ in osc) >= n)
    assert session.code == 0
    for ch in (1, 2, 5):
        got = [m[2] for _, m in listener.received if m[:2] == [0xAF + ch, 29]]
        sent = [args for a, args in osc if a == f"/kdlive/{ch}/likeness"]
        if ch not in declared:
            assert got == [] and sent == []
            continue
        k = classes.index(declared[ch])
        assert got == [int(round(float(p[k]) * 127)) for p, _ in want[ch]], f"channel {ch}"
        assert [name for name, _ in sent] == [declared[ch]] * len(want[ch])
        assert np.allclose([v for _, v in sent], [p[k] for p, _ in want[ch]], atol=1e-6)


@pytest.mark.slow
def test_listen_in_a_terminal_shows_a_row_per_channel(jack: JackServer, tmp_path: Path) -> None:
    """`kdlive listen` in a real pseudo-terminal (util-linux `script`) draws the view: a row
    per channel played, with the class `kdlive replay` gives its last window, and the footer;
    Ctrl-C typed into the terminal stops it cleanly."""
    import re
    import shlex

    path = song(tmp_path)
    want = expected(path)
    classes = list(Model().classes)
    # exec: the daemon alone in the terminal's foreground, as when a musician types it;
    # a `sh -c` left waiting (dash as $SHELL) would take the Ctrl-C too and exit 130
    cmd = "exec " + shlex.join([*KDLIVE, "listen", "--api", "jack", "--virtual", "kdin"])
    env = {**jack.env, "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"}
    proc = subprocess.Popen(
        ["script", "-qfec", cmd, "/dev/null"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    chunks: list[bytes] = []
    threading.Thread(target=lambda: chunks.extend(iter(lambda: proc.stdout.read1(4096), b"")),
                     daemon=True).start()  # fmt: skip

    def screen() -> str:
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))

    try:
        jack.wait_port(":kdin")
        player = Player(":kdin", jack)
        try:
            perform(player, path)
            wait_until(lambda: "windows 12" in screen(), timeout=10)
        finally:
            player.close()
        time.sleep(0.5)  # a redraw after the last window
        proc.stdin.write(b"\x03")  # Ctrl-C in the terminal
        proc.stdin.flush()
        code = proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = screen()
    assert code == 0, out[-3000:]
    assert "window" in out and "likeness" in out and "MIDI clock" in out
    final = out[out.rindex("notes/bar") :]  # the last drawing of the table
    rows = {int(m[1]): m[2] for m in re.finditer(r"^\s*(\d+)\s+\d+\s+(\w+)", final, re.M)}
    assert rows == {ch: classes[int(answers[-1][0].argmax())] for ch, answers in want.items()}


@pytest.mark.slow
def test_the_pure_data_example_prints_each_windows_class_and_probabilities(
    jack: JackServer, tmp_path: Path
) -> None:
    """examples/kdlive.pd, run by Pure Data headless, receives the daemon's OSC: each
    window's class and probabilities, as `kdlive replay` computes them."""
    pd = shutil.which("pd")
    if pd is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install puredata-core (see scripts/setup.sh)")
        pytest.skip("needs Pure Data (apt install puredata-core)")
    port = free_udp_port()
    patch = Path(__file__).resolve().parents[2] / "examples" / "kdlive.pd"
    args = ["-nogui", "-stderr", "-noaudio", "-nomidi", "-open", str(patch)]
    proc = subprocess.Popen(
        [pd, *args, "-send", f"kdlive-port {port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    path = song(tmp_path)
    want = expected(path)
    classes = list(Model().classes)
    n = sum(len(v) for v in want.values())
    try:
        wait_until(lambda: f"kdlive-port: {port}" in "".join(lines), timeout=10)
        daemon = Daemon(jack, "--osc", f"127.0.0.1:{port}")
        player = Player(":kdin", jack)
        try:
            perform(player, path)
            wait_until(lambda: sum(" probs " in line for line in lines) >= n, timeout=10)
        finally:
            player.close()
            daemon.stop()
    finally:
        proc.kill()
        proc.wait()
    got: dict[tuple[int, str], list[list[str]]] = {}
    for line in lines:
        if line.startswith("kdlive: "):
            ch, kind, *values = line.split()[1:]
            got.setdefault((int(float(ch)), kind), []).append(values)
    for ch, answers in want.items():
        assert [v[0] for v in got[(ch, "class")]] == [classes[int(p.argmax())] for p, _ in answers]
        probs = np.array(got[(ch, "probs")], float)
        assert np.allclose(probs, [p for p, _ in answers], atol=1e-4)


@pytest.mark.slow
def test_garbage_on_the_wire_changes_nothing(jack: JackServer, tmp_path: Path) -> None:
    """Malformed messages sent over JACK between the notes: the daemon counts them, stays up,
    and sends the same CC as for the clean performance."""
    path = song(tmp_path)
    want = expected(path)
    garbage = [
        [0x45, 0x10],
        [0x90, 60],
        [0xF0, 0x01, 0x02],
        [0xF4],
        [0xF5, 1, 2],
        [0xFD],
        [0xF0, 0x01, 0x90, 0x40],
        [0xF7],
        [0x99, 0x99, 0x99],
    ]
    daemon = Daemon(jack, "--stats", "1")
    listener = Listener(":kdlive out", jack)
    player = Player(":kdin", jack)
    try:
        perform(player, path, garbage=garbage, seed=1)
        n_windows = sum(len(v) for v in want.values())
        wait_until(lambda: len(listener.received) >= 10 * n_windows)
        got = cc_groups(listener.received)
        for ch, answers in want.items():
            assert got[ch] == [cc_of(p, q) for p, q in answers]
        time.sleep(1.2)  # one more stats line
    finally:
        player.close()
        listener.close()
        code = daemon.stop(signal.SIGTERM)
    assert code == 0
    last = [line for line in daemon.lines if line.startswith("[stats]")][-1]
    malformed = int(last.split("malformed ")[1].split(",")[0])
    assert malformed > 10 and "worker_errors 0" in last


@pytest.mark.slow
def test_follows_jack_midi_clock_and_jack_transport(jack: JackServer, tmp_path: Path) -> None:
    """An independent clock source: jack_midi_clock (with 5 % jitter) driven by JACK
    transport. The daemon derives the tempo and closes windows on its bar lines."""
    if subprocess.run(["which", "jack_midi_clock"], capture_output=True).returncode:
        if os.environ.get("CI"):
            pytest.fail("CI must install jack-midi-clock")
        pytest.skip("jack_midi_clock is not installed (apt-get install jack-midi-clock)")
    daemon = Daemon(jack, "--stats", "0.5", "--channels", "3")
    target = jack.wait_port(":kdin")
    clock = subprocess.Popen(
        ["jack_midi_clock", "-b", "180", "-B", "-J", "5", target],
        env=jack.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    listener = Listener(":kdlive out", jack)
    player = Player(":kdin", jack, name="notes")
    try:
        if any("jack_midi_clock" in p for p in jack.ports()):
            jack.wait_port("jack_midi_clock:mclk_out", timeout=10)
        time.sleep(0.5)
        jack.run(["jack_transport"], input="locate 0\nplay\nquit\n", timeout=10)
        t_end = time.monotonic() + 4.0  # 2 bars at 180 BPM = 2.67 s
        while time.monotonic() < t_end:
            player.send([0x92, 64, 90])
            time.sleep(0.1)
            player.send([0x82, 64, 0])
            time.sleep(0.1)
        wait_until(lambda: len(listener.received) >= 9, timeout=3)
        jack.run(["jack_transport"], input="stop\nquit\n", timeout=10)
        time.sleep(0.6)
    finally:
        code = daemon.stop()
        clock.terminate()
        clock.wait(5)
        player.close()
        listener.close()
    assert code == 0
    assert len(listener.received) >= 9 and {m[0] for _, m in listener.received} == {0xB2}
    stats = [x for x in daemon.lines if x.startswith("[stats]") and "clocks 0," not in x]
    assert stats, "\n".join(daemon.lines)
    bpm = float(stats[-1].split("bpm ")[1].split()[0].rstrip(","))
    assert bpm == pytest.approx(180, rel=0.02)  # on the sample clock, despite the jitter


@pytest.mark.slow
def test_reconnects_when_the_input_port_comes_back(jack: JackServer, tmp_path: Path) -> None:
    import rtmidi

    def source() -> rtmidi.MidiOut:
        out = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name="keyboard")
        out.open_virtual_port("keys")
        return out

    keys = source()
    jack.wait_port("keyboard:keys")
    daemon = Daemon(jack, "--port", "KEYBOARD:KEYS", "--bpm", "240", "--stats", "0.5")
    listener = Listener(":kdlive out", jack)
    try:
        keys.close_port()
        keys.delete()  # the JACK client goes away with its port
        daemon.wait_for("disappeared", timeout=5)
        keys = source()
        daemon.wait_for("reconnected", timeout=5)
        keys.send_message([0x90, 60, 100])  # internal clock at 240 BPM: 2 bars = 2 s
        time.sleep(0.3)
        keys.send_message([0x80, 60, 0])
        wait_until(lambda: len(listener.received) >= 9, timeout=5)
        assert [m[0] for _, m in listener.received[:9]] == [0xB0] * 9
        assert any("internal clock" in line or "mode internal" in line for line in daemon.lines)
    finally:
        listener.close()
        code = daemon.stop()
        keys.close_port()
        keys.delete()
    assert code == 0


@pytest.mark.slow
def test_a_vanished_sender_ends_the_notes_it_left_sounding(jack: JackServer) -> None:
    """A keyboard holds a note and its client dies: the note-off never comes. The daemon ends
    the note when it notices (within a second), so the channel's windows stop a bar or two
    later instead of answering for a silent channel for up to --max-note-bars (8 bars)."""
    import rtmidi

    keys = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name="keyboard")
    keys.open_virtual_port("keys")
    jack.wait_port("keyboard:keys")
    # internal clock at 240 BPM (a bar a second), from the first note
    daemon = Daemon(jack, "--port", "keyboard:keys", "--bpm", "240", "--stats", "0.5")
    listener = Listener(":kdlive out", jack)
    try:
        for k in range(4):  # a chord, held
            keys.send_message([0x90, 60 + 4 * k, 100])
        time.sleep(0.3)
        keys.close_port()
        keys.delete()  # the client goes, the note-offs with it
        daemon.wait_for("the notes it left sounding end now", timeout=5)
        time.sleep(6.5)  # bars 2-8 close
    finally:
        listener.close()
        code = daemon.stop()
    assert code == 0
    windows = [m for _, m in listener.received if m[:2] == [0xB0, 28]]  # one class CC a window
    # the windows closing at bars 2 and 3 hold the chord (bars 0-1, 1-2), later ones nothing
    assert 1 <= len(windows) <= 2, listener.received


@pytest.mark.slow
def test_missing_port_and_bad_bundle_are_one_line(jack: JackServer, tmp_path: Path) -> None:
    cmd = [*KDLIVE, "listen", "--api", "jack"]
    r = subprocess.run(
        [*cmd, "--port", "no-such-port"], env=jack.env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 1 and "no MIDI input port matches 'no-such-port'" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run(
        [*cmd, "--virtual", "x", "--model", str(tmp_path)],
        env=jack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "not a kdlive bundle" in r.stderr
    assert len([x for x in r.stderr.splitlines() if x.strip()]) == 1


def test_ports_lists_jack_ports(jack: JackServer) -> None:
    daemon = Daemon(jack)
    try:
        r = subprocess.run(
            [*KDLIVE, "ports", "--api", "jack"],
            env=jack.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0 and "kdlive:kdlive out" in r.stdout and "kdlive:kdin" in r.stdout
    finally:
        daemon.stop()


def test_jack_xruns_are_counted_and_reported(
    jack: JackServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that overruns its cycle makes JACK report an xrun: the daemon's input counts
    it, and its next check logs one warning that says what to do."""
    import jack as jackclient

    from live.jackio import JackInput

    monkeypatch.setenv("JACK_DEFAULT_SERVER", jack.name)
    got: list[bytes] = []
    port = JackInput(lambda t, m: got.append(m), virtual="xrun-in", client="kdlive-xrun")
    hog = jackclient.Client("xrun-hog", no_start_server=True)
    slow = {"cycles": 3}

    def process(frames: int) -> None:
        if slow["cycles"]:
            slow["cycles"] -= 1
            time.sleep(0.05)  # 50 ms in a 2.7 ms period

    hog.set_process_callback(process)
    hog.activate()
    try:
        end = time.monotonic() + 10
        while port.xruns == 0 and time.monotonic() < end:
            time.sleep(0.05)
        assert port.xruns > 0, "JACK reported no xrun for a 50 ms cycle"
        caplog.set_level("WARNING", logger="kdlive")
        port.check()
        port.check()  # nothing new: no second warning
        assert sum("xrun" in r.message for r in caplog.records) == 1
        assert port.counters()["xruns"] == port.xruns
    finally:
        hog.deactivate()
        hog.close()
        port.close()


@pytest.mark.slow
def test_jackd_keeps_running_the_graph_after_thousands_of_logged_xruns(jack: JackServer) -> None:
    """jackd logs a line or two for every xrun. The fixture's server once logged into a pipe
    that nobody read: 64 KiB later jackd blocked on the write and stopped running every client
    (the live benchmarks' stall on a busy machine). A client that overruns every cycle makes
    it log far more than that; a performer looped onto itself still hears what it plays."""
    import jack as jackclient

    from live.testing.jack import Performer

    hog = jackclient.Client("log-hog", no_start_server=True)
    hog.set_process_callback(lambda frames: time.sleep(0.004))  # 4 ms in a 2.7 ms period
    hog.activate()
    try:
        end = time.monotonic() + 60
        while jack.log.stat().st_size < 96 * 1024 and time.monotonic() < end:
            time.sleep(0.2)
    finally:
        # a blocked jackd never lets a client go: wait 10 s for it, not forever
        closer = threading.Thread(target=lambda: (hog.deactivate(), hog.close()), daemon=True)
        closer.start()
        closer.join(10)
    assert not closer.is_alive(), "jackd did not let a client leave: its graph has stopped"
    assert jack.log.stat().st_size >= 96 * 1024, jack.log_tail()
    loop = Performer("looped", outputs=("out",), inputs=("in",))
    try:
        jack.run(["jack_connect", loop.port("out"), loop.port("in")], check=True)
        loop.play([(0.01 * i, "out", [0x90, 60, 1 + i]) for i in range(20)], lead=0.1)
        end = time.monotonic() + 10
        while len(loop.received) < 20 and time.monotonic() < end:
            time.sleep(0.05)
    finally:
        assert loop.close()
    assert [m[2] for _, _, m in loop.received] == list(range(1, 21)), loop.error
    assert loop.error is None
