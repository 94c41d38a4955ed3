"""`kdlive tag`: parts written as Program Changes and track names into files the tests write,
every other byte kept, the composer's programs left alone unless asked, folders mirrored, and
bad input refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import mido
import pytest
from typer.testing import CliRunner

from kdapp.kdlive import app as kdlive
from live.model import Model
from live.smf import SmfBytes
from live.tag import GM_PROGRAM, running_answers
from live.taxonomy import CLASSES, class_of_program
from live.testing.songs import Event, meta, off, on, program, write_midi

runner = CliRunner()


def notes(channel: int, low: int, bars: int = 4, start: int = 0) -> list[Event]:
    """An eighth-note line on ``channel`` (0-based) for ``bars`` bars of 4/4 from ``start``."""
    out: list[Event] = []
    for k in range(bars * 8):
        tick = start + k * 240
        out += [
            on(tick, low + (k * 5) % 12, 90, channel),
            off(tick + 200, low + (k * 5) % 12, channel),
        ]
    return out


def conductor() -> list[Event]:
    return [
        meta(0, "set_tempo", tempo=500_000),
        meta(0, "time_signature", numerator=4, denominator=4),
    ]


def tag(*args: str) -> tuple[int, str]:
    result = runner.invoke(kdlive, ["tag", *map(str, args)])
    return result.exit_code, result.output


def rows(output: str) -> dict[int, dict]:
    return {r["channel"]: r for r in map(json.loads, output.splitlines())}


def timed(path: Path, kinds: tuple[str, ...] = ("note_on", "note_off")) -> list[tuple]:
    """Each track's messages of ``kinds`` at their absolute ticks."""
    out = []
    for t, track in enumerate(mido.MidiFile(path).tracks):
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type in kinds:
                out.append((t, tick, msg.bytes()))
    return out


def answer_of(path: Path, channel: int) -> str:
    return CLASSES[int(running_answers(path, Model())[channel].argmax())]


def test_a_part_without_a_program_gets_one_and_a_name_and_nothing_else_changes(
    tmp_path: Path,
) -> None:
    src = write_midi(
        tmp_path / "in.mid",
        [
            conductor(),
            notes(0, 60),  # no name, no program
            [meta(0, "track_name", name="Violins"), program(0, 48, 1), *notes(1, 48)],
        ],
    )
    code, out = tag(src, "-o", tmp_path / "out.mid", "--json")
    assert code == 0, out
    got = rows(out)
    answer = answer_of(src, 1)
    assert got[1]["answer"] == answer and got[1]["written"] == GM_PROGRAM[answer]
    assert got[1]["had"] == [] and got[1]["notes"] == 32
    assert got[2]["written"] is None and got[2]["had"] == [48] and got[2]["tracks"] == ["Violins"]
    new = mido.MidiFile(tmp_path / "out.mid")
    first = new.tracks[1][:2]
    assert first[0].type == "track_name" and first[0].name == answer
    assert first[1].type == "program_change" and first[1].channel == 0
    assert first[1].program == GM_PROGRAM[answer] and first[1].time == 0
    # the output plays the same notes at the same ticks, and every byte but the two inserted
    # events (and the chunk's length) is the input's
    assert timed(tmp_path / "out.mid") == timed(src)
    n = len(mido.MidiFile(src).tracks)
    before, after = (
        SmfBytes.parse(src.read_bytes(), n),
        SmfBytes.parse(new_bytes := (tmp_path / "out.mid").read_bytes(), n),
    )
    inserted = b"\x00" + bytes(first[0].bytes()) + b"\x00" + bytes(first[1].bytes())
    assert after.track(1) == inserted + before.track(1)
    assert after.track(0) == before.track(0) and after.track(2) == before.track(2)
    assert new_bytes[:14] == src.read_bytes()[:14]


def test_only_missing_keeps_the_composers_program_and_reports_where_kdlive_differs(
    tmp_path: Path,
) -> None:
    probe = write_midi(tmp_path / "probe.mid", [conductor(), notes(0, 60)])
    heard = answer_of(probe, 1)
    other = 48 if heard != "Strings" else 0  # a program of another family
    src = write_midi(
        tmp_path / "in.mid",
        [conductor(), [meta(0, "track_name", name="Lead"), program(0, other, 0), *notes(0, 60)]],
    )
    code, out = tag(src, "-o", tmp_path / "out.mid")
    assert code == 0, out
    line = next(x for x in out.splitlines() if x.lstrip().startswith("1 "))
    assert "kept: differs from kdlive" in line and heard in line
    assert f"{other} {class_of_program(other)}" in line
    assert (tmp_path / "out.mid").read_bytes() == src.read_bytes()  # nothing to write
    code, out = tag(src, "--json")
    assert rows(out)[1]["differs"] is True and rows(out)[1]["written"] is None


def test_all_sets_every_program_of_the_part_and_adds_one_before_its_first_note(
    tmp_path: Path,
) -> None:
    """The composer's Program Change comes after the first note: --all sets it to the answer
    (in place) and adds one at the start, so the whole part plays the answer."""
    src = write_midi(
        tmp_path / "in.mid",
        [conductor(), [*notes(0, 60, 2), program(3840, 40, 0), *notes(0, 60, 2, 3840)]],
    )
    code, out = tag(src, "-o", tmp_path / "out.mid", "--all", "--json")
    assert code == 0, out
    written = rows(out)[1]["written"]
    assert written == GM_PROGRAM[rows(out)[1]["answer"]] and rows(out)[1]["had"] == [40]
    assert timed(tmp_path / "out.mid", ("program_change",)) == [
        (1, 0, [0xC0, written]),
        (1, 3840, [0xC0, written]),
    ]
    assert timed(tmp_path / "out.mid") == timed(src)


def test_one_channel_over_two_tracks_is_one_part_and_the_drums_are_never_tagged(
    tmp_path: Path,
) -> None:
    """A channel's notes in two tracks: one Program Change (in the track of its first note),
    each track named. A type-0 style track with two channels: a Program Change each, no
    name (it is no one part's). Channel 10 stays as it is, even with --all."""
    both = sorted([*notes(3, 40), *notes(9, 36)], key=lambda e: e[0])  # channels 4 and 10
    src = write_midi(
        tmp_path / "in.mid",
        [conductor(), notes(2, 60, 2, 3840), notes(2, 64, 2), both],  # channel 3: tracks 1, 2
    )
    code, out = tag(src, "-o", tmp_path / "out.mid", "--all", "--json")
    assert code == 0, out
    got = rows(out)
    assert got[10]["written"] is None and got[10]["answer"] is None
    pcs = timed(tmp_path / "out.mid", ("program_change",))
    assert pcs == [
        (2, 0, [0xC2, got[3]["written"]]),  # the track of its first note
        (3, 0, [0xC3, got[4]["written"]]),
    ]
    names = [
        next((m.name for m in t if m.type == "track_name"), None)
        for t in mido.MidiFile(tmp_path / "out.mid").tracks
    ]
    assert names == [None, got[3]["answer"], got[3]["answer"], None]  # track 3: two parts
    assert timed(tmp_path / "out.mid") == timed(src)


def test_a_folder_is_tagged_into_a_mirror_and_a_bad_file_is_skipped_in_one_line(
    tmp_path: Path,
) -> None:
    src = tmp_path / "songs"
    (src / "a").mkdir(parents=True)
    write_midi(src / "a" / "one.mid", [conductor(), notes(0, 60)])
    write_midi(src / "two.midi", [conductor(), notes(1, 40)])
    (src / "broken.mid").write_bytes(b"MThd\x00\x00")
    (src / "notes.txt").write_text("not MIDI, not looked at")
    code, out = tag(src, "-o", tmp_path / "tagged")
    assert code == 0, out
    assert sorted(
        p.relative_to(tmp_path / "tagged").as_posix() for p in (tmp_path / "tagged").rglob("*")
    ) == [
        "a",
        "a/one.mid",
        "two.midi",
    ]
    skipped = [x for x in out.splitlines() if x.startswith("skipped")]
    assert len(skipped) == 1 and "broken.mid" in skipped[0]
    assert "2 file(s) read, 2 part(s) tagged" in out and "1 skipped" in out
    tagged = timed(tmp_path / "tagged" / "a" / "one.mid", ("program_change",))
    assert [(t, tick) for t, tick, _ in tagged] == [(1, 0)]


def test_a_file_it_cannot_read_is_one_line_and_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"RIFF not a MIDI file")
    code, out = tag(bad, "-o", tmp_path / "out.mid")
    assert code == 1 and "bad.mid: not a readable MIDI file" in out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1
    assert not (tmp_path / "out.mid").exists()
    code, out = tag(tmp_path / "missing.mid")
    assert code == 1 and "no such file or folder" in out


@pytest.mark.parametrize("as_output", [True, False])
def test_it_never_overwrites_its_input_unless_asked(tmp_path: Path, as_output: bool) -> None:
    src = write_midi(tmp_path / "in.mid", [conductor(), notes(0, 60)])
    before, played = src.read_bytes(), timed(src)
    code, out = tag(src, *(["-o", src] if as_output else []))
    assert src.read_bytes() == before
    if as_output:
        assert code == 2 and "--in-place" in out
    else:
        assert code == 0 and "nothing written" in out
    code, out = tag(src, *(["-o", src] if as_output else []), "--in-place")
    assert code == 0, out
    assert src.read_bytes() != before and timed(src) == played
    assert [p.name for p in tmp_path.iterdir()] == ["in.mid"]  # no temporary file left
