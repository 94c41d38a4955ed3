"""`kdlive listen`'s settings (:mod:`live.settings`): checked when made, errors naming fields;
and the channel sets a user writes (:mod:`live.channels`)."""

from __future__ import annotations

import pytest

from live.channels import PITCHED, channels_text, parse_channels
from live.errors import SettingError
from live.settings import ListenSettings, osc_address, parse_declarations, parse_meter


def test_the_defaults_listen_to_the_pitched_channels() -> None:
    s = ListenSettings(virtual="kdlive")
    assert s.channels == PITCHED and 10 not in s.channels and len(s.channels) == 15
    assert s.fixed_meter().bar_ticks == 4 * 960 and s.hop_bars == 1


@pytest.mark.parametrize(
    ("settings", "fields", "message"),
    [
        ({}, ("port", "virtual"), "give port NAME (an existing input) or virtual NAME"),
        ({"port": "IAC", "virtual": "x"}, ("port", "virtual"), "give port NAME"),
        ({"hop_bars": 3}, ("hop_bars",), "hop_bars must be 1 (a window at every bar line)"),
        ({"bpm": 4.0}, ("bpm",), "bpm 4 is out of range: give 10 to 400"),
        ({"meter": (5, 3)}, ("meter",), "meter 5/3: give a meter like 4/4"),
        ({"osc": ("localhost",)}, ("osc",), "osc 'localhost': give HOST:PORT"),
        ({"channels": (0, 1)}, ("channels",), "channels must be among 1-16"),
        ({"declared": {3: "Flute"}}, ("declared",), "declared 3=Flute: write CHANNEL=CLASS"),
        ({"threads": 0}, ("threads",), "threads must be at least 1"),
        ({"stats_every": -1.0}, ("stats_every",), "stats_every must be at least 0"),
    ],
)
def test_a_bad_setting_is_refused_naming_its_fields(
    settings: dict, fields: tuple[str, ...], message: str
) -> None:
    with pytest.raises(SettingError) as info:
        ListenSettings(**({"virtual": "kdlive", **settings} if settings else {}))
    assert info.value.fields == fields and str(info.value).startswith(message)


def test_text_forms_parse_to_settings() -> None:
    assert parse_channels("1-3, 5,16") == (1, 2, 3, 5, 16)
    assert parse_meter("6/8") == (6, 8)
    assert parse_declarations(["3=strings", "1=Piano"]) == {3: "Strings", 1: "Piano"}
    assert osc_address("127.0.0.1:9000") == ("127.0.0.1", 9000)
    with pytest.raises(SettingError, match="^channels '0-3'"):
        parse_channels("0-3")
    with pytest.raises(SettingError, match="^meter '3'"):
        parse_meter("3")
    with pytest.raises(SettingError, match="^declared '3=Flute'"):
        parse_declarations(["3=Flute"])


@pytest.mark.parametrize("text", ["1-9,11-16", "1-16", "1,3,5-7,16", "10"])
def test_channels_text_reads_back(text: str) -> None:
    assert channels_text(parse_channels(text)) == text
    assert channels_text(PITCHED) == "1-9,11-16"
