"""A copy of a notes store whose windows also carry the part's controllers, step by step: the
student's measurement of what :mod:`experiments.controllers` found for the floor.

    nice python experiments/controller_store.py SRC/notes DST/notes [--workers 2]

The copy has the same windows in the same order (so a run's floor answers, indexed by
window, stay valid) and the same cells, except that eight rows of the drums plane, keys 0-7
(below any General MIDI drum; 0.02 % of its cells there, which the copy drops), hold eight
binary states of the part's MIDI channel at each eighth-note step (on at a step if true when
it starts or at any event inside it):

    0 sustain pedal down (CC 64 >= 64)        4 expression moving (a CC 11 inside the step)
    1 pitch bent (|bend| >= 1/32 of range)    5 expression low (CC 11 < 96)
    2 pitch bend moving (an event inside)     6 breath or portamento (CC 2 > 0, CC 5/65 >= 64)
    3 modulation on (CC 1 > 0)                7 soft pedal or sostenuto (CC 66/67 >= 64)

It is a way to measure the lever with the shipped student unchanged (the drums plane is a
0/1 plane the encoder reads at every step), not a contract: a product builds these rows (or a
plane of their own) in a new contract version, in the daemon, replay and the store alike.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiments.controllers import channel_events  # noqa: E402
from live.contracts import V2  # noqa: E402
from live.errors import MidiFileError  # noqa: E402
from live.midifile import load_midi, read_song  # noqa: E402
from live.windows import WINDOW, window_bounds  # noqa: E402
from train.data.notes import COLUMNS, NotesStore  # noqa: E402
from train.files import atomic_write, read_log  # noqa: E402

_, PITCHES, STEPS = V2.input_shape
DRUMS = 4
#: The first flat cell index of the rows the copy writes, and one past the last.
LO, HI = DRUMS * PITCHES * STEPS, (DRUMS * PITCHES + 8) * STEPS
Events = dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]


def _active(
    ev: tuple[np.ndarray, np.ndarray] | None, s0: np.ndarray, s1: np.ndarray, on: np.ndarray | None
) -> np.ndarray:
    """Per step ``[s0, s1)``: whether the controller's state satisfies ``on`` at the step's
    start or at any event inside it (``on`` None: whether any event falls inside)."""
    if ev is None:
        return np.zeros(s0.shape, bool)
    ticks, values = ev
    lo = np.searchsorted(ticks, s0, side="left")
    hi = np.searchsorted(ticks, s1, side="left")
    if on is None:
        return hi > lo
    count = np.r_[0, np.cumsum(on)]
    held = np.searchsorted(ticks, s0, side="right") - 1  # the last event at or before s0
    at_start = (held >= 0) & on[np.maximum(held, 0)]
    return at_start | (count[hi] - count[lo] > 0)


def step_states(per: Events, s0: np.ndarray, s1: np.ndarray) -> np.ndarray:
    """The eight rows' states ``[8, *s0.shape]`` of one channel at steps ``[s0, s1)``."""

    def rule(name: str, test) -> np.ndarray:  # type: ignore[no-untyped-def]
        ev = per.get(name)
        return _active(ev, s0, s1, None if ev is None or test is None else test(ev[1]))

    return np.stack(
        [
            rule("pedal", lambda v: v >= 64 / 127),
            rule("bend", lambda v: v >= 1 / 32),
            rule("bend", None),
            rule("modulation", lambda v: v > 0),
            rule("expression", None),
            rule("expression", lambda v: v < 96 / 127),
            rule("breath", lambda v: v > 0) | rule("portamento", lambda v: v >= 64 / 127),
            rule("soft", lambda v: v >= 64 / 127),
        ]
    )


def song_cells(job: tuple[str, list[int], np.ndarray, np.ndarray, np.ndarray]) -> tuple:
    """The new cells of one song's windows: ``(window_of_cell, cell)``, or an error."""
    path, channels, part, bar, valid = job
    try:
        midi = load_midi(path)
        song = read_song(midi)
    except (MidiFileError, ValueError) as exc:
        return ("error", str(exc))
    events = channel_events(midi)
    start = {b: t0 for b, t0, _ in window_bounds(song.bars)}
    step = song.ticks_per_beat / WINDOW.steps_per_quarter
    t0 = np.array([start[b] for b in bar.tolist()], np.float64)[:, None]
    k = np.arange(STEPS)[None, :]
    s0, s1 = t0 + k * step, t0 + (k + 1) * step
    states = np.zeros((8, len(part), STEPS), bool)
    for ch in np.unique(np.asarray(channels)[part]).tolist():
        rows = np.flatnonzero(np.asarray(channels)[part] == ch)
        if ch in events and len(rows):
            states[:, rows] = step_states(events[ch], s0[rows], s1[rows])
    states &= k[None] < valid[None, :, None]  # nothing past the window's valid steps
    row, window, s = np.nonzero(states)
    cell = LO + row * STEPS + s
    return ("ok", window.astype(np.int64), cell.astype(np.uint16))


def merge(
    cells: np.ndarray, values: np.ndarray, counts: np.ndarray, window: np.ndarray, new: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One song's windows' cells (``counts`` per window, window after window) with the cells
    of the controller rows replaced by ``new`` (value 1, in window ``window``); each window's
    cells in ascending order. Returns the cells, values and counts per window."""
    old_window = np.repeat(np.arange(len(counts)), counts)
    keep = (cells < LO) | (cells >= HI)
    at = np.r_[old_window[keep], window]
    merged = np.r_[cells[keep], new.astype(cells.dtype)]
    vals = np.r_[values[keep], np.ones(len(new), values.dtype)]
    o = np.lexsort((merged, at))
    return merged[o], vals[o], np.bincount(at, minlength=len(counts))


def song_jobs(notes: NotesStore) -> tuple[list[tuple], np.ndarray]:
    """One :func:`song_cells` job per song with windows, in the store's order, and the bounds
    of each song's windows."""
    song = notes.index["song"]
    if np.any(np.diff(song) < 0):
        raise SystemExit("the store's windows are not in song order")
    bounds = np.r_[0, np.flatnonzero(np.diff(song)) + 1, len(song)]
    jobs = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        rec = notes.songs[int(song[a])]
        columns = (notes.index[k][a:b].astype(np.int64) for k in ("part", "bar", "valid_steps"))
        jobs.append((rec["file"], [q["channel"] - 1 for q in rec["parts"]], *columns))
    return jobs, bounds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    notes = NotesStore(args.src)
    args.dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(args.src / "params.json", args.dst / "params.json")
    jobs, bounds = song_jobs(notes)
    table = np.array(np.memmap(args.src / "windows.i32", np.int32, "r").reshape(len(notes), -1))
    n_col, lo_col, hi_col = (
        COLUMNS.index(c) for c in ("n_cells", "cell_offset_lo", "cell_offset_hi")
    )
    written, added, failed = 0, 0, []
    cells_per_song: dict[int, int] = {}
    t_start = time.monotonic()
    with (
        open(args.dst / "cells.u16", "wb") as cells_out,
        open(args.dst / "values.u8", "wb") as values_out,
        ProcessPoolExecutor(args.workers) as pool,
    ):
        results = pool.map(song_cells, jobs, chunksize=4)
        for i, (a, b, result) in enumerate(zip(bounds[:-1], bounds[1:], results, strict=True)):
            s = int(notes.index["song"][a])
            first, last = int(notes.offset[a]), int(notes.offset[b - 1] + table[b - 1, n_col])
            if result[0] != "ok":
                failed.append((notes.songs[s]["file"], result[1]))
                result = ("ok", np.zeros(0, np.int64), np.zeros(0, np.uint16))
            cells, values, counts = merge(
                np.asarray(notes.cells[first:last]),
                np.asarray(notes.values[first:last]),
                table[a:b, n_col],
                result[1],
                result[2],
            )
            offsets = written + np.r_[0, np.cumsum(counts[:-1])]
            table[a:b, n_col] = counts
            table[a:b, lo_col], table[a:b, hi_col] = offsets & 0x7FFFFFFF, offsets >> 31
            cells_out.write(cells.astype("<u2").tobytes())
            values_out.write(values.tobytes())
            written, added, cells_per_song[s] = (
                written + len(cells),
                added + len(result[2]),
                len(cells),
            )
            if i % 500 == 0:
                print(f"{i}/{len(jobs)} songs, {time.monotonic() - t_start:.0f} s", flush=True)
    table.astype("<i4").tofile(args.dst / "windows.i32")
    records = sorted(read_log(args.src / "songs.jsonl", "sha1").values(), key=lambda r: r["index"])
    with open(args.dst / "songs.jsonl", "w") as f:
        for rec in records:
            f.write(
                json.dumps(rec | {"cells": cells_per_song.get(rec["index"], rec.get("cells", 0))})
                + "\n"
            )
    meta = json.loads((args.src / "meta.json").read_text()) | {"cells": written}
    atomic_write(args.dst / "meta.json", json.dumps(meta, indent=1))
    print(json.dumps({"cells": written, "added": added, "songs_failed": failed}))


if __name__ == "__main__":
    main()
