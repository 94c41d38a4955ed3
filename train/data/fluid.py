"""In-process FluidSynth (libfluidsynth through ctypes): load each soundfont once per worker.

The FluidSynth program spends most of a short render loading its soundfont (longest for a
compressed sf3 such as MuseScore General's), and a data set renders thousands of
tracks. This renderer keeps each soundfont loaded once in each worker process and renders
each MIDI file with FluidSynth's own MIDI player, timed by the sample clock, exactly as the
program's fast file renderer (``-F``) does. Where the library cannot be loaded the pipeline
falls back to the program (:mod:`train.render`).

Each file gets a new synth that borrows the loaded soundfont: a synth that has played before
renders a file otherwise (its sample clock and its 64-sample block go on from the last file, so
the player's events fall elsewhere), which made a stem depend on the files its worker happened
to render before it. A file's audio is now the same whatever was rendered before it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

FLUID_OK = 0
FLUID_PLAYER_PLAYING = 1
FLUID_WARN = 2  # fluid_log_level
BLOCK = 4096  # samples per write call; FluidSynth still runs its player every 64 samples
TAIL_SECONDS = 1.0  # let the last notes release after the player is done


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """libfluidsynth, or None where it is not installed."""
    for name in ("fluidsynth", "libfluidsynth.so.3", "libfluidsynth-3", "libfluidsynth.3.dylib"):
        path = ctypes.util.find_library(name) or name
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        _declare(lib)
        return lib
    return None


def _declare(lib: ctypes.CDLL) -> None:
    p, i, d, s = ctypes.c_void_p, ctypes.c_int, ctypes.c_double, ctypes.c_char_p
    for name, res, args in (
        ("new_fluid_settings", p, []),
        ("fluid_settings_setnum", i, [p, s, d]),
        ("fluid_settings_setint", i, [p, s, i]),
        ("fluid_settings_setstr", i, [p, s, s]),
        ("new_fluid_synth", p, [p]),
        ("fluid_synth_sfload", i, [p, s, i]),
        ("fluid_synth_get_sfont_by_id", p, [p, i]),
        ("fluid_synth_add_sfont", i, [p, p]),
        ("fluid_synth_remove_sfont", i, [p, p]),
        ("fluid_set_log_function", p, [i, p, p]),
        ("fluid_synth_write_float", i, [p, i, p, i, i, p, i, i]),
        ("new_fluid_player", p, [p]),
        ("fluid_player_add", i, [p, s]),
        ("fluid_player_play", i, [p]),
        ("fluid_player_get_status", i, [p]),
        ("delete_fluid_player", None, [p]),
        ("delete_fluid_synth", None, [p]),
        ("delete_fluid_settings", None, [p]),
    ):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args


class Synth:
    """One soundfont loaded in FluidSynth once, for rendering files one by one (each by a new
    synth that borrows it)."""

    def __init__(self, soundfont: Path, *, sample_rate: int, gain: float) -> None:
        lib = library()
        if lib is None:
            raise OSError("libfluidsynth not found")
        self.lib, self.sample_rate = lib, sample_rate
        self.settings = lib.new_fluid_settings()
        lib.fluid_settings_setnum(self.settings, b"synth.sample-rate", float(sample_rate))
        lib.fluid_settings_setnum(self.settings, b"synth.gain", float(gain))
        lib.fluid_settings_setint(self.settings, b"synth.reverb.active", 0)
        lib.fluid_settings_setint(self.settings, b"synth.chorus.active", 0)
        lib.fluid_settings_setint(self.settings, b"synth.dynamic-sample-loading", 1)
        lib.fluid_settings_setstr(self.settings, b"player.timing-source", b"sample")
        lib.fluid_settings_setint(self.settings, b"synth.lock-memory", 0)
        # This synth only holds the soundfont; every file is rendered by a new one (render).
        self.synth = lib.new_fluid_synth(self.settings)
        sfont_id = (
            lib.fluid_synth_sfload(self.synth, str(soundfont).encode(), 1) if self.synth else -1
        )
        self.sfont = (
            lib.fluid_synth_get_sfont_by_id(self.synth, sfont_id) if sfont_id >= 0 else None
        )
        if not self.sfont:
            self.close()
            raise OSError(f"FluidSynth could not load the soundfont {soundfont}")

    def render(self, midi: Path) -> npt.NDArray[np.float32]:
        """Render ``midi`` whole: mono float32 ``[n]`` at the synth's sample rate, by a new
        synth with the loaded soundfont (the same samples whatever was rendered before)."""
        lib = self.lib
        synth = lib.new_fluid_synth(self.settings)
        if not synth or lib.fluid_synth_add_sfont(synth, self.sfont) < 0:
            if synth:
                lib.delete_fluid_synth(synth)
            raise OSError("FluidSynth could not start a synth")
        player = lib.new_fluid_player(synth)
        try:
            if lib.fluid_player_add(player, str(midi).encode()) != FLUID_OK:
                raise OSError(f"FluidSynth could not read {midi}")
            lib.fluid_player_play(player)
            blocks = []
            while lib.fluid_player_get_status(player) == FLUID_PLAYER_PLAYING:
                blocks.append(self._write(synth, BLOCK))
            blocks.append(self._write(synth, int(TAIL_SECONDS * self.sample_rate)))
        finally:
            lib.delete_fluid_player(player)
            self._release(synth)
        stereo = np.concatenate(blocks)
        return stereo.mean(axis=1, dtype=np.float32)

    def _write(self, synth: int, n: int) -> npt.NDArray[np.float32]:
        buf = np.zeros((n, 2), np.float32)
        ptr = buf.ctypes.data_as(ctypes.c_void_p)
        self.lib.fluid_synth_write_float(synth, n, ptr, 0, 2, ptr, 1, 2)
        return buf

    def _release(self, synth: int) -> None:
        """Give the soundfont back (it stays loaded in ``self.synth``) and delete ``synth``.
        Removing it leaves the synth's channels without a preset, which FluidSynth warns about
        once per channel: those warnings are held back meanwhile."""
        lib = self.lib
        before = lib.fluid_set_log_function(FLUID_WARN, None, None)
        try:
            lib.fluid_synth_remove_sfont(synth, self.sfont)
        finally:
            lib.fluid_set_log_function(FLUID_WARN, before, None)
        lib.delete_fluid_synth(synth)

    def close(self) -> None:
        if getattr(self, "synth", None):
            self.lib.delete_fluid_synth(self.synth)
            self.synth = None
        if getattr(self, "settings", None):
            self.lib.delete_fluid_settings(self.settings)
            self.settings = None


_SYNTHS: dict[tuple[str, int, float], Synth] = {}


def synth_for(soundfont: Path, *, sample_rate: int, gain: float) -> Synth:
    """The worker's synth for ``soundfont`` (created, and its soundfont loaded, once)."""
    key = (str(soundfont), sample_rate, gain)
    if key not in _SYNTHS:
        _SYNTHS[key] = Synth(soundfont, sample_rate=sample_rate, gain=gain)
    return _SYNTHS[key]
