"""The Slakh2100 reader: our own tiny fixture in both layouts, and the real Slakh files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from train.config import DataConfig
from train.data import slakh
from train.data.build import build
from train.data.store import WindowStore
from train.errors import DataError
from train.testing import slakh_stem, write_slakh_track

#: The shared corpora beside the repository (../shared/corpora).
FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "slakh-fixture"


def _redux(root: Path) -> Path:
    write_slakh_track(
        root / "train" / "Track00001",
        {
            "S00": slakh_stem("Guitar", 30),
            "S01": slakh_stem("Drums", 128, drum=True),
            "S02": slakh_stem("Strings (continued)", 48),
            "S03": slakh_stem("Sound Effects", 103),
            "S04": slakh_stem("Bass", 33, rendered=False, audio=False),
        },
    )
    write_slakh_track(
        root / "validation" / "Track00002", {"S00": slakh_stem("Piano", 0)}, audio="flac"
    )
    write_slakh_track(root / "test" / "Track00003", {"S00": slakh_stem("Reed", 65)})
    write_slakh_track(root / "omitted" / "Track00004", {"S00": slakh_stem("Pipe", 73)})
    return root


def test_redux_layout_keeps_the_right_stems(tmp_path: Path) -> None:
    stems, skipped = slakh.scan(_redux(tmp_path / "redux"))
    got = {(s.song, s.stem, s.split, s.label) for s in stems}
    assert got == {
        ("Track00001", "S00", "train", "Guitar"),
        ("Track00001", "S02", "train", "Strings"),
        ("Track00002", "S00", "validation", "Piano"),
        ("Track00003", "S00", "test", "Reed"),
    }
    reasons = " | ".join(r["reason"] for r in skipped)
    assert "audio_rendered: false" in reasons and "omitted" in reasons


def test_flat_layout_splits_by_track_number(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    for number in (7, 1500, 1501, 1875, 1876, 2100):
        write_slakh_track(root / f"Track{number:05d}", {"S00": slakh_stem("Organ", 16)})
    (root / "Track00009" / "MIDI").mkdir(parents=True)  # like BabySlakh's Track00007
    stems, skipped = slakh.scan(root)
    split = {int(s.song[5:]): s.split for s in stems}
    assert split == {
        7: "train",
        1500: "train",
        1501: "validation",
        1875: "validation",
        1876: "test",
        2100: "test",
    }
    assert [r["reason"] for r in skipped] == ["no metadata.yaml: not a Slakh track"]


def test_stem_file_present_counts_even_if_metadata_says_not_rendered(tmp_path: Path) -> None:
    write_slakh_track(tmp_path / "Track00001", {"S00": slakh_stem("Brass", 57, rendered=False)})
    stems, _ = slakh.scan(tmp_path)
    assert [s.label for s in stems] == ["Brass"]


def test_not_a_slakh_folder_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="TrackNNNNN"):
        slakh.scan(tmp_path)
    with pytest.raises(DataError, match="not found"):
        slakh.scan(tmp_path / "nope")


def test_build_from_slakh_resamples_and_cuts(tmp_path: Path) -> None:
    root = _redux(tmp_path / "redux")
    summary = build(DataConfig(out=tmp_path / "out", slakh=root, workers=1))
    store = WindowStore(tmp_path / "out" / "windows")
    assert summary["stems"] == 4 and summary["songs"] == 3
    # 4 bars at hop 1 in train -> 3 windows; hop 2 elsewhere -> 2 windows
    assert summary["windows"]["train"]["Guitar"] == 3
    assert summary["windows"]["validation"]["Piano"] == 2
    # 16 kHz stems were resampled: 2 bars at 120 BPM = 4 s = ~172 frames of 512 at 22,050 Hz
    assert set(store.index["mel_frames"]) <= {172, 173}
    assert store.rolls.shape == (len(store), 128, 16) and store.rolls.max() == 1
    assert np.isfinite(store.mel(0).astype(np.float32)).all()
    lines = (tmp_path / "out" / "skipped.jsonl").read_text().splitlines()
    assert len(lines) == summary["skipped"] == 2


@pytest.mark.parametrize("layout", ["slakh2100_flac_redux", "babyslakh_16k"])
def test_real_slakh_fixture(layout: str, tmp_path: Path) -> None:
    """The real Track00001 in both shipped layouts: all 9 usable stems are found."""
    root = FIXTURE / layout
    if not root.is_dir():
        pytest.skip(f"shared corpora not beside the repository ({root})")
    stems, _ = slakh.scan(root)
    assert len(stems) == 9
    assert sorted({s.label for s in stems}) == ["Bass", "Guitar", "Organ", "Piano", "Strings"]
    assert {s.stem for s in stems} == {f"S{i:02d}" for i in (0, 2, 3, 4, 5, 7, 8, 9, 10)}
    summary = build(DataConfig(out=tmp_path / "out", slakh=root, workers=1))
    # the audio is cut to 2 s, so every window runs past its end and is dropped
    assert summary["windows_past_audio_end"] > 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary
