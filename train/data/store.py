"""The window store: flat binary files written as stems stream in, memory-mapped for training.

Layout of ``OUT/windows/``::

    rolls.u8     uint8   [N, 128, 16]   piano rolls from the contract's quantiser, 0/1
    mel.f16      float16 [F, 128]       log-mel frames (dB), time-major, stems one after another
    index.csv    one row per window: song, stem, split, class, program, soundfont, bar,
                 start/end (seconds and ticks), tempo, and the window's frames in mel.f16
    done.jsonl   one line per finished stem, written after its data: the resume log

Window ``i``'s mel is ``mel[mel_offset[i] : mel_offset[i] + mel_frames[i]].T`` ([128, frames],
unpadded). Memory stays bounded whatever the corpus size: each stem is appended and flushed.
An interrupted build resumes: files are cut back to what ``done.jsonl`` vouches for
(:mod:`train.data.flatfiles`).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from live.contract import CONTRACT_VERSION, MEL, WINDOW
from train.data.flatfiles import FlatFiles, memmap, start_fresh_if_changed
from train.errors import DataError
from train.files import atomic_write

COLUMNS = (
    "window",
    "song",
    "stem",
    "split",
    "class",
    "program",
    "soundfont",
    "bar",
    "start_sec",
    "end_sec",
    "start_tick",
    "end_tick",
    "valid_steps",
    "tempo_bpm",
    "mel_offset",
    "mel_frames",
)
ROLL_BYTES = WINDOW.n_pitches * WINDOW.n_steps
FRAME_BYTES = MEL.n_mels * 2


@dataclass
class StemWindows:
    """What one stem contributes: its windows and the mel frames they point into."""

    key: str
    rolls: npt.NDArray[np.uint8]  # [n, 128, 16]
    mel: npt.NDArray[np.float16]  # [frames, 128]; rows' mel_offset are relative to it
    rows: list[dict]
    silent: int = 0  # windows dropped because the audio is silent
    past_end: int = 0  # windows dropped because they run past the end of the audio


class StoreWriter:
    """Appends stems to a store; reopening an interrupted store resumes where it stopped."""

    def __init__(self, folder: Path, params: dict | None = None) -> None:
        self.folder = Path(folder)
        # A store built with other settings (hop, silence threshold, contract, source) is
        # not resumed but rebuilt: mixing windows made two ways would be silent skew.
        params = {"contract_version": CONTRACT_VERSION} | (params or {})
        start_fresh_if_changed(self.folder, params, json.dumps(params, indent=1, sort_keys=True))
        self.files = FlatFiles(self.folder, log="done.jsonl", key="stem")
        self.done = self.files.done
        self.n_windows = sum(d["windows"] for d in self.done.values())
        self.n_frames = sum(d["frames"] for d in self.done.values())
        self._truncate_index()
        sizes = {"rolls.u8": self.n_windows * ROLL_BYTES, "mel.f16": self.n_frames * FRAME_BYTES}
        self.files.open(sizes | {"index.csv": None})
        if self.files.is_empty("index.csv"):
            self.files.write("index.csv", ",".join(COLUMNS).encode() + b"\n")

    def _truncate_index(self) -> None:
        """Cut ``index.csv`` back to its header and the windows ``done.jsonl`` records."""
        index = self.folder / "index.csv"
        if index.exists():
            lines = index.read_text().splitlines(keepends=True)
            if len(lines) != self.n_windows + 1:
                index.write_text("".join(lines[: self.n_windows + 1]))

    def append(self, stem: StemWindows) -> None:
        """Write one stem's windows, then log it as done (data first: a crash never lies)."""
        n = len(stem.rows)
        self.files.write("rolls.u8", np.ascontiguousarray(stem.rolls, np.uint8).tobytes())
        self.files.write("mel.f16", np.ascontiguousarray(stem.mel, np.float16).tobytes())
        text = io.StringIO()
        rows = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
        for i, row in enumerate(stem.rows):
            rows.writerow(
                row
                | {"window": self.n_windows + i, "mel_offset": self.n_frames + row["mel_offset"]}
            )
        self.files.write("index.csv", text.getvalue().encode())
        record = {"stem": stem.key, "windows": n, "frames": int(stem.mel.shape[0])}
        self.files.commit(record | {"silent": stem.silent, "past_end": stem.past_end})
        self.n_windows += n
        self.n_frames += int(stem.mel.shape[0])

    def close(self) -> None:
        self.files.close()
        meta = {
            "contract_version": CONTRACT_VERSION,
            "windows": self.n_windows,
            "frames": self.n_frames,
            "roll_shape": [WINDOW.n_pitches, WINDOW.n_steps],
            "mel": {
                "n_mels": MEL.n_mels,
                "sample_rate": MEL.sample_rate,
                "n_fft": MEL.n_fft,
                "hop_length": MEL.hop_length,
                "unit": "dB",
            },
        }
        atomic_write(self.folder / "meta.json", json.dumps(meta, indent=1))

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WindowStore:
    """Read side: the index as numpy columns, rolls and mel memory-mapped (nothing loaded)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.exists():
            raise DataError(f"no window store at {self.folder}: run `kdtrain data --out ...` first")
        meta = json.loads(meta_path.read_text())
        self.n = int(meta["windows"])
        self.index = _read_index(self.folder / "index.csv")
        shape = (self.n, WINDOW.n_pitches, WINDOW.n_steps)
        self.rolls = memmap(self.folder / "rolls.u8", np.uint8, shape)
        self.mel_frames = memmap(self.folder / "mel.f16", np.float16, (meta["frames"], MEL.n_mels))

    def __len__(self) -> int:
        return self.n

    def mel(self, i: int) -> npt.NDArray[np.float16]:
        """Log-mel of window ``i``: ``[n_mels, frames]`` (unpadded)."""
        off, n = int(self.index["mel_offset"][i]), int(self.index["mel_frames"][i])
        return self.mel_frames[off : off + n].T

    def split(self, name: str) -> npt.NDArray[np.int64]:
        """Indices of the windows in split ``name``."""
        return np.flatnonzero(self.index["split"] == name)


_NUMERIC = {
    "window",
    "program",
    "bar",
    "start_tick",
    "end_tick",
    "valid_steps",
    "mel_offset",
    "mel_frames",
}
_FLOAT = {"start_sec", "end_sec", "tempo_bpm"}


def _read_index(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.reader(io.StringIO(f.read())))
    header, body = rows[0], rows[1:]
    columns = list(zip(*body, strict=True)) if body else [() for _ in header]
    out: dict[str, np.ndarray] = {}
    for name, values in zip(header, columns, strict=True):
        if name in _NUMERIC:
            out[name] = np.array(values, dtype=np.int64)
        elif name in _FLOAT:
            out[name] = np.array(values, dtype=np.float64)
        else:
            out[name] = np.array(values, dtype=object)
    return out
