"""Files that several processes may share: atomic writes, and one builder per data folder.

Several runs may share one ``--data`` folder (e.g. one per seed, started together), and any run
may be killed at any moment. Readers must never see half a file, and two builders must never
append to the same store. Every file the project writes whole goes through :func:`atomic_path`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary name beside ``path`` to write to; when the block ends without an
    error, rename it to ``path``, so a reader sees the old file or the new one, never a
    partial one. On an error the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: Path, content: str | bytes) -> None:
    """Write ``content`` (text as UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        if isinstance(content, str):
            tmp.write_text(content, encoding="utf-8")
        else:
            tmp.write_bytes(content)


def replace_dir(src: Path, dest: Path) -> None:
    """Put the finished folder ``src`` at ``dest``, replacing what was there, so that a reader
    never sees a half-written folder (the old one is moved aside, then deleted)."""
    dest = Path(dest)
    os.chmod(src, 0o755)  # mkdtemp makes folders private; what we publish is meant to be shared
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        os.replace(dest, old / dest.name)
    os.replace(src, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
            print(
                f"{folder}: another kdtrain is {what} here; waiting for it to finish",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_log(path: Path, key: str) -> dict[str, dict]:
    """The records a resume log (JSON lines, each written after its data) vouches for, by
    ``record[key]``. A last line cut short by a crash is dropped and cut from the file, so
    that item is redone and the log appends cleanly."""
    done: dict[str, dict] = {}
    if not path.exists():
        return done
    raw = path.read_bytes()
    good = 0
    for line in raw.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        done[record[key]] = record
        good += len(line)
    if good != len(raw):
        with open(path, "r+b") as fh:
            fh.truncate(good)
    return done
