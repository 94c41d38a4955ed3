"""`kdtrain data`: a MIDI collection or Slakh2100 -> Slakh layout -> window store + summary.

Stages (each resumable):

1. ``--midi DIR`` (or the demo corpus): render every kept track once into ``OUT/slakh/``;
   ``--slakh DIR`` skips this and reads the given folder.
2. Read the Slakh layout, cut each stem into windows (rolls + log-mel) into ``OUT/windows/``.
3. ``OUT/summary.json``, ``OUT/skipped.jsonl``, ``OUT/config.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from live.contract import CONTRACT_VERSION
from live.errors import MidiFileError
from live.taxonomy import CLASSES
from train.config import DataConfig, to_json
from train.data import collection, slakh
from train.data.notes import build_notes
from train.data.render import fluidsynth_path
from train.data.slakh import StemRef
from train.data.soundfonts import find_soundfonts
from train.data.stems import stem_windows
from train.data.store import StemWindows, StoreWriter, WindowStore
from train.data.workers import connect, map_songs
from train.errors import DataError
from train.files import atomic_write, folder_lock

if TYPE_CHECKING:
    from distributed import Client

#: Real MIDI a package manager installs (Debian): ~95 songs of game music, all General MIDI.
DEMO_DIRS = (
    Path("/usr/share/games/openttd/baseset/openmsx"),  # openttd-openmsx
    Path("/usr/share/games/simutrans/music"),  # simutrans-data
    Path("/usr/share/planetblupi/music"),  # planetblupi-music-midi
)
DEMO_HINT = (
    "the demo corpus is not installed: apt-get install openttd-openmsx simutrans-data "
    "planetblupi-music-midi (Debian/Ubuntu), or pass --midi DIR (any folder of General MIDI "
    "files) or --slakh DIR"
)

Progress = Callable[[str, int, int], None]  # (stage, done, total)


def demo_dirs() -> list[Path]:
    """The installed demo-corpus folders, or :class:`DataError` saying how to install them."""
    found = [d for d in DEMO_DIRS if d.is_dir()]
    if not found:
        raise DataError(DEMO_HINT)
    return found


def build(config: DataConfig, progress: Progress | None = None, *, notes: bool = False) -> dict:
    """Run the whole data pipeline; returns the summary (also written to ``OUT/summary.json``).
    With ``notes``, also the notes-only store of contract 2 (``OUT/notes``, see
    :mod:`train.data.notes`), whose summary is the result's ``"notes"``. Songs and stems are
    done in ``config.workers`` processes, or on the Dask cluster ``config.cluster`` names
    (:mod:`train.data.workers`), which builds the same bytes."""
    out = Path(config.out)
    # Runs that share a data folder (one per seed, started together) build it one at a time:
    # the first builds, the others wait and then find every song and stem done.
    with folder_lock(out), connect(config.cluster) as client:
        summary = _build(config, out, progress, client)
        if notes:
            summary["notes"] = build_notes(
                notes_files(config),
                out / "notes",
                workers=config.workers,
                client=client,
                progress=progress,
            )
        return summary


def notes_files(config: DataConfig) -> list[Path]:
    """The MIDI files of the notes-only store: the collection's (or each Slakh track's
    ``all_src.mid``), then ``notes_midi``'s."""
    if config.slakh is not None:
        tracks, _ = slakh.find_tracks(Path(config.slakh))
        files = [
            folder / "all_src.mid" for folder, _ in tracks if (folder / "all_src.mid").is_file()
        ]
    else:
        files = collection.find_midi_files(config.midi or demo_dirs())
    return files + collection.find_midi_files(config.notes_midi)


def _build(config: DataConfig, out: Path, progress: Progress | None, client: Client | None) -> dict:
    skipped: list[dict] = []
    silent_tracks = 0
    if config.slakh is not None:
        root = Path(config.slakh)
    else:
        root = out / "slakh"
        skipped += _render(config, root, progress, client)
        silent_tracks = sum(1 for r in skipped if r.get("silent_track"))
    stems, bad = slakh.scan(root)
    skipped += bad
    if config.limit_songs is not None and config.slakh is not None:
        keep = sorted({s.song for s in stems})[: config.limit_songs]
        stems = [s for s in stems if s.song in set(keep)]
    if not stems:
        raise DataError(f"no usable stems found under {root}: see {out / 'skipped.jsonl'}")
    skipped += _cut(config, root, stems, out / "windows", progress, client)
    return _finish(config, out, stems, skipped, silent_tracks)


def _render(
    config: DataConfig, root: Path, progress: Progress | None, client: Client | None
) -> list[dict]:
    fluidsynth_path()  # fail early, with the install hint, before any work
    soundfonts = find_soundfonts(config.soundfonts)
    files = collection.find_midi_files(config.midi or demo_dirs())
    if not files:
        raise DataError(f"no MIDI files (.mid, .midi) under {', '.join(map(str, config.midi))}")
    jobs, skipped = collection.plan_jobs(files, root, limit_songs=config.limit_songs)
    done = 0

    def tick(_job: collection.SongJob) -> None:
        nonlocal done
        done += 1
        if progress:
            progress("render", done, len(jobs))

    if progress:
        progress("render", 0, len(jobs))
    skipped += collection.render_collection(
        jobs, root, soundfonts, workers=config.workers, client=client, on_song=tick
    )
    return skipped


def _cut(
    config: DataConfig,
    root: Path,
    stems: list[StemRef],
    folder: Path,
    progress: Progress | None,
    client: Client | None,
) -> list[dict]:
    """Windows of every stem not yet in the store, appended in a fixed order (longest stem
    first), wherever they were cut."""
    skipped: list[dict] = []
    params = {
        "source": str(Path(root).resolve()),
        "train_hop_bars": config.train_hop_bars,
        "eval_hop_bars": config.eval_hop_bars,
        "silence_db": config.silence_db,
    }
    with StoreWriter(folder, params) as writer:
        todo = [s for s in stems if s.key not in writer.done]
        done = len(stems) - len(todo)
        if progress:
            progress("windows", done, len(stems))
        for stem, result in _map_stems(config, todo, client):
            if isinstance(result, StemWindows):
                writer.append(result)
            else:
                skipped.append({"file": str(stem.midi_path), "reason": result})
            done += 1
            if progress:
                progress("windows", done, len(stems))
    return skipped


def _one_stem(stem: StemRef, hop_bars: int, silence_db: float) -> StemWindows | str:
    try:
        return stem_windows(stem, hop_bars=hop_bars, silence_db=silence_db)
    except (MidiFileError, ValueError, OSError, RuntimeError) as exc:
        return f"unusable stem ({exc})"


def _lost_stem(job: tuple[StemRef, int, float], reason: str) -> str:
    return f"unusable stem (cutting it {reason})"


def _map_stems(
    config: DataConfig, stems: list[StemRef], client: Client | None
) -> Iterator[tuple[StemRef, StemWindows | str]]:
    def hop(stem: StemRef) -> int:
        return config.train_hop_bars if stem.split == "train" else config.eval_hop_bars

    order = sorted(stems, key=lambda s: -s.audio_path.stat().st_size)
    if client is None and config.workers > 1:
        _warm_up_features()
    jobs = [(s, hop(s), config.silence_db) for s in order]
    cut = map_songs(_one_stem, jobs, workers=config.workers, client=client, lost=_lost_stem)
    yield from zip(order, cut, strict=True)


def _warm_up_features() -> None:
    """Import librosa's lazily loaded STFT code once in the parent, so the forked workers do
    not each pay for it (seconds per worker)."""
    import numpy as np

    from train.data.features import log_mel

    log_mel(np.zeros(4096, np.float32))


def _finish(
    config: DataConfig, out: Path, stems: list[StemRef], skipped: list[dict], silent_tracks: int
) -> dict:
    store = WindowStore(out / "windows")
    windows = {split: dict.fromkeys(CLASSES, 0) for split in slakh.SPLITS}
    for split, label in zip(store.index["split"], store.index["class"], strict=True):
        windows[split][label] += 1
    done = _store_log(out / "windows")
    summary = {
        "songs": len(set(store.index["song"])),
        "stems": len(set(zip(store.index["song"], store.index["stem"], strict=True))),
        "skipped": len(skipped),
        "windows": windows,
        "silent_tracks": silent_tracks,
        "silent_windows": sum(d.get("silent", 0) for d in done),
        "windows_past_audio_end": sum(d.get("past_end", 0) for d in done),
        "stems_found": len(stems),
        "contract_version": CONTRACT_VERSION,
    }
    atomic_write(out / "summary.json", json.dumps(summary, indent=1))
    atomic_write(out / "skipped.jsonl", "".join(json.dumps(r) + "\n" for r in skipped))
    atomic_write(
        out / "config.json",
        json.dumps(to_json(config) | {"contract_version": CONTRACT_VERSION}, indent=1),
    )
    return summary


def _store_log(folder: Path) -> list[dict]:
    path = folder / "done.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
