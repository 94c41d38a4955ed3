"""MIDI channels as musicians count them (1-16), and how a user writes a set of them.

Imports nothing heavy: ``kdlive --help`` shows the default set.
"""

from __future__ import annotations

from collections.abc import Iterable

from live.errors import SettingError

CHANNELS = tuple(range(1, 17))
#: General MIDI's drums: channel 10, here counted from 0 as in a status byte.
DRUM_CHANNEL = 9
#: The channels followed unless asked otherwise: all but General MIDI's drums, which are heard
#: as the others' context but are no instrument of the 8 classes.
PITCHED = tuple(c for c in CHANNELS if c != DRUM_CHANNEL + 1)


def parse_channels(text: str) -> tuple[int, ...]:
    """``1-16``, ``1-9,11-16`` or ``1,2,5`` -> the channels (1-16), sorted; else
    :class:`SettingError` about ``channels``."""
    out: set[int] = set()
    try:
        for part in text.split(","):
            a, _, b = part.strip().partition("-")
            lo, hi = int(a), int(b or a)
            if not 1 <= lo <= hi <= 16:
                raise ValueError
            out.update(range(lo, hi + 1))
    except ValueError:
        raise SettingError(
            f"{{channels}} {text!r}: channels are 1-16, e.g. 1-16, 1-9,11-16 or 1,2,5", "channels"
        ) from None
    return tuple(sorted(out))


def check_channels(channels: Iterable[int]) -> tuple[int, ...]:
    """``channels``, sorted and each once, if there are some and all are 1-16; else
    :class:`SettingError`."""
    out = tuple(sorted(set(channels)))
    if not out or not all(1 <= c <= 16 for c in out):
        raise SettingError("{channels} must be among 1-16", "channels")
    return out


def channels_text(channels: Iterable[int]) -> str:
    """The channels as :func:`parse_channels` reads them, runs joined: ``1-9,11-16``."""
    runs: list[list[int]] = []
    for c in sorted(set(channels)):
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)
