"""Files that several processes may share: atomic writes, and one builder per data folder.

Several runs may share one ``--data`` folder (e.g. one per seed, started together). Readers
must never see half a file, and two builders must never append to the same store.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary name beside ``path``, then rename: a reader sees the old file or
    the new one, never a partial one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextmanager
def folder_lock(folder: Path, what: str = "building") -> Iterator[None]:
    """Hold ``FOLDER/.lock`` (an advisory ``flock``) for the block. Another process holding it
    is waited for, with one line on stderr saying so; the kernel releases the lock when its
    holder dies, so a killed run never leaves the folder locked."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{folder}: another kdtrain is {what} here; waiting for it to finish",
                  file=sys.stderr, flush=True)  # fmt: skip
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
