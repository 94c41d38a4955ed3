"""Builders for tests and benchmarks that need the train extra: Slakh-layout tracks (soundfile,
yaml) and checkpoints of untrained models (torch), as ``kdexport bundle`` takes them. The MIDI
builders they use are in :mod:`live.testing.songs`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import yaml
from torch import nn

from live.testing.songs import Track, melody, write_song
from train import checkpoints


def write_slakh_track(
    folder: Path,
    stems: dict[str, dict],
    *,
    sample_rate: int = 16000,
    bars: int = 4,
    audio: str = "wav",
) -> Path:
    """A Slakh-layout track: metadata.yaml, MIDI/Snn.mid and a tone per stem (if rendered)."""
    (folder / "MIDI").mkdir(parents=True, exist_ok=True)
    (folder / "stems").mkdir(exist_ok=True)
    seconds = bars * 2.0 + 0.5  # 4/4 at 120 BPM
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    for i, (stem_id, info) in enumerate(stems.items()):
        program = int(info.get("program_num", 0))
        write_song(
            folder / "MIDI" / f"{stem_id}.mid",
            [
                Track(
                    stem_id,
                    program if program < 128 else 0,
                    9 if info.get("is_drum") else 0,
                    melody(bars, seed=i),
                )
            ],
        )
        if info.pop("_audio", True):
            y = 0.3 * np.sin(2 * np.pi * (220 + 50 * i) * t)
            soundfile.write(folder / "stems" / f"{stem_id}.{audio}", y, sample_rate)
    meta = {"UUID": folder.name, "audio_dir": "stems", "midi_dir": "MIDI", "stems": stems}
    (folder / "metadata.yaml").write_text(yaml.safe_dump(meta))
    return folder


def slakh_stem(
    inst_class: str, program: int, *, rendered: bool = True, drum: bool = False, audio: bool = True
) -> dict:
    """One stem of a Slakh ``metadata.yaml``, for :func:`write_slakh_track` (``audio``: write
    its audio file; ``rendered``: what the metadata says)."""
    return {
        "inst_class": inst_class,
        "program_num": program,
        "is_drum": drum,
        "audio_rendered": rendered,
        "plugin_name": "test.nkm",
        "_audio": audio,
    }


def save_checkpoint(model: nn.Module, path: Path, *, preset: str, role: str = "student") -> Path:
    """``model`` (in eval mode) saved to ``path`` as a checkpoint of ``preset``, with the
    fingerprint ``"test"`` and no history: what ``kdexport bundle`` reads."""
    blob = checkpoints.checkpoint(
        model.eval(),
        role=role,
        fingerprint="test",
        config={"model": {"preset": preset}},
        history=[],
    )
    checkpoints.save(blob, path)
    return path
