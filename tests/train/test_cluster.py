"""The data build on a Dask cluster (``--cluster``, :mod:`train.data.workers`): a real local
cluster, its scheduler and worker processes talking TCP on the loopback, builds the process
pool's stores byte for byte, survives a worker killed mid-song, and resumes."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from live.testing.songs import TIMGM, Track, melody, write_song
from train.config import DataConfig
from train.data import notes
from train.data.build import build
from train.data.notes import build_notes, song_windows
from train.data.workers import EXTRA_HINT, cluster_problem, connect, map_songs
from train.errors import ConfigError, DataError

dask = pytest.importorskip("dask", reason="needs the kdlive[cluster] extra")
distributed = pytest.importorskip("distributed", reason="needs the kdlive[cluster] extra")


def files_of(folder: Path, *, leave_out: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in leave_out
    }


def songs(folder: Path, n: int) -> list[Path]:
    """``n`` small songs of two to four parts (and a file that is no MIDI, to be skipped)."""
    files = []
    for i in range(n):
        parts = [
            Track("Lead", [0, 65, 73, 25][i % 4], 0, melody(4, low=64, seed=i)),
            Track("Bass", 33, 1, melody(4, low=36, step=0.5, seed=100 + i)),
            Track("Pad", 48, 2, [(60 + i % 5, 4 * b, 4.0, 70) for b in range(4)]),
            Track("Kit", 0, 9, [(36, b, 0.1, 110) for b in range(16)]),
        ]
        files.append(write_song(folder / f"s{i:02d}.mid", parts[: 2 + i % 3]))
    (folder / "zz_garbage.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    return [*files, folder / "zz_garbage.mid"]


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    """A local cluster of two single-threaded worker processes, shared by the tests."""
    with connect("local:2") as client:
        assert client is not None
        yield client


def slow_song_windows(path: Path, sha1: str) -> notes.SongWindows:
    """:func:`song_windows`, half a second slower: a song is still in flight when a worker
    is killed."""
    time.sleep(0.5)
    return song_windows(path, sha1)


def crash_on_bad(path: Path, sha1: str) -> notes.SongWindows:
    """:func:`song_windows`, except that the garbage file kills the worker process."""
    if path.name.startswith("zz_garbage"):
        os._exit(3)
    return song_windows(path, sha1)


@pytest.mark.slow
def test_the_cluster_builds_the_pools_stores_byte_for_byte(
    fluidsynth: str, song_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rendered songs, the audio window store, the notes store, the summary and the skip
    report: the same bytes from ``--cluster local:2`` as from two pool processes (built in
    the same folder one after the other, since the stores record where their sources are).

    Rendered with the fluidsynth program, a fresh synth per stem: in-process libfluidsynth
    renders a file a little differently after another (the player's timing), so its audio
    depends on which songs a worker did before, in two pool runs as on a cluster."""
    monkeypatch.setenv("KDLIVE_FLUIDSYNTH", "program")  # the workers inherit it
    out = tmp_path / "out"
    config = DataConfig(out=out, midi=[song_folder], soundfonts=[TIMGM], workers=2)
    pool = build(config, notes=True)
    out.rename(tmp_path / "pool")
    cluster = build(replace(config, cluster="local:2"), notes=True)
    assert cluster == pool  # the data fingerprint is the summary's: where it ran is not in it
    assert pool["songs"] >= 3 and pool["notes"]["songs_with_windows"] >= 3
    assert files_of(out, leave_out=("config.json",)) == files_of(
        tmp_path / "pool", leave_out=("config.json",)
    )
    assert json.loads((out / "config.json").read_text())["cluster"] == "local:2"


@pytest.mark.slow
def test_a_worker_killed_mid_song_loses_nothing(
    client: distributed.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = songs(tmp_path / "midi", 8)
    build_notes(files, tmp_path / "pool", workers=2)
    pids = client.run(os.getpid)
    killed: list[str] = []

    def kill_one_busy_worker(stage: str, done: int, total: int) -> None:
        if done == 1:
            busy = [w for w, keys in client.processing().items() if keys]
            assert busy, "no song in flight to lose"
            os.kill(pids[busy[0]], signal.SIGKILL)
            killed.append(busy[0])

    monkeypatch.setattr(notes, "song_windows", slow_song_windows)
    build_notes(files, tmp_path / "cluster", client=client, progress=kill_one_busy_worker)
    assert killed and killed[0] not in client.scheduler_info()["workers"]
    assert files_of(tmp_path / "cluster") == files_of(tmp_path / "pool")
    skipped = [s for s in notes.NotesStore(tmp_path / "cluster").songs if not s["windows"]]
    assert [Path(s["file"]).name for s in skipped] == ["zz_garbage.mid"]


@pytest.mark.slow
def test_an_interrupted_cluster_build_resumes_from_what_was_written(
    client: distributed.Client, tmp_path: Path
) -> None:
    files = songs(tmp_path / "midi", 6)
    build_notes(files, tmp_path / "pool", workers=2)

    def stop_after_three(stage: str, done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_notes(files, tmp_path / "cluster", client=client, progress=stop_after_three)
    log = (tmp_path / "cluster" / "songs.jsonl").read_text().splitlines()
    assert len(log) == 3
    seen: list[int] = []
    build_notes(files, tmp_path / "cluster", client=client, progress=lambda s, d, t: seen.append(d))
    assert seen[0] == 3 and seen[-1] == len(files)
    assert files_of(tmp_path / "cluster") == files_of(tmp_path / "pool")


@pytest.mark.slow
def test_kdtrain_data_on_a_running_scheduler_by_address(
    fluidsynth: str, client: distributed.Client, tmp_path: Path
) -> None:
    """``kdtrain data --cluster tcp://...``: the module's cluster, reached by its address."""
    from typer.testing import CliRunner

    from train.cli import build_app

    midi = tmp_path / "midi"
    songs(midi, 2)
    address = client.scheduler_info()["address"]
    assert address.startswith("tcp://127.0.0.1:")
    args = ["data", "--out", str(tmp_path / "out"), "--midi", str(midi), "--soundfont", str(TIMGM)]
    result = CliRunner().invoke(build_app(), [*args, "--cluster", address])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["songs"] == 2 and summary["skipped"] == 1  # the garbage file


@pytest.mark.slow
def test_a_song_that_kills_every_worker_is_skipped_not_fatal(tmp_path: Path) -> None:
    """Past ``allowed-failures`` the scheduler gives the song up; the build records it as
    skipped and goes on."""
    files = songs(tmp_path / "midi", 2)
    jobs = [(p, f"{i:040x}") for i, p in enumerate(files)]
    # One task on the worker at a time (saturation 1): the worker that dies has no other song
    # to take with it, which Dask would count as a failure of that song too.
    once = {
        "distributed.scheduler.allowed-failures": 0,
        "distributed.scheduler.worker-saturation": 1.0,
    }
    with dask.config.set(once), connect("local:1") as one:
        got = list(map_songs(crash_on_bad, jobs, client=one, lost=notes._lost))
    assert [g.record["windows"] > 0 for g in got] == [True, True, False]
    reason = got[-1].record["skipped"][0]["reason"]
    assert "killed each of the 1 workers it ran on" in reason


def test_bad_cluster_values_and_the_missing_extra_say_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for good in (None, "local:2", "tcp://10.0.0.5:8786", "scheduler:8786"):
        assert cluster_problem(good) is None
    for bad in ("local:0", "local", "local:two", "somewhere"):
        assert "local:N" in str(cluster_problem(bad))
    with pytest.raises(ConfigError, match="tcp://host:8786"):
        DataConfig(cluster="local:0")
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(DataError, match=r"kdlive\[cluster\]"), connect("local:2"):
        pass
    assert "pip install 'kdlive[cluster]'" in EXTRA_HINT


def test_no_cluster_is_the_process_pool() -> None:
    """Without a client, map_songs is the pool (or this process): results in job order."""
    jobs = [(-i,) for i in range(7)]
    assert list(map_songs(abs, jobs, workers=2)) == list(map_songs(abs, jobs)) == list(range(7))
