"""Standard MIDI files -> parts (notes in ticks), tempo map and bar grid. numpy + mido only.

The training pipeline and ``kdlive replay`` both read files through here, and cut windows on the
file's own beat grid in *ticks*, so a window is exact whatever the tempo map does.
"""

from __future__ import annotations

import contextlib
import io
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mido
import numpy as np
import numpy.typing as npt
from mido.midifiles import meta as _meta

from live.channels import DRUM_CHANNEL
from live.errors import MidiFileError

DEFAULT_TEMPO = 500_000  # microseconds per quarter note: 120 BPM


# ---------------------------------------------------------------------------------- loading


@contextlib.contextmanager
def _lenient_key_signatures() -> Iterator[None]:
    """Decode out-of-range key signatures (seen in real files) as C major, for one read.

    Swaps the decode method of mido's key_signature spec and puts it back afterwards.
    """
    spec = _meta._META_SPECS[0x59]
    strict = spec.decode

    def lenient(message: mido.MetaMessage, data: Sequence[int]) -> None:
        try:
            strict(message, data)
        except _meta.KeySignatureError:
            message.key = "C"

    spec.decode = lenient
    try:
        yield
    finally:
        del spec.decode  # the class's strict method shows through again


def load_midi(source: str | Path | bytes) -> mido.MidiFile:
    """Read a Standard MIDI File, leniently: invalid key signatures decode as C major.

    Raises :class:`MidiFileError` (with the file name and what is wrong) for a corrupt,
    truncated, empty or non-MIDI file.
    """
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as exc:
        raise MidiFileError(f"{name}: cannot read the file ({exc.strerror})") from exc
    if not data:
        raise MidiFileError(f"{name}: the file is empty")
    try:
        try:
            midi = mido.MidiFile(file=io.BytesIO(data))
        except _meta.KeySignatureError:
            with _lenient_key_signatures():
                midi = mido.MidiFile(file=io.BytesIO(data))
    except EOFError as exc:
        raise MidiFileError(f"{name}: not a readable MIDI file (it ends early: truncated)") from exc
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise MidiFileError(f"{name}: not a readable MIDI file ({exc})") from exc
    if midi.type not in (0, 1, 2) or not midi.tracks:
        raise MidiFileError(
            f"{name}: not a readable MIDI file (corrupt header: format "
            f"{midi.type}, {len(midi.tracks)} tracks)"
        )
    return midi


# ------------------------------------------------------------------------------- time maps


@dataclass(frozen=True)
class TempoMap:
    """Piecewise-constant tempo: ticks -> seconds.

    ``ticks[i]`` is where tempo ``us_per_beat[i]`` starts; ``seconds[i]`` is its time.
    """

    ticks_per_beat: int
    ticks: npt.NDArray[np.int64]
    us_per_beat: npt.NDArray[np.float64]
    seconds: npt.NDArray[np.float64]

    @classmethod
    def from_changes(cls, ticks_per_beat: int, changes: list[tuple[int, int]]) -> TempoMap:
        """Build from ``(tick, microseconds per beat)`` pairs; the last one at a tick wins."""
        by_tick: dict[int, int] = {0: DEFAULT_TEMPO}
        for tick, tempo in sorted(changes, key=lambda c: c[0]):
            by_tick[tick] = tempo
        ticks = np.array(sorted(by_tick), dtype=np.int64)
        tempi = np.array([by_tick[t] for t in ticks], dtype=np.float64)
        sec_per_tick = tempi / 1e6 / ticks_per_beat
        seconds = np.concatenate([[0.0], np.cumsum(np.diff(ticks) * sec_per_tick[:-1])])
        return cls(ticks_per_beat, ticks, tempi, seconds)

    def to_seconds(self, ticks: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Seconds at each tick (vectorised)."""
        t = np.asarray(ticks, dtype=np.float64)
        i = np.searchsorted(self.ticks, t, side="right") - 1
        i = np.clip(i, 0, len(self.ticks) - 1)
        return (
            self.seconds[i] + (t - self.ticks[i]) * self.us_per_beat[i] / 1e6 / self.ticks_per_beat
        )

    def bpm_at(self, tick: int) -> float:
        """Tempo in quarter notes per minute in force at ``tick``."""
        i = max(0, int(np.searchsorted(self.ticks, tick, side="right")) - 1)
        return 60e6 / float(self.us_per_beat[i])

    def bpm_range(self, until_tick: int) -> tuple[float, float]:
        """Slowest and fastest tempo in force anywhere in ``[0, until_tick]``."""
        bpm = 60e6 / self.us_per_beat[self.ticks <= max(until_tick, 0)]
        return float(bpm.min()), float(bpm.max())


@dataclass(frozen=True)
class BarGrid:
    """Bar lines in ticks, from the time signatures (4/4 until the first one).

    ``starts[i]`` is the first tick of bar i (0-based); ``numerators/denominators[i]`` its meter.
    The grid runs one bar past ``end_tick`` so every note lies inside a bar.
    """

    starts: npt.NDArray[np.int64]
    numerators: npt.NDArray[np.int64]
    denominators: npt.NDArray[np.int64]

    @classmethod
    def from_meters(
        cls, ticks_per_beat: int, meters: list[tuple[int, int, int]], end_tick: int
    ) -> BarGrid:
        """``meters`` = ``(tick, numerator, denominator)``. A time signature that does not fall
        on a bar line starts a new bar where it stands (what notation programs do)."""
        by_tick: dict[int, tuple[int, int]] = {0: (4, 4)}
        for tick, num, den in sorted(meters, key=lambda m: m[0]):
            if num > 0 and den > 0 and tick <= end_tick:
                by_tick[tick] = (num, den)
        changes = sorted(by_tick.items())
        starts: list[int] = []
        nums: list[int] = []
        dens: list[int] = []
        for i, (tick, (num, den)) in enumerate(changes):
            stop = changes[i + 1][0] if i + 1 < len(changes) else None
            bar_len = max(1, round(ticks_per_beat * num * 4 / den))
            # The last meter runs to the bar that holds end_tick, plus one closing bar line.
            limit = stop if stop is not None else max(end_tick, tick) + bar_len + 1
            for t in range(tick, limit, bar_len):
                starts.append(t)
                nums.append(num)
                dens.append(den)
        return cls(np.array(starts, np.int64), np.array(nums, np.int64), np.array(dens, np.int64))

    def __len__(self) -> int:
        return len(self.starts)


# ------------------------------------------------------------------------------------ parts


@dataclass
class Part:
    """The notes one instrument plays: one (track, channel, program), like a Slakh stem.

    Note arrays are parallel and sorted by start tick. ``muted`` marks notes that start while
    channel volume (CC 7) or expression (CC 11) is 0, which render silent.
    """

    track: int
    channel: int
    program: int
    name: str
    pitches: npt.NDArray[np.int64]
    starts: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]
    velocities: npt.NDArray[np.int64]
    muted: npt.NDArray[np.bool_]

    @property
    def is_drum(self) -> bool:
        return self.channel == DRUM_CHANNEL

    def __len__(self) -> int:
        return len(self.pitches)


@dataclass
class Song:
    """A parsed MIDI file: its parts, tempo map and bar grid, all in the file's ticks."""

    ticks_per_beat: int
    tempo: TempoMap
    bars: BarGrid
    parts: list[Part]
    end_tick: int
    track_names: list[str] = field(default_factory=list)

    @property
    def step_ticks(self) -> float:
        """Ticks per grid step (an eighth note)."""
        return self.ticks_per_beat / 2


@dataclass
class _OpenPart:
    pitches: list[int] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    velocities: list[int] = field(default_factory=list)
    muted: list[bool] = field(default_factory=list)


def read_song(midi: mido.MidiFile) -> Song:
    """Parse every track of ``midi`` once into parts, tempo map and bar grid.

    A note-off ends every sounding note of its channel and pitch (as a synthesizer's key
    release does, and as pretty_midi reads files), except notes started on the same tick when
    older ones are ended too (a retrigger). A note left sounding at the end of its track ends
    there. Zero-length notes (on and off on one tick) are kept: they mark an onset.
    """
    if midi.type == 2:
        raise MidiFileError("type 2 (asynchronous) MIDI files are not supported: convert to type 1")
    tpb = midi.ticks_per_beat
    if not tpb or tpb <= 0:
        raise MidiFileError(f"unsupported time division {tpb!r} (SMPTE timing): re-save as PPQ")
    tempos: list[tuple[int, int]] = []
    meters: list[tuple[int, int, int]] = []
    parts: list[Part] = []
    names: list[str] = []
    end_tick = 0
    for index, track in enumerate(midi.tracks):
        track_parts, name, track_end = _read_track(index, track, tempos, meters)
        parts.extend(track_parts)
        names.append(name)
        end_tick = max(end_tick, track_end)
    # The song ends with its last note (end-of-track markers are often far later or missing).
    end_tick = max((int(p.ends.max()) for p in parts if len(p)), default=end_tick)
    return Song(
        ticks_per_beat=tpb,
        tempo=TempoMap.from_changes(tpb, tempos),
        bars=BarGrid.from_meters(tpb, meters, end_tick),
        parts=parts,
        end_tick=end_tick,
        track_names=names,
    )


def _read_track(
    index: int,
    track: mido.MidiTrack,
    tempos: list[tuple[int, int]],
    meters: list[tuple[int, int, int]],
) -> tuple[list[Part], str, int]:
    name = ""
    program = [0] * 16
    volume = [100] * 16
    expression = [127] * 16
    sounding: dict[tuple[int, int], deque[tuple[int, int]]] = defaultdict(deque)
    open_parts: dict[tuple[int, int], _OpenPart] = {}
    tick = 0
    for msg in track:
        tick += msg.time
        kind = msg.type
        if kind == "note_on" and msg.velocity > 0:
            ch = msg.channel
            part = open_parts.setdefault((ch, program[ch]), _OpenPart())
            sounding[(ch, msg.note)].append((program[ch], len(part.pitches)))
            part.pitches.append(msg.note)
            part.starts.append(tick)
            part.ends.append(-1)
            part.velocities.append(msg.velocity)
            part.muted.append(volume[ch] == 0 or expression[ch] == 0)
        elif kind == "note_off" or (kind == "note_on" and msg.velocity == 0):
            queue = sounding.get((msg.channel, msg.note))
            if queue:
                older = [(p, i) for p, i in queue if open_parts[(msg.channel, p)].starts[i] < tick]
                retrigger = len(older) < len(queue) and older
                for prog, i in older if retrigger else queue:
                    open_parts[(msg.channel, prog)].ends[i] = tick
                sounding[(msg.channel, msg.note)] = (
                    deque(x for x in queue if x not in older) if retrigger else deque()
                )
        elif kind == "program_change":
            program[msg.channel] = msg.program
        elif kind == "control_change":
            if msg.control == 7:
                volume[msg.channel] = msg.value
            elif msg.control == 11:
                expression[msg.channel] = msg.value
        elif kind == "set_tempo":
            tempos.append((tick, msg.tempo))
        elif kind == "time_signature":
            meters.append((tick, msg.numerator, msg.denominator))
        elif kind == "track_name" and not name:
            name = msg.name
    parts = []
    for (ch, prog), op in sorted(open_parts.items()):
        ends = np.array(op.ends, np.int64)
        ends[ends < 0] = tick  # never released: ends with the track
        starts = np.array(op.starts, np.int64)
        order = np.argsort(starts, kind="stable")
        parts.append(
            Part(
                track=index,
                channel=ch,
                program=prog,
                name=name,
                pitches=np.array(op.pitches, np.int64)[order],
                starts=starts[order],
                ends=ends[order],
                velocities=np.array(op.velocities, np.int64)[order],
                muted=np.array(op.muted, bool)[order],
            )
        )
    return parts, name, tick
