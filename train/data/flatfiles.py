"""Flat files that grow by appending, and the log that vouches for them: how both window
stores (``train.data.store``, ``train.data.notes``) write, resume and read.

A store is a folder of flat files (raw arrays, a CSV) and a JSON-lines log with one line per
finished unit (a stem, a song). Each unit's data is written and flushed first, its log line
after (:meth:`FlatFiles.commit`), so a crash never leaves a log line without its data.
Reopening cuts every file back to the sizes the log vouches for (:meth:`FlatFiles.open`), and
writing goes on from there. A store made with other settings (``params.json``) is not
resumed but started afresh (:func:`start_fresh_if_changed`): mixing windows made two ways
would be silent skew. Reading memory-maps the files (:func:`memmap`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import numpy as np

from train.files import atomic_write, read_log

PARAMS = "params.json"


def start_fresh_if_changed(folder: Path, params: dict, text: str) -> None:
    """Delete ``folder`` if its ``params.json`` says it was made with settings other than
    ``params``; then create it, with ``params.json`` holding ``text`` if it has none."""
    path = Path(folder) / PARAMS
    if path.exists() and json.loads(path.read_text()) != json.loads(json.dumps(params)):
        shutil.rmtree(folder)
    Path(folder).mkdir(parents=True, exist_ok=True)
    if not path.exists():
        atomic_write(path, text)


class FlatFiles:
    """The append side of a store: its files opened for appending, its log of done units.

    >>> files = FlatFiles(folder, log="done.jsonl", key="stem")   # reads the log
    >>> files.open({"rolls.u8": n * 2048})    # cut back to what the log vouches for
    >>> files.write("rolls.u8", rolls.tobytes())
    >>> files.commit({"stem": key, "windows": n})   # flush the data, then log the unit
    """

    def __init__(self, folder: Path, *, log: str, key: str) -> None:
        self.folder, self.log, self.key = Path(folder), log, key
        #: The log's records by ``key``, in the order they were written.
        self.done: dict[str, dict] = read_log(self.folder / log, key)
        self._files: dict[str, IO[bytes]] = {}

    def open(self, sizes: Mapping[str, int | None]) -> None:
        """Cut each file of ``sizes`` back to its size in bytes (None: as it is) and open it,
        and the log, for appending."""
        for name, size in sizes.items():
            path = self.folder / name
            if size is not None and path.exists() and path.stat().st_size != size:
                with open(path, "r+b") as f:
                    f.truncate(size)
        for name in (*sizes, self.log):
            self._files[name] = open(self.folder / name, "ab")  # noqa: SIM115

    def is_empty(self, name: str) -> bool:
        """Whether the open file ``name`` holds nothing yet."""
        return self._files[name].tell() == 0

    def write(self, name: str, data: bytes) -> None:
        """Append ``data`` to the file ``name`` (logged by the next :meth:`commit`)."""
        self._files[name].write(data)

    def commit(self, record: dict) -> None:
        """Flush every file, then log ``record`` (data first: a crash never lies)."""
        for name, f in self._files.items():
            if name != self.log:
                f.flush()
        self._files[self.log].write((json.dumps(record) + "\n").encode())
        self._files[self.log].flush()
        self.done[record[self.key]] = record

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}


def memmap(path: Path, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    """The flat file ``path`` as a read-only array ``[*shape]`` of ``dtype`` (zeros, and no
    file needed, when the shape is empty)."""
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=shape)
