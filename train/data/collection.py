"""Any folder of multitrack General MIDI files -> a Slakh2100-layout folder of rendered stems.

Each kept track is written as its own MIDI file and rendered ONCE, whole, with FluidSynth::

    OUT/{train,validation,test}/TrackNNNNN/
        metadata.yaml      # Slakh's fields, plus where the song came from
        all_src.mid        # the original file
        MIDI/Snn.mid       # conductor events + one part
        stems/Snn.flac     # 22,050 Hz mono

so that :mod:`train.slakh` reads rendered collections and Slakh2100 alike. Splits are by song
(a stable hash of the file's bytes, 80/10/10), never by window.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import mido
import numpy as np
import soundfile
import yaml

from live.contract import MEL
from live.errors import MidiFileError
from live.midifile import Part, Song, load_midi, read_song
from live.taxonomy import SLAKH_CLASS_OF_PROGRAM, class_of_program
from train.data.render import render
from train.data.soundfonts import choose_soundfont
from train.data.workers import map_songs
from train.errors import DataError
from train.files import atomic_write

if TYPE_CHECKING:
    from distributed import Client

MIDI_SUFFIXES = {".mid", ".midi", ".kar", ".smf"}
MIN_BPM, MAX_BPM = 20.0, 400.0
#: A rendered track whose peak stays below this (dBFS) is silent.
SILENT_TRACK_DB = -80.0
#: Stems are written with this peak (dBFS), as Slakh normalises its stems (target_peak -1).
TARGET_PEAK_DB = -1.0
MANIFEST = "manifest.json"
#: Bumped when reading or filtering changes, so that songs logged by an older version are
#: done again instead of being trusted on resume.
LOG_VERSION = 2


@dataclass(frozen=True)
class SongJob:
    """One source file to render: where it is, its content hash and its place in the layout."""

    source: Path
    sha1: str
    track_id: str  # TrackNNNNN
    split: str
    size: int


def split_of(sha1: str) -> str:
    """80/10/10 train/validation/test from the file's content hash: stable across machines."""
    bucket = int(sha1[:8], 16) % 10
    return "train" if bucket < 8 else ("validation" if bucket == 8 else "test")


def find_midi_files(folders: list[Path]) -> list[Path]:
    """Every MIDI file under ``folders``, recursively, in a stable order."""
    files: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.exists():
            raise DataError(f"MIDI folder not found: {folder}")
        if folder.is_file():
            files.append(folder)
            continue
        files += sorted(
            p for p in folder.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file()
        )
    return files


def plan_jobs(
    files: list[Path], out: Path, *, limit_songs: int | None = None
) -> tuple[list[SongJob], list[dict]]:
    """Give each distinct song a stable TrackNNNNN (kept in ``OUT/manifest.json`` so that a
    second run, even with more files, keeps every number) and a split. Duplicate files (same
    bytes) are skipped and reported."""
    manifest_path = out / MANIFEST
    manifest: dict[str, str] = (
        json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    )
    next_number = 1 + max((int(v[5:]) for v in manifest.values()), default=0)
    jobs: list[SongJob] = []
    skipped: list[dict] = []
    seen: dict[str, Path] = {}
    for path in files:
        data = path.read_bytes()
        sha1 = hashlib.sha1(data).hexdigest()
        if sha1 in seen:
            skipped.append(_skip(path, f"duplicate of {seen[sha1]}"))
            continue
        seen[sha1] = path
        if limit_songs is not None and len(jobs) >= limit_songs:
            break
        if sha1 not in manifest:
            manifest[sha1] = f"Track{next_number:05d}"
            next_number += 1
        jobs.append(SongJob(path, sha1, manifest[sha1], split_of(sha1), len(data)))
    out.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(manifest_path, manifest)
    return jobs, skipped


def render_collection(
    jobs: list[SongJob],
    out: Path,
    soundfonts: list[Path],
    *,
    workers: int,
    client: Client | None = None,
    on_song: Callable[[SongJob], None] | None = None,
) -> list[dict]:
    """Render every job not already done in ``out`` (resumable), longest files first so that
    the workers finish together: in ``workers`` processes, or on ``client``'s Dask cluster
    (:mod:`train.data.workers`). Returns the skip records of all ``jobs``, this run's and
    earlier runs' alike (each song's are kept in ``OUT/.log/TrackNNNNN.json``)."""
    todo = sorted((j for j in jobs if not _logged(out, j)), key=lambda j: -j.size)
    runs = [(job, out, soundfonts) for job in todo]
    rendered = map_songs(render_song, runs, workers=workers, client=client, lost=_lost)
    for job, _ in zip(todo, rendered, strict=True):
        if on_song is not None:
            on_song(job)
    skipped: list[dict] = []
    for job in jobs:
        skipped += json.loads(_log_path(out, job).read_text())["skipped"]
    return skipped


def _lost(run: tuple[SongJob, Path, list[Path]], reason: str) -> list[dict]:
    """A song whose rendering killed every worker it ran on: logged as skipped."""
    job, out, _ = run
    return _log_song(out, job, [_skip(job.source, f"rendering it {reason}")])


def _log_path(out: Path, job: SongJob) -> Path:
    return out / ".log" / f"{job.track_id}.json"


def _logged(out: Path, job: SongJob) -> bool:
    path = _log_path(out, job)
    return path.exists() and json.loads(path.read_text()).get("version") == LOG_VERSION


def render_song(job: SongJob, out: Path, soundfonts: list[Path]) -> list[dict]:
    """Parse one song once, write and render each usable part, and commit the song folder
    atomically (a temporary folder renamed at the end); then log the song as done, with its
    skip records, so that a resumed run neither redoes nor forgets it."""
    try:
        midi = load_midi(job.source)
        song = read_song(midi)
        check_tempo(song)
    except (MidiFileError, DataError, ValueError) as exc:
        return _log_song(out, job, [_skip(job.source, str(exc))])
    parts, skipped = select_parts(song, job.source)
    if not parts:
        reason = "no usable track (no audible non-drum part in the 8 classes)"
        return _log_song(out, job, [*skipped, _skip(job.source, reason)])

    final = out / job.split / job.track_id
    tmp = out / job.split / f".tmp-{job.track_id}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "MIDI").mkdir(parents=True)
    (tmp / "stems").mkdir()
    stems: dict[str, dict] = {}
    for n, part in enumerate(parts):
        stem_id = f"S{n:02d}"
        soundfont = choose_soundfont(soundfonts, f"{job.sha1}:{part.track}:{part.channel}")
        midi_path = tmp / "MIDI" / f"{stem_id}.mid"
        write_part_midi(midi, part, midi_path)
        try:
            audio = render(midi_path, soundfont)
        except DataError as exc:
            skipped.append(_skip(job.source, str(exc), part=part))
            midi_path.unlink()
            continue
        peak = float(np.abs(audio).max()) if audio.size else 0.0
        if peak <= 10 ** (SILENT_TRACK_DB / 20):
            skipped.append(_skip(job.source, "track renders silent", part=part, silent=True))
            midi_path.unlink()
            continue
        gain = 10 ** (TARGET_PEAK_DB / 20) / peak
        soundfile.write(
            tmp / "stems" / f"{stem_id}.flac", audio * gain, MEL.sample_rate, subtype="PCM_16"
        )
        stems[stem_id] = _stem_metadata(part, soundfont, gain)
    if not stems:
        shutil.rmtree(tmp)
        return _log_song(out, job, [*skipped, _skip(job.source, "no track rendered audibly")])
    shutil.copyfile(job.source, tmp / "all_src.mid")
    metadata = {
        "UUID": job.sha1,
        "audio_dir": "stems",
        "midi_dir": "MIDI",
        "source_file": str(job.source),
        "normalized": True,
        "target_peak": TARGET_PEAK_DB,
        "stems": stems,
    }
    (tmp / "metadata.yaml").write_text(yaml.safe_dump(metadata, sort_keys=True))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return _log_song(out, job, skipped)


def check_tempo(song: Song) -> None:
    """:class:`DataError` for a song whose tempo leaves the usable range anywhere."""
    slowest, fastest = song.tempo.bpm_range(song.end_tick)
    if slowest < MIN_BPM or fastest > MAX_BPM:
        raise DataError(
            f"absurd tempo ({slowest:.1f}-{fastest:.1f} BPM; usable is {MIN_BPM:.0f}-{MAX_BPM:.0f})"
        )


def select_parts(song: Song, source: Path) -> tuple[list[Part], list[dict]]:
    """The parts worth rendering (the :func:`audible_parts` in the task), and skip records
    for the parts of the task filtered out. Drums and programs outside the 8 classes are not
    in the task: no record."""
    audible, skipped = audible_parts(song, source)
    return [p for p in audible if in_task(p)], [r for r in skipped if r.pop("in_task")]


def in_task(part: Part) -> bool:
    """A part the models classify: not drums, and a program of the 8 classes."""
    return not part.is_drum and class_of_program(part.program) is not None


def audible_parts(song: Song, source: Path) -> tuple[list[Part], list[dict]]:
    """The parts that really sound (every program, drums included), and skip records for the
    parts filtered out: melody duplicates named ``*_WA``, "ghost" tracks whose every note has
    velocity <= 1, and tracks muted by CC 7 / CC 11 held at 0 (the last two would be silent
    windows labelled as an instrument: label noise a notes-only model cannot see). Each record
    says whether the part was ``in_task``."""
    kept: list[Part] = []
    skipped: list[dict] = []
    for part in song.parts:
        if not len(part):
            continue
        reason, silent = None, False
        if part.name.strip().upper().endswith("_WA"):
            reason = "duplicated melody track (_WA)"
        elif (part.velocities <= 1).all():
            reason, silent = "ghost track (every note at velocity <= 1)", True
        elif part.muted.all():
            reason, silent = "muted track (volume CC 7 or expression CC 11 at 0)", True
        if reason is None:
            kept.append(part)
        else:
            record = _skip(source, reason, part=part, silent=silent)
            skipped.append(record | {"in_task": in_task(part)})
    return kept, skipped


def write_part_midi(midi: mido.MidiFile, part: Part, path: Path) -> None:
    """Write one part as a type-1 file: every tempo / meter / key event of the song in track 0,
    and the part's own channel messages from its track (other channels and programs removed)
    in track 1. Ticks are unchanged, so the file has exactly the song's beat grid."""
    conductor = mido.MidiTrack()
    events: list[tuple[int, mido.Message]] = []
    for track in midi.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.is_meta and msg.type in ("set_tempo", "time_signature", "key_signature"):
                events.append((tick, msg))
    _append_absolute(conductor, sorted(events, key=lambda e: e[0]))
    own = mido.MidiTrack([mido.MetaMessage("track_name", name=part.name or "part", time=0)])
    own.append(mido.Message("program_change", channel=part.channel, program=part.program))
    events = []
    tick = 0
    program = 0
    for msg in midi.tracks[part.track]:
        tick += msg.time
        if msg.is_meta or not hasattr(msg, "channel") or msg.channel != part.channel:
            continue
        if msg.type == "program_change":
            program = msg.program
            continue
        if msg.type == "note_on" and msg.velocity > 0 and program != part.program:
            continue  # a note of another program on this channel belongs to another part
        events.append((tick, msg))
    _append_absolute(own, events)
    out = mido.MidiFile(type=1, ticks_per_beat=midi.ticks_per_beat)
    out.tracks += [conductor, own]
    out.save(path)


def _append_absolute(track: mido.MidiTrack, events: list[tuple[int, mido.Message]]) -> None:
    last = 0
    for tick, msg in events:
        track.append(msg.copy(time=tick - last))
        last = tick


def _stem_metadata(part: Part, soundfont: Path, gain: float) -> dict:
    import pretty_midi

    return {
        "audio_rendered": True,
        "inst_class": SLAKH_CLASS_OF_PROGRAM[part.program],
        "is_drum": False,
        "midi_program_name": pretty_midi.program_to_instrument_name(part.program),
        "midi_saved": True,
        "plugin_name": soundfont.name,
        "program_num": part.program,
        "normalization_gain": round(float(gain), 6),
        "source_track": part.track,
        "source_channel": part.channel,
        "track_name": part.name,
    }


def _skip(source: Path, reason: str, *, part: Part | None = None, silent: bool = False) -> dict:
    record: dict = {"file": str(source), "reason": reason}
    if part is not None:
        record |= {"track": part.track, "channel": part.channel + 1, "program": part.program}
        record["name"] = part.name
    if silent:
        record["silent_track"] = True
    return record


def _log_song(out: Path, job: SongJob, skipped: list[dict]) -> list[dict]:
    (out / ".log").mkdir(parents=True, exist_ok=True)
    record = {"source": str(job.source), "skipped": skipped, "version": LOG_VERSION}
    _write_json_atomic(_log_path(out, job), record)
    return skipped


def _write_json_atomic(path: Path, obj: object) -> None:
    atomic_write(path, json.dumps(obj, indent=1, sort_keys=True))
