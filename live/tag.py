"""`kdlive tag`: write into a MIDI file the instrument each part sounds written for.

A *part* is one MIDI channel's notes in the file, in whichever tracks they are: a synthesizer
plays a channel with one program at a time, so a channel spread over several tracks is one
instrument, and a track holding several channels (a type-0 file) holds several parts. Each
part's answer is its running answer after its whole length, from ``kdlive replay``'s code
(:func:`live.replay.replay_windows` and :class:`live.parts.PartTracker`; like the daemon's, it
starts afresh when the part comes back after more than 4 silent bars, so a part with long rests
is answered from its last stretch).

A part that gets an answer is written as a Program Change of its family's usual General MIDI
program (:data:`GM_PROGRAM`), at tick 0 of the track holding its first note, and as the name
of each track that holds its notes alone and has no name yet (the composer's names stay). By
default only parts that never set a program are written; the others are reported, with whether
their program's family differs from the answer. ``only_missing=False`` writes every part:
each Program Change of its channel is set to the answer's program (in place), and one is added
at the start if none came before its first note. The drum channel (10) is never written.

Every other byte of the file is kept (:mod:`live.smf`): nothing is re-timed or re-encoded.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mido
import numpy as np
import numpy.typing as npt

from live.channels import DRUM_CHANNEL, PITCHED
from live.errors import MidiFileError, SettingError
from live.midifile import load_midi
from live.parts import PartTracker, StepModel
from live.replay import replay_windows
from live.smf import Edit, SmfBytes
from live.taxonomy import CLASSES, class_of_program

#: The program (0-127 as the file holds it; General MIDI's list counts from 1) written for each
#: family: the family's plain, most general sound (docs/live.md says why each).
GM_PROGRAM = {
    "Piano": 0,  # Acoustic Grand Piano
    "Organ": 16,  # Drawbar Organ
    "Guitar": 24,  # Acoustic Guitar (nylon)
    "Bass": 33,  # Electric Bass (finger)
    "Strings": 48,  # String Ensemble 1
    "Brass": 61,  # Brass Section
    "Reed": 65,  # Alto Sax
    "Pipe": 73,  # Flute
}
#: What a MIDI file's name ends with, for a folder's files.
MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".smf")


@dataclass
class Channel:
    """What the file holds of one channel (1-16): its notes' count, the tracks holding them,
    where its first note is, and its Program Changes as ``(tick, track, message index,
    program)`` in time order."""

    channel: int
    notes: int = 0
    tracks: list[int] = field(default_factory=list)
    first: tuple[int, int] = (2**62, 0)  # (tick, track) of its first note
    programs: list[tuple[int, int, int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class PartReport:
    """One part of a tagged file, as the table shows it.

    Attributes:
        channel: 1-16. names: the names of the tracks holding its notes.
        notes: its note count. had: the programs it set, each once, in time order (empty:
            none).
        answer: the family it sounds written for (None: the drums, or no window).
        confidence: the running answer's probability of ``answer``.
        written: the program written for it, or None.
    """

    channel: int
    names: tuple[str, ...]
    notes: int
    had: tuple[int, ...]
    answer: str | None
    confidence: float
    written: int | None

    @property
    def differs(self) -> bool:
        """The composer set programs of the 8 families, and none is the answer's."""
        theirs = {class_of_program(p) for p in self.had} - {None}
        return bool(theirs) and self.answer is not None and self.answer not in theirs

    def as_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "tracks": list(self.names),
            "notes": self.notes,
            "answer": self.answer,
            "confidence": round(self.confidence, 6),
            "had": list(self.had),
            "written": self.written,
            "differs": self.differs,
        }


# ------------------------------------------------------------------------------ reading


def read_channels(midi: mido.MidiFile) -> tuple[dict[int, Channel], list[dict[str, Any]]]:
    """The channels that have notes or Program Changes, and per track: its channels with
    notes (``"channels"``) and its first track name's message index and text (``"name"``:
    ``(index, text)`` or None)."""
    channels: dict[int, Channel] = {}
    tracks: list[dict[str, Any]] = []
    for t, track in enumerate(midi.tracks):
        info: dict[str, Any] = {"channels": set(), "name": None}
        tick = 0
        for i, msg in enumerate(track):
            tick += msg.time
            if msg.type == "track_name" and info["name"] is None:
                info["name"] = (i, msg.name)
            elif msg.type == "note_on" and msg.velocity > 0:
                ch = channels.setdefault(msg.channel + 1, Channel(msg.channel + 1))
                ch.notes += 1
                ch.first = min(ch.first, (tick, t))
                if t not in ch.tracks:
                    ch.tracks.append(t)
                info["channels"].add(msg.channel + 1)
            elif msg.type == "program_change":
                ch = channels.setdefault(msg.channel + 1, Channel(msg.channel + 1))
                ch.programs.append((tick, t, i, msg.program))
        tracks.append(info)
    for ch in channels.values():
        ch.programs.sort()
    return channels, tracks


def running_answers(
    path: Path, model: StepModel, channels: tuple[int, ...] = PITCHED
) -> dict[int, npt.NDArray[np.float32]]:
    """Each channel's running answer after its last window (``[8]`` probabilities, contract
    order), as ``kdlive replay`` computes it."""
    tracker = PartTracker(model)
    last: dict[int, npt.NDArray[np.float32]] = {}
    for batch in replay_windows(path, channels=channels, controls=model.contract.controls):
        answers = tracker.compute(batch, epoch=0)
        tracker.commit(answers)
        for w, q in zip(batch, answers.part, strict=True):
            last[w.channel] = q
    return last


# ------------------------------------------------------------------------------ writing


def tag_file(
    src: Path, dst: Path | None, model: StepModel, *, only_missing: bool = True
) -> list[PartReport]:
    """Tag ``src`` into ``dst`` (None: only report; ``dst`` may be ``src``, replaced whole
    once written). Returns a report per part, by channel. Raises
    :class:`live.errors.MidiFileError` for a file it cannot read."""
    midi = load_midi(src)
    channels, tracks = read_channels(midi)
    answers = running_answers(src, model)
    smf = SmfBytes.parse(src.read_bytes(), len(midi.tracks))
    located = [smf.locate(t) for t in range(len(midi.tracks))]
    if [len(x) for x in located] != [len(t) for t in midi.tracks]:
        raise MidiFileError(f"{src}: its tracks cannot be edited in place (mido reads them apart)")
    edits: dict[int, list[Edit]] = {}
    inserts: dict[int, list[bytes]] = {}
    reports = []
    for number in sorted(ch for ch, c in channels.items() if c.notes):
        ch = channels[number]
        q = answers.get(number)
        answer = None if q is None else CLASSES[int(q.argmax())]
        write = answer is not None and number != DRUM_CHANNEL + 1
        write = write and (not ch.programs or not only_missing)
        if write:
            assert answer is not None
            _write_program(ch, GM_PROGRAM[answer], located, edits, inserts)
            _write_names(ch, answer, tracks, located, edits, inserts)
        reports.append(
            PartReport(
                channel=number,
                names=tuple(_name(tracks[t]) for t in ch.tracks),
                notes=ch.notes,
                had=tuple(dict.fromkeys(p for *_, p in ch.programs)),
                answer=answer,
                confidence=0.0 if q is None else float(q.max()),
                written=GM_PROGRAM[answer] if write and answer else None,
            )
        )
    for t, parts in inserts.items():
        edits.setdefault(t, []).append((0, 0, b"".join(parts)))
    if dst is not None:
        _write_atomically(dst, smf.edited(edits))
    return reports


def _write_program(
    ch: Channel,
    program: int,
    located: list[list[Any]],
    edits: dict[int, list[Edit]],
    inserts: dict[int, list[bytes]],
) -> None:
    """Set the channel's Program Changes to ``program`` (the last byte of each), and add one
    at tick 0 of its first note's track if none comes before that note."""
    for _, t, i, _ in ch.programs:
        end = located[t][i].end
        edits.setdefault(t, []).append((end - 1, end, bytes([program])))
    if not any(tick <= ch.first[0] for tick, *_ in ch.programs):
        message = mido.Message("program_change", channel=ch.channel - 1, program=program)
        inserts.setdefault(ch.first[1], []).append(b"\x00" + bytes(message.bytes()))


def _write_names(
    ch: Channel,
    answer: str,
    tracks: list[dict[str, Any]],
    located: list[list[Any]],
    edits: dict[int, list[Edit]],
    inserts: dict[int, list[bytes]],
) -> None:
    """Name each track that holds this channel's notes alone and has no name (or an empty
    one) after the answer."""
    meta = bytes(mido.MetaMessage("track_name", name=answer).bytes())
    for t in ch.tracks:
        info = tracks[t]
        if info["channels"] != {ch.channel} or _name(info):
            continue
        if info["name"] is None:
            inserts.setdefault(t, []).insert(0, b"\x00" + meta)
        else:
            where = located[t][info["name"][0]]
            edits.setdefault(t, []).append((where.start, where.end, meta))


def _name(track: dict[str, Any]) -> str:
    return track["name"][1].strip() if track["name"] else ""


def _write_atomically(dst: Path, data: bytes) -> None:
    """``data`` into ``dst`` through a temporary file beside it, so ``dst`` is never left
    half written (it may be the input)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -------------------------------------------------------------------------- file plans


def plan(src: Path, out: Path | None, *, in_place: bool) -> list[tuple[Path, Path | None]]:
    """``(input, output)`` for each file ``kdlive tag SRC -o OUT`` tags: a file, or every MIDI
    file under a folder, mirrored under ``out`` (None without ``out``: report only; the input
    itself with ``in_place``). Raises :class:`SettingError` about ``output``/``in_place``
    when ``out`` is the input and ``in_place`` is not given."""
    if not src.exists():
        raise MidiFileError(f"{src}: no such file or folder")
    if out is None:
        out = src if in_place else None
    elif out.resolve() == src.resolve() and not in_place:
        raise SettingError(
            "{output} is the input: give another path, or {in_place} to overwrite it",
            "output",
            "in_place",
        )
    if src.is_file():
        if out is not None and out.is_dir():
            out = out / src.name
        return [(src, out)]
    files = [
        p
        for p in sorted(src.rglob("*"))
        if p.suffix.lower() in MIDI_SUFFIXES
        and p.is_file()
        and (out is None or out == src or not p.is_relative_to(out))
    ]
    return [(p, None if out is None else out / p.relative_to(src)) for p in files]


# ------------------------------------------------------------------------------ the table


def table(reports: list[PartReport]) -> Iterator[str]:
    """The lines of a file's table: part (channel, track names), notes, the answer and its
    confidence, the programs it had, and what was done."""
    yield f"{'ch':>2}  {'track':<20} {'notes':>5}  {'kdlive':<14} {'had':<22} done"
    for r in reports:
        answer = f"{r.answer} {r.confidence:.2f}" if r.answer else "-"
        had = " ".join(f"{p} {class_of_program(p) or 'other'}" for p in r.had[:2]) or "-"
        had += " ..." if len(r.had) > 2 else ""
        name = " / ".join(n for n in r.names if n)[:20]
        yield f"{r.channel:>2}  {name:<20} {r.notes:>5}  {answer:<14} {had:<22} {done(r)}"


def done(r: PartReport) -> str:
    """What ``kdlive tag`` did with a part, in words."""
    if r.written is not None:
        return f"wrote program {r.written}"
    if r.channel == DRUM_CHANNEL + 1:
        return "drums: never tagged"
    if r.answer is None:
        return "no window: too short"
    return "kept: differs from kdlive" if r.differs else "kept"
