"""Read a Slakh2100-layout folder: the real data set, BabySlakh, or a rendered MIDI collection.

Layouts:

- redux: ``ROOT/{train,validation,test,omitted}/TrackNNNNN/`` (the split is the folder;
  ``omitted`` holds Slakh's duplicate songs and is not used);
- original (flat): ``ROOT/TrackNNNNN/``, split by track number as Slakh2100 defines it
  (1-1500 train, 1501-1875 validation, 1876-2100 test).

A stem is kept when it is not a drum, its ``inst_class`` is in the task, its MIDI file exists and
it has audio: ``audio_rendered: true``, or its stem file present where a copy marks it false (as
BabySlakh's metadata does).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from live.taxonomy import class_of_slakh
from train.errors import DataError

SPLITS = ("train", "validation", "test")
AUDIO_SUFFIXES = (".flac", ".wav")


@dataclass(frozen=True)
class StemRef:
    """One usable stem: the pair (MIDI part, audio) and its labels."""

    song: str  # TrackNNNNN
    stem: str  # Snn
    split: str
    program: int
    label: str  # one of live.taxonomy.CLASSES
    soundfont: str  # Slakh's plugin_name: the patch or soundfont that rendered it
    midi_path: Path
    audio_path: Path

    @property
    def key(self) -> str:
        return f"{self.song}/{self.stem}"


def original_split(track_number: int) -> str:
    """Slakh2100's split of a track in the original (flat) numbering."""
    if track_number <= 1500:
        return "train"
    return "validation" if track_number <= 1875 else "test"


def find_tracks(root: Path) -> tuple[list[tuple[Path, str]], list[dict]]:
    """``(track folder, split)`` for every song under ``root``, and skip records."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Slakh folder not found: {root} (pass the folder that holds the tracks)")
    if (root / "metadata.yaml").is_file():  # a single track folder
        return [(root, original_split(track_number(root)))], []
    redux = [s for s in (*SPLITS, "omitted") if (root / s).is_dir()]
    tracks: list[tuple[Path, str]] = []
    skipped: list[dict] = []
    if redux:
        for split in redux:
            for folder in _track_dirs(root / split):
                if split == "omitted":
                    skipped.append({"file": str(folder), "reason": "in Slakh's omitted split"})
                else:
                    tracks.append((folder, split))
    else:
        tracks = [(folder, original_split(track_number(folder))) for folder in _track_dirs(root)]
    if not tracks:
        raise DataError(
            f"no Slakh tracks under {root}: expected TrackNNNNN folders, directly or in "
            "train/ validation/ test/"
        )
    return tracks, skipped


def _track_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def track_number(folder: Path) -> int:
    """The number in a track folder's name (``Track00042``: 42)."""
    digits = "".join(c for c in folder.name if c.isdigit())
    return int(digits) if digits else 0


def read_track(folder: Path, split: str) -> tuple[list[StemRef], list[dict]]:
    """The usable stems of one track folder, and a skip record for each unusable one."""
    meta_path = folder / "metadata.yaml"
    if not meta_path.is_file():
        return [], [{"file": str(folder), "reason": "no metadata.yaml: not a Slakh track"}]
    try:
        meta = yaml.safe_load(meta_path.read_text()) or {}
    except yaml.YAMLError as exc:
        return [], [{"file": str(meta_path), "reason": f"unreadable metadata.yaml ({exc})"}]
    midi_dir = folder / Path(str(meta.get("midi_dir") or "MIDI")).name
    audio_dir = folder / Path(str(meta.get("audio_dir") or "stems")).name
    stems: list[StemRef] = []
    skipped: list[dict] = []
    for stem_id, info in sorted((meta.get("stems") or {}).items()):
        info = info or {}
        label = class_of_slakh(str(info.get("inst_class", "")), is_drum=bool(info.get("is_drum")))
        if label is None:
            continue  # drums and classes outside the task: not skipped, just not ours
        where = f"{folder}/{stem_id}"
        audio = _audio_file(audio_dir, stem_id)
        midi = midi_dir / f"{stem_id}.mid"
        if audio is None:
            reason = (
                "no audio (audio_rendered: false)"
                if not info.get("audio_rendered")
                else ("stem audio file missing")
            )
            skipped.append({"file": where, "reason": reason})
        elif not midi.is_file():
            skipped.append({"file": where, "reason": "stem MIDI file missing"})
        else:
            stems.append(
                StemRef(
                    song=folder.name,
                    stem=stem_id,
                    split=split,
                    program=int(info.get("program_num", -1)),
                    label=label,
                    soundfont=str(info.get("plugin_name", "")),
                    midi_path=midi,
                    audio_path=audio,
                )
            )
    return stems, skipped


def _audio_file(audio_dir: Path, stem_id: str) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        path = audio_dir / f"{stem_id}{suffix}"
        if path.is_file():
            return path
    return None


def scan(root: Path) -> tuple[list[StemRef], list[dict]]:
    """Every usable stem under a Slakh-layout ``root``, and skip records for the rest."""
    tracks, skipped = find_tracks(root)
    stems: list[StemRef] = []
    for folder, split in tracks:
        found, bad = read_track(folder, split)
        stems += found
        skipped += bad
    return stems, skipped


def metadata(root: Path) -> dict[str, dict]:
    """Each track folder's ``metadata.yaml`` under ``root``, by folder name (``TrackNNNNN``);
    folders without a readable one are left out."""
    out: dict[str, dict] = {}
    for folder, _ in find_tracks(root)[0]:
        try:
            meta = yaml.safe_load((folder / "metadata.yaml").read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        out[folder.name] = meta
    return out
