"""A MIDI collection rendered with real FluidSynth into the Slakh layout, then cut."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml

from live.midifile import load_midi, read_song
from live.testing.songs import TIMGM, Track, melody, write_song
from live.windows import cut_windows
from train.config import DataConfig
from train.data import collection
from train.data.build import build
from train.data.stems import stem_part
from train.data.store import StoreWriter, WindowStore

pytestmark = pytest.mark.fluidsynth


def _build(folder: Path, out: Path, **kw) -> dict:
    return build(DataConfig(out=out, midi=[folder], soundfonts=[TIMGM], workers=2, **kw))


@pytest.fixture
def built(fluidsynth: str, song_folder: Path, tmp_path: Path) -> tuple[Path, dict]:
    out = tmp_path / "out"
    return out, _build(song_folder, out)


def test_layout_metadata_and_stems(built: tuple[Path, dict]) -> None:
    out, summary = built
    tracks = sorted(p for p in (out / "slakh").glob("*/Track*") if p.is_dir())
    assert len(tracks) == 3  # pop, waltz, c (its copy is a duplicate)
    labels = set()
    for track in tracks:
        meta = yaml.safe_load((track / "metadata.yaml").read_text())
        assert (track / "all_src.mid").is_file()
        assert track.parent.name == collection.split_of(meta["UUID"])
        for stem_id, info in meta["stems"].items():
            assert info["audio_rendered"] and not info["is_drum"]
            assert info["plugin_name"] == TIMGM.name
            audio, sr = soundfile.read(track / "stems" / f"{stem_id}.flac")
            assert sr == 22050 and audio.ndim == 1
            assert 0.5 < np.abs(audio).max() <= 1.0  # normalised to a -1 dBFS peak
            part = read_song(load_midi(track / "MIDI" / f"{stem_id}.mid")).parts
            assert [p.program for p in part if len(p)] == [info["program_num"]]
            labels.add(info["inst_class"])
    assert labels == {
        "Piano",
        "Bass",
        "Strings (continued)",
        "Pipe",
        "Organ",
        "Brass",
        "Reed",
        "Guitar",
    }
    assert summary["songs"] == 3 and summary["stems"] == 8


def test_skipped_files_and_tracks_are_reported(built: tuple[Path, dict]) -> None:
    out, summary = built
    records = [json.loads(x) for x in (out / "skipped.jsonl").read_text().splitlines()]
    assert len(records) == summary["skipped"]
    by_file: dict[str, list[str]] = {}
    for r in records:
        by_file.setdefault(Path(r["file"]).name, []).append(r["reason"])
    assert "empty" in by_file["empty.mid"][0]
    assert "not a readable MIDI file" in by_file["garbage.mid"][0]
    assert "not a readable MIDI file" in by_file["truncated.mid"][0]
    assert "absurd tempo" in by_file["slow.mid"][0]
    assert "no usable track" in by_file["drums_only.mid"][0]
    assert "duplicate of" in by_file["copy_of_c.mid"][0]
    assert sorted(by_file["pop.mid"]) == sorted(
        [
            "duplicated melody track (_WA)",
            "ghost track (every note at velocity <= 1)",
            "muted track (volume CC 7 or expression CC 11 at 0)",
        ]
    )
    assert summary["silent_tracks"] == 2


def test_windows_match_the_contract(built: tuple[Path, dict]) -> None:
    """Every stored roll is exactly what the contract's window cutter gives for that stem."""
    out, summary = built
    store = WindowStore(out / "windows")
    assert len(store) == sum(sum(c.values()) for c in summary["windows"].values())
    for i in range(len(store)):
        song, stem, split = (store.index[k][i] for k in ("song", "stem", "split"))
        midi = next((out / "slakh").glob(f"*/{song}")) / "MIDI" / f"{stem}.mid"
        s = read_song(load_midi(midi))
        hop = 1 if split == "train" else 2
        windows = {
            w.bar: w for w in cut_windows(stem_part(s), s.bars, s.ticks_per_beat, hop_bars=hop)
        }
        w = windows[int(store.index["bar"][i])]
        np.testing.assert_array_equal(store.rolls[i], w.roll)
        assert store.index["valid_steps"][i] == w.valid_steps
        # 2 bars of mel: 120 BPM 4/4 = 4 s, 90 BPM 3/4 = 4 s, 140 BPM = 3.43 s
        assert 140 <= store.index["mel_frames"][i] <= 174
    waltz = store.index["valid_steps"][store.index["class"] == "Strings"]
    assert set(waltz) == {12}


def test_second_run_resumes_without_rendering(
    built: tuple[Path, dict], song_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, summary = built

    def boom(*args, **kwargs):
        raise AssertionError("a finished song was rendered again")

    monkeypatch.setattr(collection, "render", boom)
    again = _build(song_folder, out)
    assert again == summary


def test_interrupted_store_is_cut_back_and_finished(
    built: tuple[Path, dict], song_folder: Path
) -> None:
    """Simulate kill -9 mid-stem: half-written data after the last logged stem, and a
    resume log whose last line is cut short."""
    out, summary = built
    folder = out / "windows"
    expected = WindowStore(folder)
    rolls, index = expected.rolls.copy(), {k: v.copy() for k, v in expected.index.items()}
    done = (folder / "done.jsonl").read_text().splitlines(keepends=True)
    (folder / "done.jsonl").write_text("".join(done[:-2]) + done[-2][:10])
    with open(folder / "rolls.u8", "ab") as f:
        f.write(b"\x07" * 1000)
    again = _build(song_folder, out)
    assert again == summary
    store = WindowStore(folder)

    # same windows, possibly in another order: compare as sets of (song, stem, bar) -> roll
    def keyed(r: np.ndarray, ix: dict) -> dict:
        return {(ix["song"][i], ix["stem"][i], ix["bar"][i]): r[i].tobytes() for i in range(len(r))}

    assert keyed(store.rolls, store.index) == keyed(rolls, index)


def test_store_writer_refuses_nothing_and_counts(tmp_path: Path) -> None:
    with StoreWriter(tmp_path / "w") as writer:
        assert writer.n_windows == 0 and writer.done == {}


def test_limit_songs_and_a_new_file_keep_track_numbers(fluidsynth: str, tmp_path: Path) -> None:
    folder = tmp_path / "midi"
    for i in range(3):
        write_song(folder / f"s{i}.mid", [Track("Piano", 0, 0, melody(4, seed=i))])
    out = tmp_path / "out"
    first = _build(folder, out, limit_songs=2)
    assert first["songs"] == 2
    manifest = json.loads((out / "slakh" / "manifest.json").read_text())
    _build(folder, out)
    assert json.loads((out / "slakh" / "manifest.json").read_text()).items() >= manifest.items()


def test_songs_split_80_10_10_by_their_content_hash() -> None:
    """A song's split is a function of its file's sha1 (the same on every machine), and the
    splits take 80, 10 and 10 percent of the songs."""
    import hashlib
    from collections import Counter

    n = 20_000
    counts = Counter(
        collection.split_of(hashlib.sha1(str(i).encode()).hexdigest()) for i in range(n)
    )
    assert counts["train"] / n == pytest.approx(0.8, abs=0.01)
    assert counts["validation"] / n == pytest.approx(0.1, abs=0.01)
    assert counts["test"] / n == pytest.approx(0.1, abs=0.01)
    # the first 8 hex digits, modulo 10: 0-7 train, 8 validation, 9 test
    tail = "f" * 32
    assert [collection.split_of(f"{k:08x}{tail}") for k in (7, 8, 9, 10, 18, 19)] == [
        "train",
        "validation",
        "test",
        "train",
        "validation",
        "test",
    ]
