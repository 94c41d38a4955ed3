"""``live.midifile`` against pretty_midi (a train extra): tempo maps, and the note counts of
the whole Debian demo corpus, which must load and parse."""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import os
import warnings
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import pytest
from mido.midifiles.meta import KeySignatureError

from live.midifile import Song, load_midi, read_song
from live.testing.songs import DEMO_DIRS, KEY_SIGNATURE_DEMOS, meta, off, on, write_midi
from train.data.build import DEMO_DIRS as TRAINING_DEMO_DIRS


def test_tempo_map_agrees_with_pretty_midi(tmp_path):
    tpb = 384
    changes = [(0, 600_000), (700, 350_000), (1001, 923_077), (4000, 250_000), (9999, 1_500_000)]
    conductor = [meta(0, "time_signature", numerator=4, denominator=4)]
    conductor += [meta(t, "set_tempo", tempo=tempo) for t, tempo in changes]
    notes = [on(0, 60), off(12_000, 60)]
    path = write_midi(tmp_path / "tempo.mid", [conductor, notes], tpb=tpb)

    song = read_song(load_midi(path))
    pm = pretty_midi.PrettyMIDI(str(path))
    ticks = sorted(
        set(range(0, 14_000, 37)) | {t + d for t, _ in changes for d in (-1, 0, 1) if t + d >= 0}
    )
    ours = song.tempo.to_seconds(ticks)
    theirs = np.array([pm.tick_to_time(t) for t in ticks])
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    assert ours[-1] > 10  # a real, multi-tempo span was compared


@dataclasses.dataclass
class DemoResult:
    path: Path
    song: Song | None = None
    error: str | None = None
    note_ons: int = 0  # non-drum note-ons with velocity > 0, counted straight from mido
    simple: bool = True  # no note-off on the tick of a note-on of its key, nothing left on
    pm_notes: int | None = None
    pm_error: str | None = None


def scan_note_ons(midi: mido.MidiFile) -> tuple[int, bool]:
    """Count non-drum note-ons; 'simple' when pretty_midi keeps every note (it drops notes
    whose note-off falls on their own note-on tick, and notes never released)."""
    count, simple = 0, True
    for track in midi.tracks:
        tick = 0
        on_ticks: dict[tuple[int, int], set[int]] = collections.defaultdict(set)
        sounding: collections.Counter[tuple[int, int]] = collections.Counter()
        for msg in track:
            tick += msg.time
            if msg.type not in ("note_on", "note_off") or msg.channel == 9:
                continue
            key = (msg.channel, msg.note)
            if msg.type == "note_on" and msg.velocity > 0:
                count += 1
                on_ticks[key].add(tick)
                sounding[key] += 1
            else:
                if tick in on_ticks[key]:
                    simple = False
                sounding[key] = 0
        if any(sounding.values()):
            simple = False
    return count, simple


def demo_result(path: Path) -> DemoResult:
    """Load, parse and count one demo file (run in a worker process)."""
    res = DemoResult(path)
    try:
        midi = load_midi(path)
        res.song = read_song(midi)
    except Exception as exc:  # recorded, asserted on by the tests
        res.error = f"{type(exc).__name__}: {exc}"
        return res
    res.note_ons, res.simple = scan_note_ons(midi)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # pretty_midi rewrites message times in place: the mido object is used up here.
            pm = pretty_midi.PrettyMIDI(mido_object=midi)
        res.pm_notes = sum(len(i.notes) for i in pm.instruments if not i.is_drum)
    except Exception as exc:  # pretty_midi's own limits: that file is not compared
        res.pm_error = f"{type(exc).__name__}: {exc}"
    return res


@pytest.fixture(scope="module")
def demo_results(demo_files: list[Path]) -> list[DemoResult]:
    # Parsing ~100 files with mido and pretty_midi is CPU-bound: spread it over the cores.
    workers = max(1, min(8, os.cpu_count() or 1, len(demo_files)))
    if workers == 1:
        return [demo_result(p) for p in demo_files]
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        return list(pool.map(demo_result, demo_files, chunksize=4))


@pytest.mark.slow
def test_demo_files_load_and_parse(demo_results):
    assert demo_results
    failed = {r.path: r.error for r in demo_results if r.error is not None}
    assert not failed, failed
    for r in demo_results:
        if r.song is None:
            continue
        song = r.song
        assert song.parts, r.path
        assert song.bars.starts[-1] > song.end_tick
        for p in song.parts:
            assert ((p.pitches >= 0) & (p.pitches <= 127)).all()
            assert (p.ends >= p.starts).all()
            assert (np.diff(p.starts) >= 0).all()
            assert p.ends.max() <= song.end_tick


def test_demo_key_signature_files_are_rejected_by_plain_mido():
    present = [p for p in KEY_SIGNATURE_DEMOS if p.exists()]
    if not present:
        pytest.skip("simutrans music not installed")
    for path in present:
        with pytest.raises(KeySignatureError):
            mido.MidiFile(path)


def test_demo_key_signature_files_load(demo_results):
    by_path = {r.path: r for r in demo_results}
    present = [p for p in KEY_SIGNATURE_DEMOS if p in by_path]
    if not present:
        pytest.skip("simutrans music not installed")
    for path in present:
        r = by_path[path]
        assert r.error is None, f"{path}: {r.error}"
        assert r.song is not None and sum(len(p) for p in r.song.parts) > 0


def test_demo_note_counts_match_mido_and_pretty_midi(demo_results):
    compared = 0
    for r in demo_results:
        if r.song is None:
            continue
        ours = sum(len(p) for p in r.song.parts if not p.is_drum)
        # Every non-drum note-on is a note, released or not.
        assert ours == r.note_ons, r.path
        if r.pm_notes is None:
            continue  # pretty_midi cannot read this file: skip it
        if r.simple:
            assert ours == r.pm_notes, r.path
            compared += 1
        else:
            # pretty_midi drops zero-length and never-released notes; we keep them.
            assert ours >= r.pm_notes, r.path
    assert compared >= 20


def test_the_demo_corpus_here_is_the_one_training_reads() -> None:
    assert set(DEMO_DIRS) == set(TRAINING_DEMO_DIRS)
