"""`kdlive learn`'s sweep and settings (the port itself: tests/integration/test_learn.py)."""

from __future__ import annotations

import itertools
import threading

import pytest
from typer.testing import CliRunner

from kdapp.kdlive import app as kdlive
from live.errors import SettingError
from live.learn import STEP, LearnSettings, send, sweep, sweep_cycle
from live.testing.daemon import Recorder


def test_the_sweep_rises_to_127_falls_back_and_repeats_in_small_steps() -> None:
    cycle = sweep_cycle()
    assert cycle[0] == 0 and max(cycle) == 127 and min(cycle) == 0
    peak = cycle.index(127)
    assert cycle[: peak + 1] == sorted(cycle[: peak + 1])  # up, then down
    assert cycle[peak:] == sorted(cycle[peak:], reverse=True)
    values = list(itertools.islice(sweep(), 3 * len(cycle)))
    assert values == cycle * 3
    steps = [abs(b - a) for a, b in itertools.pairwise(values)]
    assert min(steps) > 0 and max(steps) <= STEP  # moves every message, never jumps


def test_send_puts_only_that_cc_on_that_channel_until_stopped() -> None:
    settings = LearnSettings(cc=74, channel=3, period=0.001)
    stop = threading.Event()
    out = Recorder()
    count = len(sweep_cycle()) + 5

    def record(message: list[int]) -> None:
        out.sent.append(message)
        if len(out.sent) == count:
            stop.set()

    out.send_message = record  # type: ignore[method-assign]
    assert send(out, settings, stop) == count
    assert [m[:2] for m in out.sent] == [[0xB2, 74]] * count
    assert [m[2] for m in out.sent] == list(itertools.islice(sweep(), count))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["learn", "128"], "CC 128: CC numbers are 0-127"),
        (["learn", "--", "-1"], "CC -1: CC numbers are 0-127"),
        (["learn", "30", "--channel", "0"], "--channel 0: channels are 1-16"),
        (["learn", "30", "--channel", "17"], "--channel 17: channels are 1-16"),
    ],
)
def test_a_cc_or_channel_out_of_range_is_a_usage_error_before_any_port_opens(
    args: list[str], says: str
) -> None:
    result = CliRunner().invoke(kdlive, args)
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.replace("│", " ").split())


def test_settings_name_the_bad_field() -> None:
    with pytest.raises(SettingError, match="cc -3: CC numbers are 0-127"):
        LearnSettings(cc=-3)
