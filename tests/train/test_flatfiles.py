"""The append/truncate/memory-map helper both window stores write through."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from train.data.flatfiles import FlatFiles, memmap, start_fresh_if_changed


def _append(folder: Path, key: str, values: list[int]) -> None:
    files = FlatFiles(folder, log="done.jsonl", key="unit")
    n = sum(r["n"] for r in files.done.values())
    files.open({"data.i32": 4 * n})
    files.write("data.i32", np.array(values, "<i4").tobytes())
    files.commit({"unit": key, "n": len(values)})
    files.close()


def test_units_append_and_read_back_as_a_memory_map(tmp_path: Path) -> None:
    _append(tmp_path, "a", [1, 2, 3])
    _append(tmp_path, "b", [4, 5])
    assert list(FlatFiles(tmp_path, log="done.jsonl", key="unit").done) == ["a", "b"]
    assert memmap(tmp_path / "data.i32", np.dtype("<i4").type, (5,)).tolist() == [1, 2, 3, 4, 5]


def test_reopening_cuts_data_back_to_what_the_log_vouches_for(tmp_path: Path) -> None:
    """A crash after a unit's data but before its log line (and one mid-line): reopening
    drops both, and appending goes on from the last logged unit."""
    _append(tmp_path, "a", [1, 2, 3])
    files = FlatFiles(tmp_path, log="done.jsonl", key="unit")
    files.open({"data.i32": 12})
    files.write("data.i32", np.array([9, 9], "<i4").tobytes())  # data, then the crash
    files.close()
    with open(tmp_path / "done.jsonl", "ab") as f:
        f.write(b'{"unit": "half')  # a log line cut short
    assert (tmp_path / "data.i32").stat().st_size == 20
    _append(tmp_path, "b", [4])
    assert memmap(tmp_path / "data.i32", np.dtype("<i4").type, (4,)).tolist() == [1, 2, 3, 4]
    lines = (tmp_path / "done.jsonl").read_text().splitlines()
    assert [json.loads(line)["unit"] for line in lines] == ["a", "b"]


def test_a_file_opened_with_no_size_is_kept_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "index.csv").write_bytes(b"head\nrow\n")
    files = FlatFiles(tmp_path, log="done.jsonl", key="unit")
    files.open({"index.csv": None})
    assert not files.is_empty("index.csv")
    files.close()
    assert (tmp_path / "index.csv").read_bytes() == b"head\nrow\n"


def test_other_params_start_the_store_afresh(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    start_fresh_if_changed(folder, {"hop": 1}, json.dumps({"hop": 1}))
    _append(folder, "a", [1])
    start_fresh_if_changed(folder, {"hop": 1}, "ignored: params.json exists")  # same: kept
    assert (folder / "data.i32").exists() and json.loads((folder / "params.json").read_text())
    start_fresh_if_changed(folder, {"hop": 2}, json.dumps({"hop": 2}, indent=1))
    assert sorted(p.name for p in folder.iterdir()) == ["params.json"]
    assert (folder / "params.json").read_text() == json.dumps({"hop": 2}, indent=1)


def test_an_empty_shape_needs_no_file(tmp_path: Path) -> None:
    empty = memmap(tmp_path / "missing.u8", np.uint8, (0, 128, 16))
    assert empty.shape == (0, 128, 16) and empty.dtype == np.uint8
