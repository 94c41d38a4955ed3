"""Find the General MIDI soundfonts on this machine; pick one per track, deterministically."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from train.errors import MissingToolError

#: Where package managers put soundfonts (Debian/Ubuntu, Homebrew, Arch, user folders).
SEARCH_DIRS = (
    "/usr/share/sounds/sf2",
    "/usr/share/sounds/sf3",
    "/usr/share/soundfonts",
    "/usr/local/share/soundfonts",
    "/opt/homebrew/share/soundfonts",
    "/opt/homebrew/share/fluid-synth",
    "~/.local/share/soundfonts",
)
#: Name fragments of complete General MIDI banks (not every .sf2 on a machine is one).
GM_NAMES = ("fluidr3_gm", "musescore_general", "timgm6mb", "generaluser", "gm")

INSTALL_HINT = (
    "install General MIDI soundfonts (Debian/Ubuntu: apt-get install fluid-soundfont-gm "
    "musescore-general-soundfont-small timgm6mb-soundfont; macOS: download FluidR3_GM.sf2) "
    "or pass --soundfont FILE"
)


def find_soundfonts(extra: list[Path] | None = None) -> list[Path]:
    """Soundfonts to render with: ``extra`` if given, else every GM bank found, deduplicated.

    Symlinks (``default-GM.sf2``) and the same bank in two places count once. pretty_midi's
    bundled TimGM6mb.sf2 is the last resort, so a pip-only machine still has one.
    """
    if extra:
        missing = [str(p) for p in extra if not Path(p).is_file()]
        if missing:
            raise MissingToolError(f"soundfont not found: {', '.join(missing)}")
        return [Path(p).resolve() for p in extra]
    candidates: list[Path] = []
    for d in SEARCH_DIRS:
        folder = Path(os.path.expanduser(d))
        if folder.is_dir():
            candidates += sorted(folder.glob("*.sf[23]"))
    candidates += _pretty_midi_soundfont()
    found: dict[str, Path] = {}
    for path in candidates:
        real = path.resolve()
        stem = real.stem.lower()
        if real.is_file() and any(g in stem for g in GM_NAMES):
            found.setdefault(_bank_name(real), real)
    if not found:
        raise MissingToolError(f"no General MIDI soundfont found: {INSTALL_HINT}")
    return sorted(found.values(), key=lambda p: p.name.lower())


def _bank_name(path: Path) -> str:
    """Identity of a bank across copies: its file name without extension and ``_Lite``."""
    return path.stem.lower().replace("_lite", "")


def _pretty_midi_soundfont() -> list[Path]:
    try:
        import pretty_midi
    except ImportError:
        return []
    path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    return [path] if path.is_file() else []


def choose_soundfont(soundfonts: list[Path], key: str) -> Path:
    """The soundfont for one track: a stable hash of ``key`` (song hash and track), not random."""
    digest = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)
    return soundfonts[digest % len(soundfonts)]
