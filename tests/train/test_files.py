"""Files shared between processes: atomic writes and the data folder's lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from train.files import atomic_path, atomic_write, folder_lock

HOLD = """
import sys, time
from train.files import folder_lock
with folder_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(folder: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_holder_waits_for_the_first(tmp_path: Path, capsys) -> None:
    proc = _holder(tmp_path, 1.0)
    start = time.monotonic()
    with folder_lock(tmp_path):
        waited = time.monotonic() - start
    assert waited > 0.8  # the holder slept 1 s with the lock after saying it held it
    assert "another kdtrain is building here; waiting" in capsys.readouterr().err
    proc.wait()


def test_a_killed_holder_leaves_the_folder_unlocked(tmp_path: Path) -> None:
    proc = _holder(tmp_path, 60.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    start = time.monotonic()
    with folder_lock(tmp_path):
        pass
    assert time.monotonic() - start < 5


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text("old")
    atomic_write(path, '{"new": 1}')
    assert path.read_text() == '{"new": 1}'
    atomic_write(path, b"\x00bytes")
    assert path.read_bytes() == b"\x00bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "teacher.pt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher.pt"]
