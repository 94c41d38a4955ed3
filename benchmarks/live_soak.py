"""`kdlive listen` for a long gig: 16 busy channels, MIDI clock from the sender, for an hour.

Usage::

    python benchmarks/live_soak.py                       # 60 min; benchmarks/results/live_soak.json
    python benchmarks/live_soak.py --minutes 5 --json /tmp/soak.json
    python benchmarks/live_soak.py --minutes 10 --garbage 1000000   # and a million bad bytes

A JACK server with the dummy driver; the daemon (``kdlive listen --virtual kdin --no-view``)
in a subprocess; a :class:`live.testing.jack.Performer` plays Start, MIDI clock at ``--bpm``
and an eighth note on each of 16 channels (all 16 followed) for the duration, and records the
daemon's CC with their frames. With ``--garbage N``, about N malformed bytes (stray data
bytes, truncated messages, unterminated SysEx) go to the daemon's input between the notes, on
a second port merged into the same input.

Measured (written as JSON): the daemon's resident memory (``/proc/PID/status`` VmRSS) every
10 s; the windows each channel got against the bar lines played (every channel should get one
answer per bar from the 2nd bar line on); latency (class CC arrival frame - frame of the clock
tick that closed the window) over the first and the last 5 minutes. Goals (live issue): RSS
growth < 5 MB after the first minute, no window lost, p99 the same at the end as at the start.
With ``--garbage``, the same song is played once more without garbage and the answers
compared: they must be equal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from live import latency
from live.testing.jack import JackServer, Performer, listen_output, start_listen

REPO = Path(__file__).resolve().parents[1]

CHANNELS = 16


def song(minutes: float, bpm: float, garbage_per_bar: int, seed: int = 0) -> Iterator:
    """``(seconds, port, bytes)`` in time order: Start, clock, an eighth note on every channel
    (released 6 clocks later), and garbage on port "junk" between them; Stop at the end."""
    period = 60 / bpm / 24
    clocks = int(minutes * 60 * bpm / 240) * 96 + 1  # whole bars, and the last bar line
    rng = np.random.default_rng(seed)
    junk = np.random.default_rng(seed + 1)
    yield 0.0, "out", [0xFA]
    held: list[tuple[int, int]] = []
    for k in range(clocks):
        t = 0.005 + k * period
        yield t, "out", [0xF8]
        if k % 12 == 0:
            for ch in range(CHANNELS):
                p = int(rng.integers(36, 90))
                held.append((ch, p))
                yield t, "out", [0x90 | ch, p, 90]
        elif k % 12 == 6:
            for ch, p in held:
                yield t, "out", [0x80 | ch, p, 0]
            held.clear()
        if garbage_per_bar and k % 96 == 48:  # mid-bar: between the notes, off the bar line
            for _ in range(max(1, garbage_per_bar // 40)):
                yield t + period / 2, "junk", bad_message(junk)
    yield 0.005 + clocks * period, "out", [0xFC]


def bad_message(rng: np.random.Generator) -> list[int]:
    """One malformed message of about 40 bytes."""
    kind = int(rng.integers(0, 3))
    if kind == 0:  # data bytes with no status
        return [int(x) for x in rng.integers(0, 0x80, 40)]
    if kind == 1:  # a SysEx that never ends
        return [0xF0, *(int(x) for x in rng.integers(0, 0x80, 39))]
    return [0x90, 60, 0xF4, *(int(x) for x in rng.integers(0, 0x80, 37))]  # undefined status


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def play(server: JackServer, minutes: float, bpm: float, garbage: int, tag: str) -> dict:
    """One run of the daemon on the song; what it answered, its memory, its latency."""
    proc = start_listen(server, "--stats", "60")
    perf = None
    rss: list[tuple[float, int]] = []
    load: list[tuple[float, float]] = []  # the machine's 1-minute load average, with the RSS
    try:
        target = server.wait_port("kdlive:kdin", timeout=60)
        out_port = server.wait_port(":kdlive out", timeout=60)
        perf = Performer(f"soak-{tag}", outputs=("out", "junk"), inputs=("cc",))
        for src, dst in ((perf.port("out"), target), (perf.port("junk"), target)):
            server.run(["jack_connect", src, dst], check=True)
        server.run(["jack_connect", out_port, perf.port("cc")], check=True)
        time.sleep(0.5)
        bars = int(minutes * 60 / (4 * 60 / bpm))
        per_bar = garbage // max(1, bars)
        start = perf.play(song(minutes, bpm, per_bar))
        t0 = time.monotonic()
        next_sample = t0
        last_sent, last_move = -1, t0
        while not perf.done:
            now = time.monotonic()
            if now >= next_sample:
                rss.append((now - t0, rss_kb(proc.pid)))
                load.append((now - t0, os.getloadavg()[0]))
                next_sample += 10.0
            if proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with {proc.returncode}")
            if perf.sent != last_sent:
                last_sent, last_move = perf.sent, now
            elif now - last_move > 10:  # JACK stopped running our client: say so, never hang
                raise RuntimeError(
                    f"the performer's process callback stopped after {perf.sent} events "
                    f"({now - t0:.0f} s in): JACK no longer runs the client; "
                    f"{perf.error or 'no error from the client or the server'}"
                )
            time.sleep(0.2)
        time.sleep(1.0)
        rss.append((time.monotonic() - t0, rss_kb(proc.pid)))
    finally:
        proc.send_signal(2)  # the daemon leaves the graph first, then the performer
        out = listen_output(proc, timeout=30)
        if perf is not None and not perf.close():
            print("note: JACK did not let the performer go within 5 s; left behind", flush=True)
    period_frames = perf.rate * 60 / bpm / 24
    answers: dict[int, list[list[int]]] = {}
    latency: list[tuple[float, float]] = []  # (seconds into the song, ms)
    current: dict[int, dict[int, int]] = {}
    for frame, _, m in perf.received:
        if m[0] & 0xF0 != 0xB0:
            continue
        ch = m[0] & 0x0F
        current.setdefault(ch, {})[m[1]] = m[2]
        if m[1] == 28:  # the class CC opens a window's CC: latency from its bar line
            i = len(answers.get(ch, []))
            tick = start + (0.005 * perf.rate) + (192 + 96 * i) * period_frames
            latency.append(((frame - start) / perf.rate, 1000 * (frame - tick) / perf.rate))
        if m[1] == 27:  # the last probability: the window is complete
            cc = current.pop(ch)
            answers.setdefault(ch, []).append([cc.get(n, -1) for n in (*range(20, 30), 30)])
    bars = int(minutes * 60 * bpm / 240)
    return {
        "answers": answers,
        "windows_expected_per_channel": bars - 1,
        "windows_per_channel": [len(answers.get(ch, [])) for ch in range(CHANNELS)],
        "rss": rss,
        "load": load,
        "latency": latency,
        "sent": perf.sent,
        "did_not_fit": perf.dropped,
        "stats": [x for x in out.splitlines() if x.startswith("[stats]")][-1:],
        "exit_code": proc.returncode,
    }


def p50_p99(ms: np.ndarray) -> dict:
    s = latency.summary(ms)
    return {"p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"], "n": len(ms)}


def summary(run: dict, minutes: float) -> dict:
    rss = run["rss"]
    after_1 = next((kb for t, kb in rss if t >= 60), rss[0][1] if rss else 0)
    lat = np.array(run["latency"]) if run["latency"] else np.zeros((0, 2))
    window = min(5.0, minutes / 3) * 60
    first = lat[lat[:, 0] <= lat[0, 0] + window, 1] if len(lat) else lat
    last = lat[lat[:, 0] >= lat[-1, 0] - window, 1] if len(lat) else lat

    lost = [run["windows_expected_per_channel"] - n for n in run["windows_per_channel"]]
    return {
        "rss_mb_after_1_min": after_1 / 1024,
        "rss_mb_at_end": rss[-1][1] / 1024 if rss else None,
        "rss_growth_mb_after_1_min": (rss[-1][1] - after_1) / 1024 if rss else None,
        "windows_lost_per_channel": lost,
        "latency_first_minutes": p50_p99(first),
        "latency_last_minutes": p50_p99(last),
        "minutes_compared": window / 60,
        "did_not_fit": run["did_not_fit"],
        "exit_code": run["exit_code"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--bpm", type=float, default=120.0)
    ap.add_argument("--period", type=int, default=64, help="JACK frames per period")
    ap.add_argument("--garbage", type=int, default=0, help="malformed bytes to interleave")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks/results/live_soak.json")
    args = ap.parse_args()
    why = JackServer.available()
    if why:
        sys.exit(f"cannot run: {why}")
    server = JackServer(f"kdsoak{os.getpid()}", period=args.period).start()
    os.environ["JACK_DEFAULT_SERVER"] = server.name
    try:
        run = play(server, args.minutes, args.bpm, args.garbage, "a")
        clean = play(server, args.minutes, args.bpm, 0, "b") if args.garbage else None
    finally:
        server.stop()
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": latency.machine() | {"load_average_at_end": list(os.getloadavg())},
        "minutes": args.minutes,
        "bpm": args.bpm,
        "channels": CHANNELS,
        "jack": {"driver": "dummy", "rate": 48000, "period": args.period},
        "garbage_bytes": args.garbage,
        "summary": summary(run, args.minutes),
        "rss_kb": run["rss"],
        "load_average_1_min": run["load"],
        "daemon_stats": run["stats"],
    }
    if clean is not None:
        same = clean["answers"] == run["answers"]
        result["garbage"] = {"answers_equal_to_clean_run": same}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    if "garbage" in result:
        print(f"answers with {args.garbage:,} bad bytes equal to the clean run's: {same}")
    print(f"results: {args.json}", flush=True)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)
