"""Reading Standard MIDI Files: load_midi, read_song, TempoMap, BarGrid and Part."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import mido
import numpy as np
import pytest
from mido.midifiles.meta import KeySignatureError

from live.errors import LiveError, MidiFileError
from live.midifile import BarGrid, Song, TempoMap, load_midi, read_song
from live.testing.songs import TPB, cc, meta, off, on, program, write_midi

# ---------------------------------------------------------------------------------- helpers


def song_of(tmp_path: Path, tracks, name: str = "song.mid", **kwargs) -> Song:
    return read_song(load_midi(write_midi(tmp_path / name, tracks, **kwargs)))


def notes_by_part(song: Song) -> dict[tuple[int, int, int], list[tuple[int, int, int]]]:
    return {
        (p.track, p.channel, p.program): list(
            zip(p.pitches.tolist(), p.starts.tolist(), p.ends.tolist(), strict=True)
        )
        for p in song.parts
    }


# -------------------------------------------------------------------------------- TempoMap


def test_tempo_map_by_hand():
    tm = TempoMap.from_changes(480, [(960, 250_000)])
    # 960 ticks at 120 BPM = 1 s, then 960 ticks at 240 BPM = 0.5 s.
    np.testing.assert_allclose(tm.to_seconds([0, 480, 960, 1920]), [0.0, 0.5, 1.0, 1.5])
    assert tm.bpm_at(0) == pytest.approx(120.0)
    assert tm.bpm_at(959) == pytest.approx(120.0)
    assert tm.bpm_at(960) == pytest.approx(240.0)
    assert tm.bpm_range(500) == pytest.approx((120.0, 120.0))
    assert tm.bpm_range(5000) == pytest.approx((120.0, 240.0))


def test_tempo_map_last_change_at_a_tick_wins_and_tick_zero_overrides_default():
    tm = TempoMap.from_changes(100, [(0, 1_000_000), (200, 400_000), (200, 250_000)])
    assert tm.bpm_at(0) == pytest.approx(60.0)
    assert tm.bpm_at(200) == pytest.approx(240.0)
    np.testing.assert_allclose(tm.to_seconds([100, 200, 300]), [1.0, 2.0, 2.25])


def test_tempo_map_without_changes_is_120_bpm():
    tm = TempoMap.from_changes(96, [])
    np.testing.assert_allclose(tm.to_seconds([0, 96, 960]), [0.0, 0.5, 5.0])


def test_tempo_changes_in_any_track_are_used(tmp_path):
    song = song_of(tmp_path, [[on(0, 60), off(480, 60)], [meta(480, "set_tempo", tempo=250_000)]])
    np.testing.assert_allclose(song.tempo.to_seconds([480, 960]), [0.5, 0.75])


# ---------------------------------------------------------------------------------- notes


def test_parts_are_keyed_by_track_channel_and_program(tmp_path):
    conductor = [meta(0, "track_name", name="conductor"), meta(0, "set_tempo", tempo=500_000)]
    band = [
        meta(0, "track_name", name="band"),
        program(0, 0, channel=0),
        program(0, 33, channel=1),
        on(0, 60, channel=0),
        on(0, 40, channel=1),
        off(480, 60, channel=0),
        on(900, 64, channel=0),
        program(960, 40, channel=0),  # mid-track change: later notes go to a new part
        on(960, 62, channel=0),
        off(960, 40, channel=1),
        off(1200, 64, channel=0),  # started under program 0: stays in that part
        off(1440, 62, channel=0),
    ]
    song = song_of(tmp_path, [conductor, band])
    assert notes_by_part(song) == {
        (1, 0, 0): [(60, 0, 480), (64, 900, 1200)],
        (1, 0, 40): [(62, 960, 1440)],
        (1, 1, 33): [(40, 0, 960)],
    }
    assert {p.name for p in song.parts} == {"band"}
    assert song.track_names == ["conductor", "band"]
    assert song.ticks_per_beat == TPB
    assert song.step_ticks == TPB / 2
    assert song.end_tick == 1440


def test_same_program_on_two_tracks_gives_two_parts(tmp_path):
    song = song_of(tmp_path, [[on(0, 60), off(10, 60)], [on(5, 61), off(20, 61)]])
    assert notes_by_part(song) == {(0, 0, 0): [(60, 0, 10)], (1, 0, 0): [(61, 5, 20)]}


def test_a_note_off_releases_every_sounding_note_of_its_pitch(tmp_path):
    """Like a synthesizer's key release (and pretty_midi): the stray second note-off is
    ignored, and a later note of the pitch is not ended by an earlier note's off."""
    song = song_of(
        tmp_path,
        [[on(0, 60, 90), on(100, 60, 50), off(200, 60), off(300, 60), on(400, 60), off(500, 60)]],
    )
    (part,) = song.parts
    assert list(zip(part.starts.tolist(), part.ends.tolist(), strict=True)) == [
        (0, 200),
        (100, 200),
        (400, 500),
    ]
    assert part.velocities.tolist() == [90, 50, 80]


def test_double_note_on_does_not_shift_later_pairs(tmp_path):
    """Two note-ons on one tick and one note-off (seen in a real file): both end there."""
    song = song_of(tmp_path, [[on(256, 76), on(256, 76), off(284, 76), on(352, 76), off(380, 76)]])
    (part,) = song.parts
    assert list(zip(part.starts.tolist(), part.ends.tolist(), strict=True)) == [
        (256, 284),
        (256, 284),
        (352, 380),
    ]


def test_retrigger_on_the_release_tick_keeps_the_new_note(tmp_path):
    song = song_of(tmp_path, [[on(0, 60), on(100, 60), off(100, 60), off(300, 60)]])
    (part,) = song.parts
    assert list(zip(part.starts.tolist(), part.ends.tolist(), strict=True)) == [
        (0, 100),
        (100, 300),
    ]


def test_fifo_is_per_channel(tmp_path):
    song = song_of(
        tmp_path,
        [[on(0, 60, channel=0), on(10, 60, channel=1), off(20, 60, channel=1), off(30, 60)]],
    )
    assert notes_by_part(song) == {(0, 0, 0): [(60, 0, 30)], (0, 1, 0): [(60, 10, 20)]}


def test_note_never_released_ends_at_track_end(tmp_path):
    song = song_of(tmp_path, [[on(0, 60), on(100, 62), off(200, 62)]], end_ticks=[1920])
    assert notes_by_part(song) == {(0, 0, 0): [(60, 0, 1920), (62, 100, 200)]}
    assert song.end_tick == 1920


def test_zero_length_note_is_kept(tmp_path):
    song = song_of(tmp_path, [[on(0, 50), off(240, 50), on(480, 60), off(480, 60)]])
    assert notes_by_part(song) == {(0, 0, 0): [(50, 0, 240), (60, 480, 480)]}


def test_note_on_with_velocity_zero_is_a_note_off(tmp_path):
    song = song_of(
        tmp_path,
        [[on(0, 60), off(240, 60, as_note_on=True), on(480, 60), off(720, 60, as_note_on=True)]],
    )
    (part,) = song.parts
    assert len(part) == 2
    assert list(zip(part.starts.tolist(), part.ends.tolist(), strict=True)) == [
        (0, 240),
        (480, 720),
    ]


def test_stray_note_off_is_ignored(tmp_path):
    song = song_of(tmp_path, [[off(0, 70), on(10, 60), off(20, 60), off(30, 60)]])
    assert notes_by_part(song) == {(0, 0, 0): [(60, 10, 20)]}


def test_notes_are_sorted_by_start_and_drums_are_flagged(tmp_path):
    song = song_of(
        tmp_path,
        [[on(0, 36, channel=9), on(10, 60), off(30, 60), off(40, 36, channel=9)]],
    )
    drums = [p for p in song.parts if p.is_drum]
    pitched = [p for p in song.parts if not p.is_drum]
    assert [(p.channel, len(p)) for p in drums] == [(9, 1)]
    assert [(p.channel, len(p)) for p in pitched] == [(0, 1)]
    for p in song.parts:
        assert (np.diff(p.starts) >= 0).all()
        assert p.pitches.dtype == np.int64 and p.muted.dtype == bool


# ---------------------------------------------------------------------------------- muting


@pytest.mark.parametrize("control", [7, 11])
def test_zero_volume_or_expression_marks_notes_muted(tmp_path, control):
    song = song_of(
        tmp_path,
        [
            [
                cc(0, control, 0),
                on(0, 60),
                off(100, 60),
                on(200, 62, channel=1),  # other channel: not muted
                off(300, 62, channel=1),
                cc(400, control, 90),  # restored
                on(480, 64),
                off(600, 64),
            ]
        ],
    )
    muted = {
        int(p): bool(m)
        for part in song.parts
        for p, m in zip(part.pitches, part.muted, strict=True)
    }
    assert muted == {60: True, 62: False, 64: False}


def test_muting_needs_zero_not_just_low_volume(tmp_path):
    song = song_of(tmp_path, [[cc(0, 7, 1), cc(0, 11, 1), on(0, 60), off(10, 60)]])
    assert song.parts[0].muted.tolist() == [False]


def test_volume_restored_but_expression_zero_is_still_muted(tmp_path):
    song = song_of(
        tmp_path,
        [[cc(0, 7, 0), cc(0, 11, 0), cc(5, 7, 100), on(10, 60), off(20, 60)]],
    )
    assert song.parts[0].muted.tolist() == [True]


# ---------------------------------------------------------------------------------- bar grid


def expected_bars(tpb, meters, end_tick):
    """Independent bar-line walk: each meter runs from its tick to the next change."""
    meters = sorted({t: (n, d) for t, n, d in [(0, 4, 4), *meters]}.items())
    bars = []
    for i, (tick, (num, den)) in enumerate(meters):
        length = tpb * num * 4 // den
        t = tick
        nxt = meters[i + 1][0] if i + 1 < len(meters) else None
        while (nxt is not None and t < nxt) or (nxt is None and t <= end_tick):
            bars.append((t, num, den))
            t += length
        if nxt is None:
            bars.append((t, num, den))  # closing bar line past end_tick
    return bars


def grid_list(grid: BarGrid):
    return list(
        zip(grid.starts.tolist(), grid.numerators.tolist(), grid.denominators.tolist(), strict=True)
    )


def test_four_four_bars_every_four_beats():
    grid = BarGrid.from_meters(TPB, [], end_tick=5000)
    assert grid.starts.tolist() == [0, 1920, 3840, 5760]
    assert set(grid.numerators.tolist()) == {4} and set(grid.denominators.tolist()) == {4}
    assert len(grid) == 4


def test_three_four_section_has_three_beat_bars():
    meters = [(0, 4, 4), (3840, 3, 4)]
    grid = BarGrid.from_meters(TPB, meters, end_tick=8000)
    assert grid_list(grid) == expected_bars(TPB, meters, 8000)
    assert grid.starts.tolist() == [0, 1920, 3840, 5280, 6720, 8160]
    assert np.diff(grid.starts)[2:].tolist() == [3 * TPB] * 3


def test_six_eight_bars_are_three_quarters_long():
    grid = BarGrid.from_meters(TPB, [(0, 6, 8)], end_tick=3000)
    assert grid.starts.tolist() == [0, 1440, 2880, 4320]


def test_meter_change_off_the_bar_line_starts_a_new_bar():
    grid = BarGrid.from_meters(TPB, [(2400, 3, 4)], end_tick=4000)
    assert grid.starts.tolist() == [0, 1920, 2400, 3840, 5280]
    assert grid.numerators.tolist() == [4, 4, 3, 3, 3]


def test_meters_past_the_end_or_invalid_are_ignored():
    grid = BarGrid.from_meters(TPB, [(960, 0, 4), (100_000, 3, 4)], end_tick=2000)
    assert grid.starts.tolist() == [0, 1920, 3840]
    assert set(grid.numerators.tolist()) == {4}


@pytest.mark.parametrize("end_tick", [0, 1, 1919, 1920, 1921, 3839, 3840, 10_001])
def test_grid_extends_at_least_one_bar_line_past_the_end(end_tick):
    meters = [(0, 4, 4), (1920, 3, 4), (3360, 5, 8)]
    grid = BarGrid.from_meters(TPB, meters, end_tick=end_tick)
    assert grid.starts[-1] > end_tick
    assert (np.diff(grid.starts) > 0).all()
    assert grid_list(grid) == expected_bars(TPB, [m for m in meters if m[0] <= end_tick], end_tick)


def test_song_bar_grid_comes_from_time_signatures_in_the_file(tmp_path):
    conductor = [
        meta(0, "time_signature", numerator=4, denominator=4),
        meta(1920, "time_signature", numerator=3, denominator=4),
    ]
    song = song_of(tmp_path, [conductor, [on(0, 60), off(5000, 60)]])
    assert grid_list(song.bars) == expected_bars(TPB, [(0, 4, 4), (1920, 3, 4)], 5000)
    assert song.bars.starts[-1] > song.end_tick == 5000


# ---------------------------------------------------------------------------------- loading


def test_load_midi_reads_path_str_and_bytes(tmp_path):
    path = write_midi(tmp_path / "ok.mid", [[on(0, 60), off(480, 60)]])
    for source in (path, str(path), path.read_bytes()):
        song = read_song(load_midi(source))
        assert notes_by_part(song) == {(0, 0, 0): [(60, 0, 480)]}


def test_empty_file_raises_with_file_name(tmp_path):
    path = tmp_path / "empty_song.mid"
    path.write_bytes(b"")
    with pytest.raises(MidiFileError, match="empty_song.mid"):
        load_midi(path)


def test_random_bytes_raise_with_file_name(tmp_path):
    data = random.Random(1234).randbytes(512)
    assert not data.startswith(b"MThd")
    path = tmp_path / "noise.mid"
    path.write_bytes(data)
    with pytest.raises(MidiFileError, match="noise.mid"):
        load_midi(path)


def test_text_file_raises_with_file_name(tmp_path):
    path = tmp_path / "readme.mid"
    path.write_text("this is not a MIDI file\n" * 10)
    with pytest.raises(MidiFileError, match="readme.mid"):
        load_midi(path)


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.9])
def test_truncated_file_raises_with_file_name(tmp_path, fraction):
    events = []
    for i in range(50):
        events += [on(i * 240, 60 + i % 12), off(i * 240 + 200, 60 + i % 12)]
    whole = write_midi(tmp_path / "whole.mid", [events]).read_bytes()
    assert read_song(load_midi(whole)).parts  # the uncut file is fine
    path = tmp_path / "cut_in_half.mid"
    path.write_bytes(whole[: int(len(whole) * fraction)])
    with pytest.raises(MidiFileError, match="cut_in_half.mid"):
        load_midi(path)


def test_nonexistent_path_raises_with_file_name(tmp_path):
    with pytest.raises(MidiFileError, match="no_such_file.mid"):
        load_midi(tmp_path / "no_such_file.mid")


def test_directory_raises_midi_file_error(tmp_path):
    with pytest.raises(MidiFileError, match=tmp_path.name):
        load_midi(tmp_path)


def test_midi_file_error_is_a_live_error(tmp_path):
    with pytest.raises(LiveError):
        load_midi(b"")


def test_type_2_files_are_refused():
    mid = mido.MidiFile(type=2, ticks_per_beat=TPB)
    mid.tracks.append(mido.MidiTrack())
    with pytest.raises(MidiFileError, match="type 2"):
        read_song(mid)


def test_corrupt_header_raises():
    # MThd, length 6, format 0x4A58 (not 0, 1 or 2), ntracks -1 (0xFFFF), division 480.
    data = b"MThd\x00\x00\x00\x06\x4a\x58\xff\xff\x01\xe0"
    with pytest.raises(MidiFileError):
        read_song(load_midi(data))


# ------------------------------------------------------------------- lenient key signatures


def key_signature_file(tmp_path: Path, sharps: int, mode: int) -> Path:
    conductor = [meta(0, "key_signature", key="C"), meta(0, "set_tempo", tempo=500_000)]
    notes = [on(0, 60), off(480, 60), on(480, 64), off(960, 64)]
    path = write_midi(tmp_path / "bad_key.mid", [conductor, notes])
    raw = bytearray(path.read_bytes())
    at = raw.find(b"\xff\x59\x02")
    assert at >= 0 and raw.find(b"\xff\x59\x02", at + 1) < 0
    raw[at + 3 : at + 5] = bytes([sharps & 0xFF, mode])
    path.write_bytes(bytes(raw))
    return path


def test_plain_mido_rejects_invalid_key_signature(tmp_path):
    path = key_signature_file(tmp_path, 20, 0)
    with pytest.raises(KeySignatureError):
        mido.MidiFile(path)


@pytest.mark.parametrize(("sharps", "mode"), [(20, 0), (-1, 255)])
def test_load_midi_reads_file_with_invalid_key_signature(tmp_path, sharps, mode):
    path = key_signature_file(tmp_path, sharps, mode)
    song = read_song(load_midi(path))
    assert notes_by_part(song) == {(1, 0, 0): [(60, 0, 480), (64, 480, 960)]}


def test_invalid_key_signature_decodes_as_c_major(tmp_path):
    midi = load_midi(key_signature_file(tmp_path, 20, 0))
    keys = [
        (m.type, m.key)
        for m in midi.tracks[0]
        if m.is_meta and m.type != "set_tempo" and m.type != "end_of_track"
    ]
    assert keys == [("key_signature", "C")]


def test_load_midi_leaves_mido_strict_afterwards(tmp_path):
    path = key_signature_file(tmp_path, 20, 0)
    # Whatever load_midi does with the file, it must not leave mido lenient behind it.
    with contextlib.suppress(MidiFileError):
        load_midi(path)
    with pytest.raises(KeySignatureError):
        mido.MidiFile(path)
    good = write_midi(tmp_path / "good.mid", [[meta(0, "key_signature", key="F#m")]])
    assert [m.key for m in mido.MidiFile(good).tracks[0] if m.type == "key_signature"] == ["F#m"]
