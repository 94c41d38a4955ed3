"""`kdlive learn` over a real MIDI transport: a subprocess on a JACK dummy server, heard by an
independent JACK client (``live.testing.jack.Listener``)."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time

from live.learn import PERIOD_S, sweep_cycle
from live.testing.jack import JackServer, Listener, die_with_parent
from tests.integration.needs_jack import JACK_MARKS

pytestmark = JACK_MARKS

KDLIVE = [sys.executable, "-c", "from live.cli import app; app()"]


def test_learn_sends_only_that_cc_sweeping_until_ctrl_c(jack: JackServer) -> None:
    proc = subprocess.Popen(
        [*KDLIVE, "learn", "74", "--channel", "3", "--api", "jack"],
        env=jack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=die_with_parent,
    )
    try:
        port = jack.wait_port(":kdlive out")
        assert port == "kdlive:kdlive out"  # the daemon's own port name, so a mapping carries
        listener = Listener(":kdlive out", jack)
        try:
            time.sleep(2.0)
        finally:
            listener.close()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    lines = out.splitlines()
    assert (
        lines[0].startswith("sending CC 74 on channel 3 to 'kdlive out'") and lines[-1] == "stopped"
    )
    got = [m for _, m in listener.received]
    assert len(got) >= 0.5 * 2.0 / PERIOD_S, got  # about one every 50 ms
    assert {(m[0], m[1]) for m in got} == {(0xB2, 74)} and all(len(m) == 3 for m in got)
    # each value follows the one before as in the sweep (none lost, none out of order)
    cycle = sweep_cycle()
    follows = set(itertools.pairwise(cycle + cycle[:1]))
    values = [m[2] for m in got]
    assert all(pair in follows for pair in itertools.pairwise(values)), values
    assert len(set(values)) >= 10  # it sweeps
