"""The notes-only store (train.data.notes): what it keeps, resume, bad files, song versions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from live.contracts import V1, V2, V3
from live.inputs import DRUMS, song_inputs, sources_of
from live.midifile import load_midi, read_song
from live.testing.songs import Track, melody, write_song
from train.batches import NotesSource
from train.data.collection import audible_parts, in_task
from train.data.notes import NOTES_VERSION, NotesStore, build_notes, group_songs
from train.errors import DataError

#: A small band: lead, bass, pad, a synth effect (context, not a target) and drums.
BAND = [
    Track("Lead", 65, 0, melody(8, low=70, seed=1)),
    Track("Bass", 33, 1, melody(8, low=36, step=0.5, seed=2)),
    Track("Pad", 48, 2, [(60, 4 * b, 4.0, 70) for b in range(8)]),
    Track("Fx", 100, 3, melody(8, low=80, seed=3)),
    Track("Kit", 0, 9, [(36 + 2 * (i % 2), i, 0.1, 110) for i in range(32)]),
]

#: A band that moves its controllers (contract 3): a piano on the sustain pedal, a guitar that
#: bends, swells (expression, CC 11) and turns modulation (CC 1) on and off, and a kit with a
#: kick (key 36) and a hit on key 5, in the drums plane's rows that contract 3 gives the
#: controllers.
CONTROLLED = [
    Track(
        "Piano",
        0,
        0,
        melody(8, low=60, seed=1),
        controls=[(4, 64, 127), (10, 64, 0), (20, 64, 127), (27.5, 64, 0)],
    ),
    Track(
        "Guitar",
        25,
        1,
        melody(8, low=52, step=0.5, seed=2),
        controls=[(2, 11, 100), (2.5, 11, 80), (3, 11, 110), (13, 1, 40), (18, 1, 0)],
        bends=[(5, 2048), (5.3, 4096), (6, 0), (21.2, -3000), (22, 0)],
    ),
    Track("Kit", 0, 9, [(5 if i % 4 == 3 else 36, i, 0.1, 110) for i in range(32)]),
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


def test_the_store_gives_contract_3_and_contract_2_as_the_live_engine_does(
    tmp_path: Path,
) -> None:
    """One store, both contracts, bit for bit: contract 3's view is ``kdlive replay``'s with
    the channels' controllers (the drums plane's rows 0-7 their states, the kit's hit on key 5
    gone), contract 2's is replay's without them and what the store held before it kept
    controllers (:func:`live.inputs.song_inputs`, planes 0-4 untouched)."""
    from live.replay import replay_windows

    path = write_song(tmp_path / "band.mid", CONTROLLED, meter=(3, 4), tempo_changes=[(9, 140)])
    v2 = build([path], tmp_path / "notes")
    v3 = NotesStore(tmp_path / "notes", contract=V3)
    meta = json.loads((tmp_path / "notes" / "meta.json").read_text())
    assert (meta["notes_version"], meta["control_rows"]) == (NOTES_VERSION, 8) == (2, 8)
    assert meta["control_cells"] > 0 and v2.contract == V2
    idx = np.arange(len(v2))
    x2, x3 = v2.inputs(idx), v3.inputs(idx)
    parts = v2.songs[0]["parts"]
    channel = np.array([parts[p]["channel"] for p in v2.index["part"]])
    for x, controls in ((x2, False), (x3, True)):
        keys = zip(channel.tolist(), v2.index["bar"].tolist(), strict=True)
        want = {key: x[k] for k, key in enumerate(keys)}
        got = {
            (w.channel, w.bar): w.inputs
            for batch in replay_windows(path, controls=controls)
            for w in batch
            if w.channel in (1, 2)
        }
        assert got.keys() == want.keys() and len(got) > 10
        for key, value in want.items():
            np.testing.assert_array_equal(got[key], value, err_msg=f"{controls} {key}")
    expect = expected(path)  # contract 2 as the store held it before the controllers
    assert len(expect) == len(v2)
    for k, (_, _, x) in enumerate(expect):
        np.testing.assert_array_equal(x2[k], x)
    # Contract 3 differs from 2 in the drums plane's rows 0-7 alone: the hit on key 5 is gone,
    # the kick kept, the pedal (row 0) on the piano, bends (1, 2), modulation (3) and
    # expression (4, 5) on the guitar.
    np.testing.assert_array_equal(x3[:, :DRUMS], x2[:, :DRUMS])
    np.testing.assert_array_equal(x3[:, DRUMS, 8:], x2[:, DRUMS, 8:])
    piano, guitar = channel == 1, channel == 2
    assert x2[piano, DRUMS, 5].any() and not x3[piano, DRUMS, 5].any()
    assert x3[:, DRUMS, 36].any() and (x3[:, DRUMS, 36] == x2[:, DRUMS, 36]).all()
    rows_on = x3[:, DRUMS, :8].any(axis=2)
    assert rows_on[piano, 0].any() and not rows_on[piano, 1:].any()
    assert rows_on[guitar, 1:6].any(axis=0).all()
    assert not rows_on[guitar][:, [0, 6, 7]].any()
    assert not x3[..., DRUMS, :8, :].any(axis=(0, 1))[12:].any()  # 3/4: 12 valid steps
    # The cells a student reads are the inputs' nonzero cells, each window's ascending.
    for store, x in ((v2, x2), (v3, x3)):
        rows, cells, values = store.window_cells(idx[::-1].copy())
        for k in range(len(idx)):
            np.testing.assert_array_equal(cells[rows == k], np.flatnonzero(x[len(idx) - 1 - k]))
            assert (values[rows == k] > 0).all()
        sparse, _ = NotesSource(store, cells=True)(idx)
        dense, _ = NotesSource(store)(idx)
        assert torch.equal(sparse.dense(), dense)
    # The floor's view of a contract-3 store is contract 2's; part_cells are the part's own.
    np.testing.assert_array_equal(v3.view(V2).inputs(idx), x2)
    for a, b in zip(v2.part_cells(idx), v3.part_cells(idx), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_store_before_the_controllers_serves_contract_2_alone(tmp_path: Path) -> None:
    """A store built before notes version 2 has no controls plane: contract 2 reads it as
    ever, contract 3 is refused with what to do, and ``kdtrain data`` rebuilds it."""
    path = write_song(tmp_path / "band.mid", CONTROLLED)
    out = tmp_path / "notes"
    store = build([path], out)
    x = store.inputs(np.arange(len(store)))
    for name in ("meta.json", "params.json"):  # as notes version 1 wrote them
        old = json.loads((out / name).read_text())
        old["notes_version"] = 1
        if name == "meta.json":
            old = {k: v for k, v in old.items() if k not in ("notes_version", "control_rows")}
        (out / name).write_text(json.dumps(old))
    with pytest.raises(DataError, match="predates contract 3.*`kdtrain all`"):
        NotesStore(out, contract=V3)
    with pytest.raises(DataError, match="predates contract 3"):
        NotesStore(out).view(V3)
    with pytest.raises(ValueError, match="shape"):
        NotesStore(out, contract=V1)
    assert NotesStore(out).contract == V2
    rebuilt = build([path], out)  # another version: started afresh, not resumed
    assert json.loads((out / "meta.json").read_text())["notes_version"] == NOTES_VERSION
    np.testing.assert_array_equal(rebuilt.inputs(np.arange(len(rebuilt))), x)
    assert len(NotesStore(out, contract=V3)) == len(store)


def test_a_store_of_no_songs_is_empty_not_an_error(tmp_path: Path) -> None:
    """A collection with no MIDI file for the store (Slakh tracks without all_src.mid) gives
    an empty store and its summary."""
    summary = build_notes([], tmp_path / "notes", workers=1)
    assert summary["songs"] == 0 and summary["version_groups"] == 0
    assert len(NotesStore(tmp_path / "notes")) == 0
