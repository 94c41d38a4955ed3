"""The notes-only store (train.data.notes): what it keeps, resume, bad files, song versions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from live.inputs import song_inputs, sources_of
from live.midifile import load_midi, read_song
from live.testing.songs import Track, melody, write_song
from train.data.collection import audible_parts, in_task
from train.data.notes import NotesStore, build_notes, group_songs

#: A small band: lead, bass, pad, a synth effect (context, not a target) and drums.
BAND = [
    Track("Lead", 65, 0, melody(8, low=70, seed=1)),
    Track("Bass", 33, 1, melody(8, low=36, step=0.5, seed=2)),
    Track("Pad", 48, 2, [(60, 4 * b, 4.0, 70) for b in range(8)]),
    Track("Fx", 100, 3, melody(8, low=80, seed=3)),
    Track("Kit", 0, 9, [(36 + 2 * (i % 2), i, 0.1, 110) for i in range(32)]),
]


def build(files: list[Path], out: Path) -> NotesStore:
    build_notes(files, out, workers=1)
    return NotesStore(out)


def expected(path: Path) -> list[tuple[int, int, np.ndarray]]:
    """(part, bar, input) of every target window, straight from the contract."""
    song = read_song(load_midi(path))
    parts, _ = audible_parts(song, path)
    out = []
    for bar, _, _, x, _ in song_inputs(sources_of(parts), song.bars, song.ticks_per_beat):
        out += [(i, bar, x[i]) for i, p in enumerate(parts) if in_task(p) and x[i, 0].any()]
    return out


def test_the_store_holds_the_contracts_inputs_bit_for_bit(tmp_path: Path) -> None:
    path = write_song(tmp_path / "midi" / "band.mid", BAND)
    store = build([path], tmp_path / "notes")
    want = expected(path)
    assert len(store) == len(want) > 0
    got = store.inputs(np.arange(len(store)))
    for k, (part, bar, x) in enumerate(want):
        assert (store.index["part"][k], store.index["bar"][k]) == (part, bar)
        np.testing.assert_array_equal(got[k], x)
    parts = store.songs[0]["parts"]
    assert [p["class"] for p in parts] == ["Reed", "Bass", "Strings", None, None]
    assert set(store.index["part"]) == {0, 1, 2}  # the effect and the drums are context only
    assert got[:, 3].any() and got[:, 4].any()  # they are heard: ensemble and drums


def test_bad_files_are_recorded_and_duplicates_count_once(
    song_folder: Path, tmp_path: Path
) -> None:
    files = sorted(p for p in song_folder.rglob("*") if p.is_file())
    store = build(files, tmp_path / "notes")
    by_file = {Path(s["file"]).name: s for s in store.songs}
    assert "copy_of_c.mid" not in by_file or "c.MID" not in by_file  # same bytes: one song
    for bad, reason in (
        ("empty.mid", "empty"),
        ("garbage.mid", "not a readable MIDI"),
        ("truncated.mid", "truncated"),
        ("slow.mid", "absurd tempo"),
        ("drums_only.mid", "no audible part"),
    ):
        assert any(reason in r["reason"] for r in by_file[bad]["skipped"]), bad
        assert by_file[bad]["windows"] == 0
    pop = by_file["pop.mid"]
    assert {r["reason"].split(" (")[0] for r in pop["skipped"]} >= {
        "duplicated melody track",
        "ghost track",
        "muted track",
    }
    summary = store.summary()
    assert summary["songs"] == len(store.songs) and summary["skipped"] >= 8
    assert sum(sum(c.values()) for c in summary["windows"].values()) == len(store)


def test_an_interrupted_build_resumes_to_the_same_store(tmp_path: Path) -> None:
    files = [write_song(tmp_path / "midi" / f"s{i}.mid", BAND[i % 3 :]) for i in range(4)]
    clean = build(files, tmp_path / "clean")
    out = tmp_path / "resumed"
    build_notes(files[:2], out, workers=1)
    # A crash while the third song was being written: half its data, half its log line.
    with open(out / "cells.u16", "ab") as f:
        f.write(b"\x01\x02" * 100)
    with open(out / "songs.jsonl", "ab") as f:
        f.write(b'{"sha1": "half a li')
    (out / "meta.json").unlink()
    resumed = build(files, out)
    assert [s["sha1"] for s in resumed.songs] == [s["sha1"] for s in clean.songs]
    for name in ("windows.i32", "cells.u16", "values.u8"):
        assert (out / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name


def test_versions_of_a_song_share_a_split_and_others_do_not(tmp_path: Path) -> None:
    """Another file of the same song (transposed, slower, other instruments) is a version;
    a different song is not; versions always land in one split."""
    tune = melody(16, low=60, step=0.5, seed=7)
    other = melody(16, low=60, step=0.5, seed=8)
    transposed = [(p + 5, s, d, v) for p, s, d, v in tune]
    files = [
        write_song(tmp_path / "a.mid", [Track("Piano", 0, 0, tune)]),
        write_song(tmp_path / "b.mid", [Track("Strings", 48, 0, transposed)], bpm=90),
        write_song(tmp_path / "c.mid", [Track("Piano", 0, 0, other)]),
    ]
    store = build(files, tmp_path / "notes")
    group = {Path(s["file"]).name: g for s, g in zip(store.songs, store.group, strict=True)}
    assert group["a.mid"] == group["b.mid"] != group["c.mid"]
    split = {Path(s["file"]).name: v for s, v in zip(store.songs, store.song_split, strict=True)}
    assert split["a.mid"] == split["b.mid"]


def test_group_songs_joins_similar_signatures_transitively() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 1 << 30, 64)
    b = a.copy()
    b[:20] = rng.integers(0, 1 << 30, 20)  # 69% alike
    c = b.copy()
    c[20:40] = rng.integers(0, 1 << 30, 20)  # 69% like b, 38% like a
    d = rng.integers(0, 1 << 30, 64)
    groups = group_songs(np.stack([a, b, c, d]))
    assert groups[0] == groups[1] == groups[2] != groups[3]


@pytest.mark.parametrize("workers", [2])
def test_workers_give_the_same_store(tmp_path: Path, workers: int) -> None:
    files = [write_song(tmp_path / "midi" / f"s{i}.mid", BAND[i % 3 :]) for i in range(3)]
    one = build(files, tmp_path / "one")
    build_notes(files, tmp_path / "two", workers=workers)
    for name in ("windows.i32", "cells.u16", "values.u8"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert json.loads((tmp_path / "two" / "meta.json").read_text())["windows"] == len(one)
    shutil.rmtree(tmp_path / "two")


def test_replay_gives_the_stores_inputs_bit_for_bit(tmp_path: Path) -> None:
    """Contract 2 made by the live engine (``kdlive replay``, channel by channel) equals the
    training store's (part by part), window for window."""
    from live.replay import replay_windows

    path = write_song(tmp_path / "band.mid", BAND, meter=(4, 4), tempo_changes=[(12, 140)])
    store = build([path], tmp_path / "notes")
    parts = store.songs[0]["parts"]
    x = store.inputs(np.arange(len(store)))
    want = {
        (parts[p]["channel"], int(b)): x[k]
        for k, (p, b) in enumerate(zip(store.index["part"], store.index["bar"], strict=True))
    }
    targets = {parts[p]["channel"] for p in store.songs[0]["targets"]}
    got = {
        (w.channel, w.bar): w.inputs
        for batch in replay_windows(path)
        for w in batch
        if w.channel in targets
    }
    assert got.keys() == want.keys() and len(got) > 20
    for key, value in want.items():
        np.testing.assert_array_equal(got[key], value, err_msg=str(key))
