"""Latency of `kdlive listen` over JACK (dummy driver), against the bare transport, in one run.

Usage::

    python benchmarks/live_latency.py                  # writes benchmarks/results/live_latency.json
    python benchmarks/live_latency.py --windows 60 --period 64 --json /tmp/l.json

1. Start ``jackd --no-realtime -S -d dummy -r 48000 -p PERIOD`` (its own server name).
2. Bare transport: a sender client sends a note-on every few ms to a listener client;
   one-way latency = the listener's callback time - the time just before ``send_message``.
3. The daemon (``kdlive listen --virtual kdin``, a subprocess): a player sends MIDI clock at
   ``--bpm`` and notes on 1, then 16, busy channels (at most 17 events per JACK period: a
   64-frame MIDI buffer holds about 28). A metronome client sends the same clock ticks at the
   same moments to the listener's "clock" port; the daemon's CC go to its "cc" port. Latency
   of a window = arrival at the listener of its class CC - arrival there of the clock tick on
   the bar line that closed it (that tick reached the daemon in the same JACK cycle). So it
   counts the daemon's work plus one trip through the transport.

Goal (live issue): p99 <= the bare transport's p99 + 1 ms. Arrival times are the listener's
``perf_counter_ns`` at the start of the JACK cycle that delivered the event: what a JACK
application listening to the daemon sees.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from jackkit import JackServer, die_with_parent  # noqa: E402


def stats(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {
        "n": len(a),
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
        "mean_ms": float(a.mean()),
    }


class Recorder:
    """A JACK client (JACK-Client) with MIDI inputs ``ports``, recording (wall ns at its
    process cycle, port, bytes) of each event: every event of a cycle gets the cycle's time, as
    a synth reading the port would, so a burst of CC is not stretched by per-message Python
    callbacks. Separate ports keep a clock and the CC from crowding one buffer."""

    def __init__(self, name: str, ports: tuple[str, ...] = ("in",)) -> None:
        import jack

        self.events: list[tuple[int, str, list[int]]] = []
        self.client = jack.Client(
            name, no_start_server=True, servername=os.environ.get("JACK_DEFAULT_SERVER")
        )
        inputs = [(p, self.client.midi_inports.register(p)) for p in ports]
        clock, events = time.perf_counter_ns, self.events

        def process(frames: int) -> None:
            now = clock()
            for name, port in inputs:
                for _offset, data in port.incoming_midi_events():
                    events.append((now, name, list(bytes(data))))

        self.client.set_process_callback(process)
        self.client.activate()

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def sender(name: str) -> Any:
    import rtmidi

    out = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name=name)
    out.open_virtual_port("out")
    return out


def bare_transport(server: JackServer, n: int, out: Any) -> dict:
    rec = Recorder("bare-recv")
    server.run(["jack_connect", "bare-send:out", "bare-recv:in"], check=True)
    time.sleep(0.3)
    sent = []
    rng = np.random.default_rng(0)
    for i in range(n):
        t = time.perf_counter_ns()
        out.send_message([0x90, i % 128, 1])
        sent.append(t)
        time.sleep(float(rng.uniform(0.002, 0.006)))  # not locked to the JACK period
    time.sleep(0.3)
    rec.close()
    got = [t for t, _, m in rec.events]
    assert len(got) == n, f"lost {n - len(got)} of {n} messages"
    return stats([(g - s) / 1e6 for s, g in zip(sent, got, strict=True)])


def daemon_latency(
    server: JackServer,
    channels: int,
    windows: int,
    bpm: float,
    player: Any,
    metro: Any,
    model: Path | None = None,
) -> dict:
    env = server.env
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from live.cli import app; app()",
            "listen",
            "--api",
            "jack",
            "--virtual",
            "kdin",
            "--stats",
            "1",
            "--channels",
            "1-16",
            *(["--model", str(model)] if model else []),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=die_with_parent,
    )
    try:
        target = server.wait_port("kdlive:kdin", timeout=60)
        out_port = server.wait_port(":kdlive out", timeout=60)
        rec = Recorder(f"listen{channels}", ports=("clock", "cc"))
        for src, dst in (
            (f"player{channels}:out", target),
            (f"metro{channels}:out", f"listen{channels}:clock"),
            (out_port, f"listen{channels}:cc"),
        ):
            server.run(["jack_connect", src, dst], check=True)
        time.sleep(0.5)
        period = 60 / bpm / 24
        print(f"daemon, {channels} busy channel(s): playing {windows + 2} bars", flush=True)
        rng = np.random.default_rng(channels)
        clocks = (windows + 2) * 96 + 1  # 4/4: a window closes at every bar line from bar 3
        player.send_message([0xFA])
        metro.send_message([0xFA])
        t0 = time.perf_counter()
        held: list[tuple[int, int]] = []
        for k in range(clocks):
            time.sleep(max(0.0, t0 + k * period - time.perf_counter()))
            player.send_message([0xF8])
            metro.send_message([0xF8])
            if k % 12 == 0:  # an eighth note on every busy channel, released 6 clocks later:
                for ch in range(channels):  # at most 17 events per JACK period
                    p = int(rng.integers(36, 90))
                    player.send_message([0x90 | ch, p, 90])
                    held.append((ch, p))
            elif k % 12 == 6:
                for ch, p in held:
                    player.send_message([0x80 | ch, p, 0])
                held.clear()
        player.send_message([0xFC])
        time.sleep(0.5)
        rec.close()  # before any rtmidi client closes: see main()
    finally:
        proc.send_signal(2)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            print(f"note: the daemon ({channels} channels) did not exit on SIGINT within 30 s")

    stats_lines = [x for x in out.splitlines() if x.startswith("[stats]")]
    # Clock ticks seen by the listener, in order (0 = the first after Start). Window i of a
    # channel (bars i+1..i+2) closes on tick 192 + 96 i. Its first CC is the class (CC 28; all
    # windows' class CC go first), its last the probability of Pipe (CC 27).
    ticks = [t for t, port, m in rec.events if port == "clock" and m == [0xF8]]
    n_cc = sum(1 for _, port, m in rec.events if port == "cc")
    seen: dict[tuple[int, int], int] = {}
    lat, lat_all = [], []
    for t, port, m in rec.events:
        if port == "cc" and m[0] & 0xF0 == 0xB0 and m[1] in (28, 27):
            key = (m[0] & 0x0F, m[1])
            i = seen.get(key, 0)
            seen[key] = i + 1
            k = 192 + 96 * i
            if k < len(ticks):
                (lat if m[1] == 28 else lat_all).append((t - ticks[k]) / 1e6)
    batches = max(seen.values(), default=0)
    result = stats(lat) if lat else {"n": 0}
    result.update(
        channels=channels,
        windows_expected=windows + 1,
        batches=batches,
        cc_messages=n_cc,
        ticks=len(ticks),
        bpm=bpm,
        daemon_stats=stats_lines[-1] if stats_lines else None,
        all_nine_cc=stats(lat_all) if lat_all else None,
    )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--period", type=int, default=64, help="JACK frames per period")
    # 30 windows: with 80, the 16-channel run (29k messages from one rtmidi sender in 41 s)
    # stalls on this 2-core VM: the sender's JACK client stops being run and its send_message
    # blocks (cause not found yet); 30 completes reliably.
    ap.add_argument("--windows", type=int, default=30, help="windows per measurement")
    ap.add_argument("--bpm", type=float, default=480.0)
    ap.add_argument("--bare", type=int, default=1000, help="messages for the bare transport")
    ap.add_argument("--model", type=Path, help="the bundle to run (default: the shipped one)")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks/results/live_latency.json")
    args = ap.parse_args()
    why = JackServer.available()
    if why:
        sys.exit(f"cannot run: {why}")
    server = JackServer(f"kdbench{os.getpid()}", period=args.period).start()
    # Never hang: if a measurement or the teardown stalls, print every thread's stack and exit
    # 3 (a C-level timer: a stalled rtmidi call holds the GIL, so no Python timer would run).
    # The daemon and jackd die with this process. Under heavy CPU load JACK can drop a client
    # from the graph, and an rtmidi sender whose ring buffer then fills blocks for good.
    faulthandler.dump_traceback_later(
        120 + 2 * (args.windows + 3) * 4 * 60 / args.bpm + args.bare * 0.006, exit=True
    )
    os.environ["JACK_DEFAULT_SERVER"] = server.name
    # Every rtmidi client first: opening one holds the GIL while JACK (synchronous mode) waits
    # for every active client's cycle, and a JACK-Client listener's cycle waits for the GIL.
    senders = {n: sender(n) for n in ("bare-send", "player1", "metro1", "player16", "metro16")}
    try:
        result = {
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "load_average_at_start": list(os.getloadavg()),
            },
            "jack": {
                "driver": "dummy",
                "rate": 48000,
                "period": args.period,
                "sync": True,
                "period_ms": args.period / 48.0,
            },
            "bare_transport": bare_transport(server, args.bare, senders["bare-send"]),
            "daemon": {
                str(c): daemon_latency(
                    server,
                    c,
                    args.windows,
                    args.bpm,
                    senders[f"player{c}"],
                    senders[f"metro{c}"],
                    args.model,
                )
                for c in (1, 16)
            },
        }
    finally:
        # Teardown order matters in synchronous mode. Every JACK-Client listener is already
        # closed; an rtmidi close holds the GIL while JACK waits for every client's cycle, so
        # it must not overlap a Python process callback. Then the server goes.
        for out in senders.values():
            out.close_port()
        server.stop()
    bare = result["bare_transport"]["p99_ms"]
    result["goal"] = {
        f"{c}_channels": {
            "p99_ms": d["p99_ms"],
            "limit_ms": bare + 1.0,
            "met": d["p99_ms"] <= bare + 1.0,
        }
        for c, d in result["daemon"].items()
        if d.get("n")
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    b = result["bare_transport"]
    print(f"bare transport: p50 {b['p50_ms']:.3f} ms, p99 {b['p99_ms']:.3f} ms (n={b['n']})")
    for c, d in result["daemon"].items():
        if d.get("n"):
            print(
                f"daemon, {c:>2} busy channel(s): p50 {d['p50_ms']:.3f} ms, "
                f"p99 {d['p99_ms']:.3f} ms,"
                f" max {d['max_ms']:.3f} ms over {d['n']} windows"
            )
    print(f"goal (p99 <= bare p99 + 1 ms): {result['goal']}")
    print(f"results: {args.json}", flush=True)


if __name__ == "__main__":
    main()
    # Skip interpreter teardown: libjack's threads of closed clients have nothing to flush,
    # and waiting on them at exit was where this benchmark used to hang.
    sys.stdout.flush()
    os._exit(0)
