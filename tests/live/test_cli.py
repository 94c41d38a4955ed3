"""``kdlive``'s command line (CliRunner): what it prints, and a bad flag is one line naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdapp.kdlive import app as kdlive
from live.testing.songs import Track, write_song

runner = CliRunner()


def test_kdlive_contract_prints_the_numbers() -> None:
    result = runner.invoke(kdlive, ["contract"])
    assert result.exit_code == 0
    info = json.loads(result.output)
    shapes = {"1": [None, 1, 128, 16], "2": [None, 5, 128, 16], "3": [None, 5, 128, 16]}
    assert info["input_shape"] == shapes
    assert info["contract_3_control_rows"][0] == "pedal >= 64"
    assert info["contract_3_control_rows"][5] == "expression < 96"
    assert info["contract_2_channels"][:2] == ["sounding", "onset"]
    assert info["classes"][0] == "Piano" and len(info["classes"]) == 8


def test_replay_leaves_the_drums_alone_unless_asked(tmp_path: Path) -> None:
    """Channel 10 (General MIDI's drums) is heard as the others' context but not classified,
    unless --channels names it; the other channels' answers do not change with that choice."""
    beats = [(60 + (k % 5), k / 2, 0.5, 90) for k in range(32)]
    drums = [(36 if k % 2 == 0 else 38, k, 0.25, 100) for k in range(16)]
    path = write_song(
        tmp_path / "song.mid",
        [Track("piano", 0, 0, beats), Track("drums", 0, 9, drums)],
    )

    def replay(*options: str) -> list[dict]:
        result = runner.invoke(kdlive, ["replay", str(path), "--json", *options])
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in result.output.splitlines()]

    default, every = replay(), replay("--channels", "1-16")
    assert {w["channel"] for w in default} == {1}
    assert {w["channel"] for w in every} == {1, 10}
    assert default == [w for w in every if w["channel"] == 1]
    assert "1-16 classifies them too" in runner.invoke(kdlive, ["replay", "--help"]).output


def test_a_bad_declaration_is_one_line_naming_the_classes() -> None:
    result = runner.invoke(kdlive, ["listen", "--virtual", "x", "--declare", "3=Flute"])
    assert result.exit_code == 2
    assert "CHANNEL=CLASS" in result.output and "Strings" in result.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["listen", "--virtual", "x", "--cc-class", "23"], "--cc-class 23 collides with"),
        (["listen", "--virtual", "x", "--cc-class", "40", "--cc-part", "40"], "--cc-class and"),
        (["listen", "--virtual", "x", "--hop-bars", "3"], "--hop-bars must be 1"),
        (["listen", "--virtual", "x", "--stats", "-1"], "--stats must be at least 0"),
        (["listen", "--virtual", "x", "--osc", "9000"], "--osc '9000': give HOST:PORT"),
        (["listen", "--virtual", "x", "--meter", "5/3"], "--meter 5/3"),
        (["listen"], "give --port NAME"),
        (["replay", "SONG", "--hop-bars", "3"], "--hop-bars must be 1"),
        (["replay", "SONG", "--channels", "0-3"], "--channels '0-3'"),
    ],
)
def test_a_bad_live_setting_is_a_usage_error_naming_its_flag(
    args: list[str], says: str, tmp_path: Path
) -> None:
    """The settings name their fields; the command line says which flag (for listen, before
    any port opens or any model loads)."""
    song = write_song(tmp_path / "song.mid", [Track("piano", 0, 0, [(60, 0, 1, 90)])])
    result = runner.invoke(kdlive, [str(song) if a == "SONG" else a for a in args])
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.replace("│", " ").split())


def test_the_default_channels_are_every_one_but_the_drums() -> None:
    out = runner.invoke(kdlive, ["listen", "--help"], terminal_width=200).output
    assert "(1-9,11-16)" in out and "[default: 1-9,11-16]" in out
