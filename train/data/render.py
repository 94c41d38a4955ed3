"""Render one MIDI file with FluidSynth to mono float audio at the contract's sample rate."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from live.contract import MEL
from train.data import fluid
from train.errors import DataError, MissingToolError

FLUIDSYNTH_HINT = (
    "FluidSynth is not installed: apt-get install fluidsynth (Debian/Ubuntu), "
    "brew install fluid-synth (macOS), or put fluidsynth on PATH"
)
#: Synth gain. FluidSynth's default (0.2) leaves sparse parts very quiet; we render in float so
#: dense parts cannot clip, and the stem writer limits the peak.
GAIN = 0.5


def fluidsynth_path() -> str:
    """Path of the fluidsynth program, or :class:`MissingToolError` with how to install it."""
    path = shutil.which("fluidsynth")
    if path is None:
        raise MissingToolError(FLUIDSYNTH_HINT)
    return path


def fluidsynth_command(
    midi: Path, soundfont: Path, out: Path, *, sample_rate: int = MEL.sample_rate
) -> list[str]:
    """The command line that renders ``midi`` to raw float32 stereo at ``sample_rate``.

    No reverb or chorus (a dry stem, and faster); samples of sf3 banks are decoded on demand,
    which halves their load time.
    """
    return [
        fluidsynth_path(),
        "-n",
        "-i",
        "-q",
        "-R",
        "0",
        "-C",
        "0",
        "-o",
        "synth.dynamic-sample-loading=1",
        "-g",
        str(GAIN),
        "-r",
        str(sample_rate),
        "-T",
        "raw",
        "-O",
        "float",
        "-E",
        "little",
        "-F",
        str(out),
        str(soundfont),
        str(midi),
    ]


def render(
    midi: Path, soundfont: Path, *, sample_rate: int = MEL.sample_rate, timeout: float = 600
) -> npt.NDArray[np.float32]:
    """Render a whole MIDI file once: ``y`` [shape=(n,)] float32 mono at ``sample_rate``.

    In-process through libfluidsynth when it loads (the soundfont is loaded once per worker),
    else with the fluidsynth program. ``KDLIVE_FLUIDSYNTH=program`` forces the program.
    """
    fluidsynth_path()  # the program is the documented requirement; it brings the library too
    if os.environ.get("KDLIVE_FLUIDSYNTH") != "program" and fluid.library() is not None:
        try:
            synth = fluid.synth_for(soundfont, sample_rate=sample_rate, gain=GAIN)
            return synth.render(midi)
        except OSError as exc:
            raise DataError(f"FluidSynth failed on {midi.name}: {exc}") from exc
    return render_with_program(midi, soundfont, sample_rate=sample_rate, timeout=timeout)


def render_with_program(
    midi: Path, soundfont: Path, *, sample_rate: int = MEL.sample_rate, timeout: float = 600
) -> npt.NDArray[np.float32]:
    """Render with one run of the fluidsynth program (pays the soundfont load every time)."""
    with tempfile.TemporaryDirectory(prefix="kdlive-render-") as tmp:
        out = Path(tmp) / "out.raw"
        cmd = fluidsynth_command(midi, soundfont, out, sample_rate=sample_rate)
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise DataError(f"FluidSynth took over {timeout:.0f} s on {midi.name}") from exc
        if proc.returncode != 0 or not out.exists():
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise DataError(
                f"FluidSynth failed on {midi.name}: {err[-1] if err else proc.returncode}"
            )
        stereo = np.fromfile(out, dtype="<f4")
    return stereo[: stereo.size // 2 * 2].reshape(-1, 2).mean(axis=1, dtype=np.float32)
