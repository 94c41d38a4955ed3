"""The notes-only window store: contract-v2 and v3 inputs straight from MIDI, no audio.

A notes-only student needs no rendering, so this store takes every song of a collection
(thousands, where rendering affords hundreds): each song is parsed once, its audible parts
(every program, drums included) are the sources of :func:`live.inputs.window_inputs`, and each
window of a part in the 8 classes is kept. Layout of ``OUT/notes/``::

    cells.u16     uint16 [M]   the nonzero cells of every window's input, as flat indices
                               (channel * 128 + pitch) * 16 + step, window after window
    values.u8     uint8  [M]   their values (1, or a velocity)
    windows.i32   int32  [N, len(COLUMNS)]   one row per window (see COLUMNS)
    songs.jsonl   one line per song done, written after its data: the resume log, with the
                  song's parts, skip records and the fingerprint of its notes
    meta.json     counts and the store's version, written when the build is complete

A window's cells are its contract-2 input's (channels 0-4, exactly as contract 2 makes them),
then those of a sixth plane, ``controls`` (channel 5): rows 0-7 hold the part's controller
states step by step (:func:`live.controls.control_rows`, value 1), what contract 3 puts in the
drums plane's rows 0-7 instead of the kits' onsets there. Each window's cells ascend. Both
contracts are read from the one store: :class:`NotesStore` hands out the view its ``contract``
asks for (contract 2 drops the sixth plane; contract 3 moves it into the drums plane), so a
contract-2 student reads exactly what it read before the plane existed.

Inputs are stored sparse (about 180 nonzero cells of 10,240 per window), about 550 bytes a
window. An interrupted build resumes: files are cut back to what ``songs.jsonl`` vouches for
(:mod:`train.data.flatfiles`).
Splits are by *group* of songs: versions of one song (different files, much the same notes,
found by :func:`group_songs`) share a split, so a test song is never a re-arrangement of a
training one.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from live.contract import WINDOW
from live.contracts import V2, Contract
from live.controls import N_ROWS, Controls, control_rows, controls_of, file_controls
from live.errors import MidiFileError
from live.inputs import CHANNELS_V2, DRUMS, song_inputs, sources_of
from live.midifile import Part, Song, load_midi, read_song
from live.taxonomy import CLASSES, class_of_program
from train.data import slakh
from train.data.collection import audible_parts, check_tempo, in_task, split_of
from train.data.flatfiles import FlatFiles, memmap, start_fresh_if_changed
from train.data.store import WindowStore
from train.data.workers import map_songs
from train.errors import DataError
from train.files import atomic_write, read_log

if TYPE_CHECKING:
    from distributed import Client

#: Bumped when what a song's record or windows mean changes: a store of another version is
#: rebuilt, not resumed. 2: the controls plane (contract 3) after each window's cells.
NOTES_VERSION = 2
COLUMNS = (
    "song",
    "part",
    "bar",
    "label",
    "program",
    "valid_steps",
    "n_cells",
    "cell_offset_lo",
    "cell_offset_hi",
)
SHAPE = V2.input_shape
#: Cells of one plane (128 pitches x 16 steps).
PLANE = SHAPE[1] * SHAPE[2]
#: The first flat cell of the controls plane (channel 5), and of the drums plane's rows that
#: contract 3 fills with the controls (rows 0 .. N_ROWS - 1 of channel 4).
CONTROLS_AT, DRUM_ROWS_AT = len(CHANNELS_V2) * PLANE, DRUMS * PLANE
CONTROL_CELLS = N_ROWS * SHAPE[2]
#: MinHash of a song's notes: this many hash functions, in bands of BAND rows for LSH.
N_HASHES, BAND = 64, 4
#: Songs whose estimated Jaccard similarity of note n-grams is at least this are versions.
VERSION_SIMILARITY = 0.5
Progress = Callable[[str, int, int], None]


@dataclass
class SongWindows:
    """What one song contributes: its record (songs.jsonl), window rows and cells."""

    record: dict
    rows: npt.NDArray[np.int32]  # [n, len(COLUMNS)], song and offsets filled in on append
    cells: npt.NDArray[np.uint16]
    values: npt.NDArray[np.uint8]


def song_windows(path: Path, sha1: str) -> SongWindows:
    """Parse one MIDI file and cut every target part's windows (hop 1 bar). A file that cannot
    be used gives a record with ``"skipped"`` and no windows."""
    record: dict = {"sha1": sha1, "file": str(path), "version": NOTES_VERSION}
    try:
        midi = load_midi(path)
        song = read_song(midi)
        check_tempo(song)
        by_channel = file_controls(midi)
    except (MidiFileError, DataError, ValueError) as exc:
        return _skipped(path, sha1, str(exc))
    sources, skipped = audible_parts(song, path)
    targets = [i for i, p in enumerate(sources) if in_task(p)]
    record |= {
        "skipped": skipped,
        "parts": [_part_record(p) for p in sources],
        "targets": targets,
        "fingerprint": fingerprint(sources).tolist(),
        "bars": len(song.bars),
    }
    if not targets:
        record["skipped"].append({"file": str(path), "reason": "no audible part in the 8 classes"})
        return _empty(record)
    controls = controls_of([p.channel for p in sources], by_channel)
    return _cut(record, song, sources, targets, controls)


def _cut(
    record: dict, song: Song, sources: list[Part], targets: list[int], controls: Controls
) -> SongWindows:
    """Every target part's windows: the contract-2 input's cells, then the controls plane's
    (the part's channel's controller states, :func:`live.controls.control_rows`, as contract 3
    reads them at the window's steps: ``live.inputs.song_inputs``'s)."""
    rows, cells, values = [], [], []
    labels = {i: CLASSES.index(str(class_of_program(sources[i].program))) for i in targets}
    step_ticks = song.ticks_per_beat / WINDOW.steps_per_quarter
    n_controls = 0
    for bar, t0, _, inputs, valid in song_inputs(
        sources_of(sources), song.bars, song.ticks_per_beat
    ):
        states = control_rows(controls, len(sources), t0, step_ticks, valid)
        for i in targets:
            if not inputs[i, 0].any():
                continue
            flat = inputs[i].reshape(-1)
            nz = np.flatnonzero(flat)
            on = CONTROLS_AT + np.flatnonzero(states[i])  # row * 16 + step, in plane 5
            rows.append((0, i, bar, labels[i], sources[i].program, valid, len(nz) + len(on), 0, 0))
            cells.append(np.concatenate([nz, on]).astype(np.uint16))
            values.append(np.concatenate([flat[nz], np.ones(len(on), np.uint8)]))
            n_controls += len(on)
    record["windows"] = len(rows)
    record["control_cells"] = n_controls
    if not rows:
        return _empty(record)
    return SongWindows(
        record, np.array(rows, np.int32), np.concatenate(cells), np.concatenate(values)
    )


def _skipped(path: Path, sha1: str, reason: str) -> SongWindows:
    record = {"sha1": sha1, "file": str(path), "version": NOTES_VERSION}
    return _empty(record | {"skipped": [{"file": str(path), "reason": reason}]})


def _lost(job: tuple[Path, str], reason: str) -> SongWindows:
    """A song whose job killed every worker it ran on (a cluster's): recorded as skipped."""
    return _skipped(*job, f"reading it {reason}")


def _empty(record: dict) -> SongWindows:
    record.setdefault("windows", 0)
    z = np.zeros
    return SongWindows(record, z((0, len(COLUMNS)), np.int32), z(0, np.uint16), z(0, np.uint8))


def _part_record(part: Part) -> dict:
    label = class_of_program(part.program, is_drum=part.is_drum)
    return {
        "track": part.track,
        "channel": part.channel + 1,
        "program": part.program,
        "name": part.name,
        "class": label,
        "notes": len(part),
    }


# ------------------------------------------------------------------------ song fingerprints


def fingerprint(parts: list[Part]) -> npt.NDArray[np.int64]:
    """MinHash (:data:`N_HASHES` values) of a song's melodic 5-grams: per pitched part, the
    intervals between the top notes of consecutive onsets (clipped to +-24 semitones), so that
    another file of the same song (transposed, re-timed, re-voiced) shares most of them."""
    shingles = [_shingles(p) for p in parts if not p.is_drum]
    grams = np.unique(np.concatenate(shingles)) if shingles else np.zeros(0, np.int64)
    if len(grams) == 0:
        return np.full(N_HASHES, -1, np.int64)
    a, b = _HASH_A[:, None], _HASH_B[:, None]
    return ((a * grams[None, :] + b) % _PRIME).min(axis=1)


def _shingles(part: Part, n: int = 5) -> npt.NDArray[np.int64]:
    starts, order = np.unique(part.starts, return_index=True)
    top = np.maximum.reduceat(part.pitches, order) if len(order) else order
    steps = np.clip(np.diff(top), -24, 24) + 24  # 0..48: 6 bits each
    if len(steps) < n:
        return np.zeros(0, np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(steps, n)
    return (windows << (6 * np.arange(n))).sum(axis=1)


_PRIME = (1 << 31) - 1
_rng = np.random.default_rng(20261203)
_HASH_A = _rng.integers(1, _PRIME, N_HASHES, dtype=np.int64)
_HASH_B = _rng.integers(0, _PRIME, N_HASHES, dtype=np.int64)


def group_songs(
    signatures: npt.NDArray[np.int64], threshold: float = VERSION_SIMILARITY
) -> npt.NDArray[np.int64]:
    """Group index per song: songs whose MinHash signatures agree on at least ``threshold`` of
    their values (the estimated Jaccard similarity) are joined, transitively. Candidates come
    from locality-sensitive hashing (bands of :data:`BAND` values), so it is near-linear."""
    n = len(signatures)
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return int(i)

    empty = (signatures < 0).all(axis=1)
    for band in range(0, signatures.shape[1], BAND):
        buckets: dict[bytes, list[int]] = {}
        for i in np.flatnonzero(~empty):
            buckets.setdefault(signatures[i, band : band + BAND].tobytes(), []).append(int(i))
        for members in buckets.values():
            for j in members[1:]:
                a, b = root(members[0]), root(j)
                if a != b and (signatures[members[0]] == signatures[j]).mean() >= threshold:
                    parent[max(a, b)] = min(a, b)
    return np.array([root(i) for i in range(n)], np.int64)


# -------------------------------------------------------------------------------- writing


class NotesWriter:
    """Appends songs to ``OUT/notes``; reopening an interrupted store resumes where it stopped."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        want = {
            "contract_version": V2.version,
            "notes_version": NOTES_VERSION,
            "columns": list(COLUMNS),
        }
        start_fresh_if_changed(self.folder, want, json.dumps(want))
        self.files = FlatFiles(self.folder, log="songs.jsonl", key="sha1")
        self.done = self.files.done
        self.n_windows = sum(r["windows"] for r in self.done.values())
        self.n_cells = sum(r.get("cells", 0) for r in self.done.values())
        self.n_controls = sum(r.get("control_cells", 0) for r in self.done.values())
        self.files.open(
            {
                "windows.i32": self.n_windows * len(COLUMNS) * 4,
                "cells.u16": self.n_cells * 2,
                "values.u8": self.n_cells,
            }
        )

    def append(self, song: SongWindows) -> None:
        """Write one song's windows and cells, then log it (data first: a crash never lies)."""
        rows = song.rows.copy()
        index = len(self.done)
        if len(rows):
            offsets = self.n_cells + np.concatenate([[0], np.cumsum(rows[:-1, 6], dtype=np.int64)])
            rows[:, 0] = index
            rows[:, 7], rows[:, 8] = offsets & 0x7FFFFFFF, offsets >> 31
        self.files.write("windows.i32", rows.astype("<i4").tobytes())
        self.files.write("cells.u16", song.cells.astype("<u2").tobytes())
        self.files.write("values.u8", song.values.tobytes())
        self.files.commit(song.record | {"index": index, "cells": int(len(song.cells))})
        self.n_windows += len(rows)
        self.n_cells += len(song.cells)
        self.n_controls += song.record.get("control_cells", 0)

    def close(self) -> None:
        self.files.close()
        meta = {
            "contract_version": V2.version,
            "notes_version": NOTES_VERSION,
            "windows": self.n_windows,
            "cells": self.n_cells,
            "songs": len(self.done),
            "shape": list(SHAPE),
            "control_rows": N_ROWS,
            "control_cells": self.n_controls,
        }
        atomic_write(self.folder / "meta.json", json.dumps(meta, indent=1))


def build_notes(
    files: list[Path],
    out: Path,
    *,
    workers: int = 1,
    client: Client | None = None,
    progress: Progress | None = None,
) -> dict:
    """Build (or finish) the notes store of ``files`` in ``out``, in ``workers`` processes or
    on ``client``'s Dask cluster (:mod:`train.data.workers`: the same bytes either way);
    returns its summary. Files with the same bytes count once; unusable files and parts are
    recorded, never fatal. The caller holds the data folder's lock
    (``train.data.build.build``)."""
    writer = NotesWriter(Path(out))
    try:
        todo, seen = [], set(writer.done)
        for path in files:
            sha1 = hashlib.sha1(path.read_bytes()).hexdigest()
            if sha1 not in seen:
                seen.add(sha1)
                todo.append((path, sha1))
        total, done = len(writer.done) + len(todo), len(writer.done)
        if progress:
            progress("notes", done, total)
        for song in map_songs(song_windows, todo, workers=workers, client=client, lost=_lost):
            writer.append(song)
            done += 1
            if progress:
                progress("notes", done, total)
    finally:
        writer.close()
    return NotesStore(Path(out)).summary()


# -------------------------------------------------------------------------------- reading


class NotesStore:
    """Read side: the window table and song records, cells memory-mapped. What it hands a
    student (:meth:`inputs`, :meth:`window_cells`) is ``contract``'s view of the cells: contract
    2's five planes as they were built, or contract 3's, the controls plane in the drums plane's
    rows 0-7 (the module docstring). A store built before the controls plane serves contract 2
    alone."""

    def __init__(self, folder: Path, *, contract: Contract = V2) -> None:
        self.folder = Path(folder)
        if not (self.folder / "meta.json").exists():
            raise DataError(
                f"no notes store at {self.folder}: build it with `kdtrain data --notes` (or "
                "`kdtrain all`, which builds it when its students need it)"
            )
        meta = json.loads((self.folder / "meta.json").read_text())
        #: Whether the store holds the controls plane (a store of notes version 2 or later).
        self.has_controls = int(meta.get("notes_version", 1)) >= 2
        # Contract 2 drops the plane's cells; where there are none, it has nothing to drop.
        self._no_controls = int(meta.get("control_cells", 0)) == 0
        self.contract = self._check(contract)
        self.songs = sorted(
            read_log(self.folder / "songs.jsonl", "sha1").values(), key=lambda r: r["index"]
        )
        n, m = int(meta["windows"]), int(meta["cells"])
        table = memmap(self.folder / "windows.i32", np.int32, (n, len(COLUMNS)))
        self.index = {name: np.asarray(table[:, k]) for k, name in enumerate(COLUMNS)}
        self.offset = self.index.pop("cell_offset_lo").astype(np.int64) + (
            self.index.pop("cell_offset_hi").astype(np.int64) << 31
        )
        self.cells = memmap(self.folder / "cells.u16", np.uint16, (m,))
        self.values = memmap(self.folder / "values.u8", np.uint8, (m,))
        signatures = np.array([s.get("fingerprint", [-1] * N_HASHES) for s in self.songs], np.int64)
        self.group = group_songs(signatures.reshape(len(self.songs), N_HASHES))
        # A group's split is that of its least hash: the same whatever order songs came in.
        first: dict[int, str] = {}
        for g, song in zip(self.group, self.songs, strict=True):
            first[g] = min(first.get(g, song["sha1"]), song["sha1"])
        #: Each song's group, named by its least hash; the group's split is that hash's.
        self.song_key = np.array([first[g] for g in self.group])
        self.song_split = np.array([split_of(k) for k in self.song_key])

    def __len__(self) -> int:
        return len(self.offset)

    def view(self, contract: Contract) -> NotesStore:
        """The same store handing out ``contract``'s view of the cells (no file read again):
        the floor reads contract 2's statistics beside a contract-3 student."""
        other = copy.copy(self)
        other.contract = self._check(contract)
        return other

    def _check(self, contract: Contract) -> Contract:
        if contract.input_shape != SHAPE:
            raise ValueError(
                f"a notes store holds inputs of shape {SHAPE}, not contract {contract}'s"
            )
        if contract.controls and not self.has_controls:
            raise DataError(
                f"the notes store at {self.folder} predates contract 3 (it keeps no "
                "controllers): rebuild it (`kdtrain all` does, as it builds the run's data)"
            )
        return contract

    @property
    def labels(self) -> npt.NDArray[np.int64]:
        return self.index["label"].astype(np.int64)

    def split(self, name: str) -> npt.NDArray[np.int64]:
        """Indices of the windows whose song (group) is in split ``name``."""
        return np.flatnonzero(self.song_split[self.index["song"]] == name)

    def inputs(
        self, idx: npt.NDArray[np.int64], out: npt.NDArray[np.uint8] | None = None
    ) -> npt.NDArray[np.uint8]:
        """The windows' inputs in the store's contract, ``uint8 [len(idx), 5, 128, 16]``."""
        batch = np.zeros((len(idx), *SHAPE), np.uint8) if out is None else out
        flat = batch.reshape(len(idx), -1)
        if out is not None:
            flat.fill(0)
        rows, cells, values = self.window_cells(idx)
        flat[rows, cells] = values
        return batch

    def window_cells(
        self, idx: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint16], npt.NDArray[np.uint8]]:
        """The windows' nonzero cells in the store's contract: ``(row in idx, flat position in
        [5, 128, 16], value)``, rows ascending and each window's cells too, what :meth:`inputs`
        writes into zeros."""
        rows, take = self._cells_of(idx)
        cells, values = self.cells[take], self.values[take]
        if not self.contract.controls:
            if self._no_controls:
                return rows, cells, values
            keep = cells < CONTROLS_AT
            return rows[keep], cells[keep], values[keep]
        return _moved_controls(rows, cells, values, len(idx))

    def _cells_of(
        self, idx: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """``(row in idx, position in cells.u16)`` of every stored cell of the windows."""
        counts = self.index["n_cells"][idx].astype(np.int64)
        take = np.repeat(
            self.offset[idx] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts
        ) + np.arange(counts.sum())
        return np.repeat(np.arange(len(idx)), counts), take

    def part_cells(
        self, idx: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The sounding cells of each window's own part (channel 0, contract 1's roll, the
        same in every contract), as ``(row in idx, flat cell of [128, 16])`` pairs, rows
        ascending."""
        rows, take = self._cells_of(idx)
        cells = self.cells[take].astype(np.int64)
        own = cells < PLANE
        return rows[own], cells[own]

    def summary(self) -> dict:
        """Songs, groups of versions, windows per split and class, skipped files and parts."""
        windows = {s: dict.fromkeys(CLASSES, 0) for s in ("train", "validation", "test")}
        split = self.song_split[self.index["song"]]
        for s in windows:
            counts = np.bincount(self.index["label"][split == s], minlength=len(CLASSES))
            windows[s] = {c: int(k) for c, k in zip(CLASSES, counts, strict=True)}
        sizes = np.bincount(self.group)
        return {
            "songs": len(self.songs),
            "songs_with_windows": int(sum(1 for s in self.songs if s["windows"])),
            "version_groups": int((sizes > 1).sum()),
            "songs_in_version_groups": int(sizes[sizes > 1].sum()),
            "windows": windows,
            "skipped": sum(len(s.get("skipped", [])) for s in self.songs),
            "contract_version": V2.version,
        }


def _moved_controls(
    rows: npt.NDArray[np.int64],
    cells: npt.NDArray[np.uint16],
    values: npt.NDArray[np.uint8],
    n: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint16], npt.NDArray[np.uint8]]:
    """Contract 3's cells of ``n`` windows from the stored ones (rows ascending, each window's
    cells ascending; the arrays are the caller's to spend): the drums plane's rows 0-7
    dropped, the controls plane moved there. A window's stored cells are then three ascending
    runs: those below the drums' rows 0-7, those above them and the controls; moved, the
    controls go between the other two, so each window's cells ascend again. Only the few
    cells from the drums plane on move (no sort)."""
    drop = (cells >= DRUM_ROWS_AT) & (cells < DRUM_ROWS_AT + CONTROL_CELLS)
    if drop.any():  # rare: a kit's keys 0-7
        keep = ~drop
        rows, cells, values = rows[keep], cells[keep], values[keep]
    upper = np.flatnonzero(cells >= DRUM_ROWS_AT)  # the drums' other rows, then the controls
    control = cells[upper] >= CONTROLS_AT
    if not control.any():
        return rows, cells, values
    row = rows[upper]
    n_drums = np.bincount(row[~control], minlength=n)
    n_controls = np.bincount(row[control], minlength=n)
    at = upper + np.where(control, -n_drums[row], n_controls[row])
    moved = cells[upper] - (control * PLANE).astype(np.uint16)
    cells[at], values[at] = moved, values[upper]
    return rows, cells, values


def audio_twins(notes: NotesStore, store: WindowStore, slakh_root: Path) -> npt.NDArray[np.int64]:
    """For every window of ``notes``, the window of the audio ``store`` cut from the same part
    of the same song at the same bar, or -1: where the audio teacher's answer exists for a
    notes window. Parts are matched through each rendered track's ``metadata.yaml`` (its song's
    hash, and each stem's source track, channel and program), which a collection rendered by
    ``kdtrain data`` has; real Slakh2100 stems have no source part, so they match nothing."""
    parts = {
        (song["sha1"], p["track"], p["channel"] - 1, p["program"]): (song["index"], k)
        for song in notes.songs
        for k, p in enumerate(song.get("parts", []))
    }
    stem_code: dict[tuple[str, str], int] = {}
    for track, meta in slakh.metadata(Path(slakh_root)).items():
        for stem, info in (meta.get("stems") or {}).items():
            key = (
                meta.get("UUID"),
                info.get("source_track"),
                info.get("source_channel"),
                info.get("program_num"),
            )
            if key in parts:
                song, part = parts[key]
                stem_code[(track, stem)] = song * 256 + part
    audio_code = np.array(
        [
            stem_code.get((s, t), -1)
            for s, t in zip(store.index["song"], store.index["stem"], strict=True)
        ],
        np.int64,
    )
    audio_code = np.where(audio_code >= 0, audio_code * 4096 + store.index["bar"], -1)
    notes_code = (
        notes.index["song"].astype(np.int64) * 256 + notes.index["part"]
    ) * 4096 + notes.index["bar"]
    order = np.argsort(audio_code)
    at = np.clip(np.searchsorted(audio_code[order], notes_code), 0, max(len(order) - 1, 0))
    found = audio_code[order][at] == notes_code if len(order) else np.zeros(len(notes_code), bool)
    return np.where(found, order[at] if len(order) else -1, -1)
