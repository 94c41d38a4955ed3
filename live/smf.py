"""A Standard MIDI File's bytes, edited where they stand: events inserted at a track's start,
bytes replaced inside an event, and every other byte kept as it was (running status, the order
of same-tick events, unknown meta events, anything after the last track).

mido reads the file (:func:`live.midifile.load_midi`) and encodes the new messages; this module
only finds where each of mido's messages sits in the bytes, reading the chunks as mido does:
the header chunk, then one ``MTrk`` chunk per track.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mido.messages.specs import SPEC_BY_STATUS

from live.errors import MidiFileError

#: An edit of one track's data: replace ``data[start:end]`` with ``new`` (``start == end``
#: inserts). Offsets are into the track chunk's data, after its 8-byte header.
Edit = tuple[int, int, bytes]


@dataclass(frozen=True)
class Located:
    """Where a track's message sits: absolute tick, and ``[start, end)`` of the event (status
    byte, or first data byte under running status, to its last byte; its delta time is before
    ``start``) in the track chunk's data."""

    tick: int
    start: int
    end: int


@dataclass(frozen=True)
class SmfBytes:
    """A file's bytes and the ``[start, end)`` of each track chunk's data in them."""

    data: bytes
    tracks: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, data: bytes, n_tracks: int) -> SmfBytes:
        """The chunks of a file mido read with ``n_tracks`` tracks."""
        pos, tracks = 0, []
        for k in range(n_tracks + 1):
            if pos + 8 > len(data):
                raise MidiFileError("a track chunk runs past the end of the file")
            kind, size = struct.unpack(">4sL", data[pos : pos + 8])
            if kind != (b"MThd" if k == 0 else b"MTrk"):
                raise MidiFileError(f"chunk {k} is {kind!r}, not a MIDI track: cannot edit it")
            if k:
                tracks.append((pos + 8, pos + 8 + size))
            pos += 8 + size
        return cls(data, tuple(tracks))

    def track(self, index: int) -> bytes:
        start, end = self.tracks[index]
        return self.data[start:end]

    def locate(self, index: int) -> list[Located]:
        """Where each message of track ``index`` is, in order (as mido reads them)."""
        return locate_events(self.track(index))

    def edited(self, edits: dict[int, list[Edit]]) -> bytes:
        """The file with each track's ``edits`` (non-overlapping) applied and its chunk
        length set anew; every byte outside the edits is kept."""
        out = bytearray()
        pos = 0
        for index, (start, end) in enumerate(self.tracks):
            out += self.data[pos : start - 8]
            track = bytearray(self.data[start:end])
            for a, b, new in sorted(edits.get(index, []), reverse=True):
                track[a:b] = new
            out += b"MTrk" + struct.pack(">L", len(track)) + track
            pos = end
        out += self.data[pos:]
        return bytes(out)


def locate_events(track: bytes) -> list[Located]:
    """The events of a track chunk's data, read as mido reads them (running status set by
    every status but meta's)."""
    out: list[Located] = []
    pos, tick, running = 0, 0, 0
    try:
        while pos < len(track):
            delta, pos = _varint(track, pos)
            tick += delta
            start, status = pos, track[pos]
            if status >= 0x80:
                pos += 1
                running = running if status == 0xFF else status
            else:
                status = running  # running status: this byte is the first data byte
            if status == 0xFF:
                length, pos = _varint(track, pos + 1)
                pos += length
            elif status in (0xF0, 0xF7):
                length, pos = _varint(track, pos)
                pos += length
            else:
                pos += SPEC_BY_STATUS[status]["length"] - 1  # its data bytes
            out.append(Located(tick, start, pos))
    except (IndexError, KeyError):
        raise MidiFileError("a track ends inside an event: cannot edit it") from None
    return out


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A variable-length quantity at ``pos``: its value and the position after it."""
    value = 0
    while True:
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos
