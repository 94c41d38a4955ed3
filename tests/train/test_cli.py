"""``kdtrain``'s command line: real console scripts where it matters, CliRunner for the rest."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdapp.kdtrain import app as kdtrain
from train.testing import slakh_stem, write_slakh_track

runner = CliRunner()


def test_kdtrain_data_from_slakh(tmp_path: Path) -> None:
    write_slakh_track(tmp_path / "slakh" / "train" / "Track00001", {"S00": slakh_stem("Bass", 33)})
    result = runner.invoke(
        kdtrain,
        [
            "data",
            "--slakh",
            str(tmp_path / "slakh"),
            "--out",
            str(tmp_path / "out"),
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "1 stems found" in result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["windows"]["train"]["Bass"] == 3
    assert not (tmp_path / "out" / "notes").exists()  # only with --notes


def test_kdtrain_data_notes_builds_the_store_the_students_read(tmp_path: Path) -> None:
    from train.data.notes import NotesStore
    from train.errors import DataError

    with pytest.raises(DataError, match="kdtrain data --notes"):
        NotesStore(tmp_path / "out" / "notes")
    from live.testing.songs import Track, write_song

    track = tmp_path / "slakh" / "train" / "Track00001"
    write_slakh_track(track, {"S00": slakh_stem("Bass", 33)})
    bass = [(36 + k % 5, k, 0.9, 90) for k in range(32)]  # 8 bars of quarter notes
    write_song(track / "all_src.mid", [Track("bass", 33, 0, bass)])  # what the store reads
    args = ["data", "--slakh", str(tmp_path / "slakh"), "--out", str(tmp_path / "out")]
    result = runner.invoke(kdtrain, [*args, "--workers", "1", "--notes"])
    assert result.exit_code == 0, result.output
    store = NotesStore(tmp_path / "out" / "notes")
    assert len(store) > 0 and f"{len(store)} windows" in result.output


def test_bad_input_is_one_clear_line_not_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        ["kdtrain", "data", "--slakh", str(tmp_path / "missing"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Slakh folder not found" in result.stderr


def test_missing_fluidsynth_says_how_to_install(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH: no fluidsynth
    (tmp_path / "m").mkdir()
    result = runner.invoke(
        kdtrain, ["data", "--midi", str(tmp_path / "m"), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 1
    assert "apt-get install fluidsynth" in result.output


def test_missing_soundfont_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    from train.data import soundfonts

    monkeypatch.setattr(soundfonts, "SEARCH_DIRS", (str(tmp_path),))
    monkeypatch.setattr(soundfonts, "_pretty_midi_soundfont", lambda: [])
    with pytest.raises(soundfonts.MissingToolError, match="apt-get install fluid-soundfont-gm"):
        soundfonts.find_soundfonts()
    with pytest.raises(soundfonts.MissingToolError, match="soundfont not found"):
        soundfonts.find_soundfonts([tmp_path / "nope.sf2"])


def test_soundfonts_found_once_each() -> None:
    from train.data.soundfonts import find_soundfonts

    found = find_soundfonts()
    assert len({p.resolve() for p in found}) == len(found)
    assert len({p.stem.lower().replace("_lite", "") for p in found}) == len(found)
