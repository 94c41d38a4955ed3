"""The neutral view: every stem re-rendered as a piano, laid out exactly like the store's mel."""

from __future__ import annotations

import json
from pathlib import Path

import mido
import numpy as np
import pytest

from conftest import TIMGM, Track, melody, write_song
from train import slakh, views
from train.data import DataConfig, build
from train.store import WindowStore


def test_with_program_replaces_every_program_and_keeps_the_performance() -> None:
    midi = mido.MidiFile(ticks_per_beat=96)
    track = mido.MidiTrack([
        mido.Message("control_change", channel=2, control=0, value=8, time=0),
        mido.Message("program_change", channel=2, program=40, time=5),
        mido.Message("note_on", channel=2, note=60, velocity=77, time=10),
        mido.Message("pitchwheel", channel=2, pitch=1000, time=20),
        mido.Message("program_change", channel=2, program=41, time=30),
        mido.Message("note_off", channel=2, note=60, velocity=0, time=40),
    ])  # fmt: skip
    midi.tracks.append(track)
    out = views.with_program(midi, 0)
    msgs = list(out.tracks[0])
    assert msgs[0].type == "program_change" and (msgs[0].channel, msgs[0].program) == (2, 0)
    assert [m.type for m in msgs[1:]] == ["note_on", "pitchwheel", "note_off"]
    assert [m.time for m in msgs[1:]] == [15, 20, 70]  # absolute ticks 15, 35, 105 as before
    assert msgs[1].velocity == 77 and msgs[2].pitch == 1000


@pytest.fixture(scope="module")
def two_instruments(tmp_path_factory: pytest.TempPathFactory, fluidsynth: str) -> Path:
    """One song with a piano part and a strings part, cut into a window store."""
    root = tmp_path_factory.mktemp("views")
    tracks = [Track("Piano", 0, 0, melody(8, low=60, seed=1)),
              Track("Strings", 48, 1, melody(8, low=55, step=2.0, seed=2))]  # fmt: skip
    write_song(root / "midi" / "song.mid", tracks, bpm=110)
    build(DataConfig(out=root / "data", midi=[root / "midi"], soundfonts=[TIMGM], workers=1))
    return root / "data"


def _build_view(data: Path, workers: int = 1) -> tuple[WindowStore, np.ndarray]:
    store = WindowStore(data / "windows")
    stems, _ = slakh.scan(data / "slakh")
    views.build_neutral_view(store, stems, TIMGM, workers=workers)
    folder = data / "windows"
    return store, np.asarray(store.with_mel(views.view_file(folder, "neutral")).mel_frames)


def _frames(store: WindowStore, label: str) -> slice:
    rows = np.flatnonzero(store.index["class"] == label)
    offsets, lengths = store.index["mel_offset"][rows], store.index["mel_frames"][rows]
    return slice(int(offsets.min()), int((offsets + lengths).max()))


def test_view_is_aligned_with_the_store_and_drops_only_the_timbre(two_instruments: Path) -> None:
    store, view = _build_view(two_instruments)
    own = np.asarray(store.mel_frames, np.float32)
    assert view.shape == own.shape
    loud = own > -60  # away from the floor, where 16-bit FLAC and float renders differ
    piano, strings = _frames(store, "Piano"), _frames(store, "Strings")
    # The piano part already is a piano in the same soundfont: the view hears the same audio,
    # frame for frame. One frame (23 ms) off would already differ by far more at the onsets.
    diff = np.abs(view[piano].astype(np.float32) - own[piano])[loud[piano]]
    by = 1 if piano.stop < len(view) else -1
    shifted = slice(piano.start + by, piano.stop + by)
    off = np.abs(view[shifted].astype(np.float32) - own[piano])[loud[piano]]
    assert np.median(diff) < 0.5 and np.percentile(diff, 95) < 8
    assert np.percentile(off, 95) > 2 * np.percentile(diff, 95)
    # The strings part is now a piano: same notes, another sound.
    diff = np.abs(view[strings].astype(np.float32) - own[strings])[loud[strings]]
    assert np.median(diff) > 3
    meta = views.view_meta(two_instruments / "windows", "neutral")
    assert meta is not None and meta["program"] == 0 and meta["soundfont"] == TIMGM.name


def test_view_resumes_after_an_interruption(two_instruments: Path) -> None:
    _, first = _build_view(two_instruments)
    folder = two_instruments / "windows"
    # As if killed after the first stem: still building, one stem logged, the rest not written.
    meta = (folder / "mel-neutral.json").read_text()
    (folder / "mel-neutral.json").unlink()
    (folder / "mel-neutral.building.json").write_text(meta)
    done = (folder / "mel-neutral.done").read_text().split()
    (folder / "mel-neutral.done").write_text(done[0] + "\n")
    stems, _ = slakh.scan(two_instruments / "slakh")
    jobs = {j.key: j for j in views.stem_jobs(WindowStore(folder), stems)}
    mm = np.memmap(views.view_file(folder, "neutral"), np.float16, "r+", shape=first.shape)
    kept = jobs.pop(done[0])
    mm[kept.start : kept.start + kept.frames] = -50  # marks the logged stem: not redone
    for job in jobs.values():
        mm[job.start : job.start + job.frames] = -100
    mm.flush()
    del mm
    _, view = _build_view(two_instruments, workers=2)
    again = view.copy()
    logged = slice(kept.start, kept.start + kept.frames)
    assert (again[logged] == -50).all()
    again[logged] = first[logged]
    np.testing.assert_array_equal(again, first)
    assert not (folder / "mel-neutral.building.json").exists()


def test_a_view_made_with_another_soundfont_starts_afresh(two_instruments: Path) -> None:
    folder = two_instruments / "windows"
    _, first = _build_view(two_instruments)
    meta = json.loads((folder / "mel-neutral.json").read_text())
    # Interrupted while made with another soundfont, every stem logged: resuming would keep it.
    (folder / "mel-neutral.json").unlink()
    (folder / "mel-neutral.building.json").write_text(json.dumps(meta | {"soundfont": "x.sf2"}))
    mm = np.memmap(views.view_file(folder, "neutral"), np.float16, "r+", shape=first.shape)
    mm[:] = -50
    mm.flush()
    del mm
    _, view = _build_view(two_instruments)
    np.testing.assert_array_equal(view, first)
    assert views.view_meta(folder, "neutral") == meta


def test_stem_jobs_tile_the_stores_frames(two_instruments: Path) -> None:
    store = WindowStore(two_instruments / "windows")
    stems, _ = slakh.scan(two_instruments / "slakh")
    jobs = sorted(views.stem_jobs(store, stems), key=lambda j: j.start)
    assert sorted(j.key for j in jobs) == sorted(s.key for s in stems)
    ends = [0] + [j.start + j.frames for j in jobs]
    assert [j.start for j in jobs] == ends[:-1]  # contiguous, no gap, no overlap
    assert ends[-1] == store.mel_frames.shape[0]
