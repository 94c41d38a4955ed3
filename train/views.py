"""A second hearing of the same windows: every stem re-rendered with one neutral instrument.

The teacher of the paper hears each part in its own instrument, so what it knows beyond the
notes is mostly timbre, which a notes-only student cannot use. The *neutral view* keeps the
performance and drops the timbre: each stem's MIDI (same notes, velocities, exact timing,
pedal and pitch bends) is rendered again with one General MIDI program from one soundfont, and
its log-mel is laid out exactly like the store's ``mel.f16`` (same offsets, same frames per
window), so a teacher can be trained on either file with nothing else changed.

Layout, beside the store::

    mel-neutral.f16    float16 [F, 128]  same shape and offsets as mel.f16
    mel-neutral.done   one stem key per line, appended once its frames are written (resume)
    mel-neutral.json   what rendered it (program, soundfont, version), written when complete
    mel-neutral.building.json   the same, while it is being built (a change starts afresh)
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from live.contract import MEL
from live.midifile import load_midi, read_song
from train.collection import TARGET_PEAK_DB  # the re-render peaks where the stems do
from train.features import frame_of, log_mel
from train.files import write_text_atomic
from train.render import render
from train.slakh import StemRef
from train.store import FRAME_BYTES, WindowStore

VIEW_VERSION = 1
#: The neutral instrument: GM program 0, Acoustic Grand Piano (what notation software plays
#: back): clear onsets, velocity heard as loudness and brightness, note-offs heard as dampers.
NEUTRAL_PROGRAM = 0
#: Stems one worker process renders before it is replaced by a fresh one (see ``_map``).
RECYCLE_EVERY = 200

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class StemJob:
    """Where one stem's frames go in the view: ``frames`` rows from row ``start``, taken from
    the re-rendered stem's log-mel from the frame of ``first_tick`` (its first window)."""

    key: str
    midi_path: Path
    start: int
    frames: int
    first_tick: int


def view_file(folder: Path, name: str) -> Path:
    return Path(folder) / f"mel-{name}.f16"


def view_meta(folder: Path, name: str) -> dict | None:
    """The finished view's description, or None when it is missing or incomplete."""
    path = Path(folder) / f"mel-{name}.json"
    if not path.exists():
        return None
    meta = json.loads(path.read_text())
    return meta if meta.get("version") == VIEW_VERSION else None


def build_neutral_view(
    store: WindowStore,
    stems: list[StemRef],
    soundfont: Path,
    *,
    program: int = NEUTRAL_PROGRAM,
    workers: int = 1,
    progress: Progress | None = None,
) -> dict:
    """Write (or finish) ``mel-neutral.f16`` for every stem of ``store``; returns its meta."""
    folder = store.folder
    want = {"version": VIEW_VERSION, "program": program, "soundfont": soundfont.name,
            "frames": int(store.mel_frames.shape[0])}  # fmt: skip
    if (meta := view_meta(folder, "neutral")) == want:
        return meta
    path, done_path = view_file(folder, "neutral"), folder / "mel-neutral.done"
    building = folder / "mel-neutral.building.json"  # what the unfinished view is made with
    started = json.loads(building.read_text()) if building.exists() else None
    size_ok = path.exists() and path.stat().st_size == want["frames"] * FRAME_BYTES
    if started != want or not size_ok:
        (folder / "mel-neutral.json").unlink(missing_ok=True)
        _fresh(path, done_path, want["frames"])
        write_text_atomic(building, json.dumps(want))
    done = set(done_path.read_text().split()) if done_path.exists() else set()
    jobs = [j for j in stem_jobs(store, stems) if j.key not in done]
    total = len(done) + len(jobs)
    view = np.memmap(path, dtype=np.float16, mode="r+", shape=(want["frames"], MEL.n_mels))
    with open(done_path, "a") as log:
        for n, (job, mel) in enumerate(_map(jobs, soundfont, program, workers), len(done) + 1):
            view[job.start : job.start + job.frames] = mel
            view.flush()  # frames first, then the log: a crash never marks a stem done early
            log.write(job.key + "\n")
            log.flush()
            if progress:
                progress("neutral view", n, total)
    del view
    write_text_atomic(folder / "mel-neutral.json", json.dumps(want, indent=1))
    building.unlink()
    return want


def _fresh(path: Path, done_path: Path, frames: int) -> None:
    with open(path, "wb") as f:
        f.truncate(frames * FRAME_BYTES)
    np.memmap(path, dtype=np.float16, mode="r+", shape=(frames, MEL.n_mels))[:] = MEL.top_db_floor
    done_path.unlink(missing_ok=True)


def stem_jobs(store: WindowStore, stems: list[StemRef]) -> list[StemJob]:
    """Each stem of the store with its rows in ``mel.f16``: a stem's windows are contiguous
    rows of the index and its first window starts its frames (see :func:`stem_windows`)."""
    index = store.index
    keys = np.char.add(np.char.add(index["song"].astype(str), "/"), index["stem"].astype(str))
    by_key = {s.key: s for s in stems}
    jobs: list[StemJob] = []
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    for s, e in zip(starts, ends, strict=True):
        key = str(keys[s])
        if key not in by_key:
            raise FileNotFoundError(f"stem {key} of the window store is not in the data folder")
        offsets, lengths = index["mel_offset"][s:e], index["mel_frames"][s:e]
        first = int(np.argmin(index["start_tick"][s:e]))
        start = int(offsets.min())
        jobs.append(StemJob(key, by_key[key].midi_path, start,
                            int((offsets + lengths).max()) - start,
                            int(index["start_tick"][s + first])))  # fmt: skip
    return jobs


def _map(
    jobs: list[StemJob], soundfont: Path, program: int, workers: int
) -> Iterator[tuple[StemJob, np.ndarray]]:
    if workers <= 1:
        for job in jobs:
            yield job, neutral_frames(job, soundfont, program)
        return
    # Fresh workers every RECYCLE_EVERY stems: one 2-worker build of 4,600 stems was killed
    # for memory (two workers at 11 and 14 GB) after 1,539 stems, which neither a single
    # process nor a repeat of the same stems in a pool reproduced; recycling bounds it anyway.
    with ProcessPoolExecutor(max_workers=workers, max_tasks_per_child=RECYCLE_EVERY) as pool:
        futures = {pool.submit(neutral_frames, j, soundfont, program): j for j in jobs}
        for future in as_completed(futures):
            yield futures.pop(future), future.result()


def neutral_frames(job: StemJob, soundfont: Path, program: int) -> np.ndarray:
    """The stem rendered with ``program``: its log-mel frames ``[job.frames, 128]`` float16,
    aligned with the store's (the same ``frame_of`` of the first window's start)."""
    midi = load_midi(job.midi_path)
    song = read_song(midi)
    base = frame_of(float(song.tempo.to_seconds([job.first_tick])[0]))
    with tempfile.TemporaryDirectory(prefix="kdlive-view-") as tmp:
        path = Path(tmp) / "neutral.mid"
        with_program(midi, program).save(path)
        y = render(path, soundfont)
    peak = float(np.abs(y).max()) if y.size else 0.0
    if peak > 0:
        y = y * (10 ** (TARGET_PEAK_DB / 20) / peak)
    mel = log_mel(y)[base : base + job.frames]
    out = np.full((job.frames, MEL.n_mels), MEL.top_db_floor, np.float16)
    out[: len(mel)] = mel
    return out


def with_program(midi: mido.MidiFile, program: int) -> mido.MidiFile:
    """A copy of ``midi`` in which every channel plays ``program`` (bank 0): its program
    changes and bank selects are dropped (their delta times kept) and one program change per
    used channel is put at the start. Notes, velocities, pedal and pitch bends are untouched."""
    out = mido.MidiFile(type=midi.type, ticks_per_beat=midi.ticks_per_beat)
    channels: set[int] = set()
    for track in midi.tracks:
        new = mido.MidiTrack()
        carry = 0
        for msg in track:
            drop = msg.type == "program_change" or (
                msg.type == "control_change" and msg.control in (0, 32)
            )
            if drop:
                carry += msg.time
                continue
            if hasattr(msg, "channel"):
                channels.add(msg.channel)
            new.append(msg.copy(time=msg.time + carry))
            carry = 0
        out.tracks.append(new)
    first = next((i for i, t in enumerate(out.tracks) if any(hasattr(m, "channel") for m in t)), 0)
    if not out.tracks:
        out.tracks.append(mido.MidiTrack())
    setup = [mido.Message("program_change", channel=c, program=program, time=0)
             for c in sorted(channels)]  # fmt: skip
    out.tracks[first][0:0] = setup
    return out
