"""The daemon's core, with no ports, threads or clocks: note events at positions in, closed
2-bar windows out.

Positions are integer ticks from the song start, ``ticks_per_quarter`` to a quarter note: the
file's own ticks for ``kdlive replay``, MIDI clock x :data:`TICKS_PER_CLOCK` live. Bar lines
come from a :class:`Bars` (a fixed meter live, the file's bar grid in replay). A window's input
is made by :func:`live.inputs.window_inputs` from every channel's notes, the function that cuts
training windows, so a file replayed through the engine gives the training pipeline's inputs
bit for bit (contract 1's roll is its channel 0, :func:`live.windows.window_roll`).

Per channel, notes live in preallocated arrays; at each bar line where a window ends, every
channel with notes in it yields a :class:`ClosedWindow`, and notes that can no longer reach a
later window are dropped. Between bar lines it says what is pending: the windows that would
close at the next one if nothing more came (:meth:`WindowEngine.pending`), named by a key that
every event heard changes (:class:`PendingKey`), for :mod:`live.ahead` to compute them early.
Note pairing follows :mod:`live.midifile`: a note-off ends every sounding note of its channel
and pitch, except one started on the same tick (a retrigger).

For a contract-3 student (``controls=True``) the engine also keeps each channel's controller
events (:mod:`live.controls`: pedal, bend, modulation, expression, ...) and writes their states
into the windows; an event counts as heard (changes the pending key) only where it can change
the pending windows' states, so a stream of expression or bend messages does not make the
daemon compute ahead again at every message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from live.channels import CHANNELS, DRUM_CHANNEL, check_channels
from live.contract import WINDOW, WindowSpec
from live.controls import MOVING, STREAMS, Controls, is_on
from live.errors import SettingError
from live.inputs import CHANNELS_V2, SOUNDING, Sources, window_inputs
from live.midifile import BarGrid

#: Live positions: MIDI clock (24 per quarter) subdivided so notes between clocks keep their
#: place: 960 ticks per quarter, a common DAW resolution.
TICKS_PER_CLOCK = 40
LIVE_TICKS_PER_QUARTER = 24 * TICKS_PER_CLOCK
NOT_SOUNDING = -1
#: Bars from one window's start to the next: a window at every bar line (overlapping the last
#: by a bar), or at every other.
HOP_BARS = (1, 2)


def check_hop_bars(hop_bars: int) -> int:
    """``hop_bars``, if it is one of :data:`HOP_BARS`; else :class:`SettingError`."""
    if hop_bars not in HOP_BARS:
        raise SettingError(
            "{hop_bars} must be 1 (a window at every bar line) or 2 (every other)", "hop_bars"
        )
    return hop_bars


class Bars:
    """Bar lines in ticks. ``start(i)`` is the first tick of bar ``i`` (bar 0 starts at 0)."""

    def start(self, bar: int) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def index(self, pos: int) -> int:
        """The bar that holds ``pos``."""
        raise NotImplementedError  # pragma: no cover - interface


@dataclass(frozen=True)
class FixedMeter(Bars):
    """One meter for the whole song (live: ``--meter``; MIDI clock does not carry one)."""

    numerator: int = 4
    denominator: int = 4
    ticks_per_quarter: int = LIVE_TICKS_PER_QUARTER

    def __post_init__(self) -> None:
        if self.numerator < 1 or self.denominator not in (1, 2, 4, 8, 16, 32):
            raise ValueError(f"bad meter {self.numerator}/{self.denominator}")
        if (self.ticks_per_quarter * 4 * self.numerator) % self.denominator:
            raise ValueError("a bar must be a whole number of ticks")

    @property
    def bar_ticks(self) -> int:
        return self.ticks_per_quarter * 4 * self.numerator // self.denominator

    def start(self, bar: int) -> int:
        return bar * self.bar_ticks

    def index(self, pos: int) -> int:
        return pos // self.bar_ticks


@dataclass(frozen=True)
class GridBars(Bars):
    """A file's bar grid (time signature changes included); past its end, its last bar repeats."""

    grid: BarGrid

    def start(self, bar: int) -> int:
        starts = self.grid.starts
        if bar < len(starts):
            return int(starts[bar])
        last = int(starts[-1] - starts[-2]) if len(starts) > 1 else 1
        return int(starts[-1]) + (bar - len(starts) + 1) * last

    def index(self, pos: int) -> int:
        i = int(np.searchsorted(self.grid.starts, pos, side="right")) - 1
        if i < len(self.grid.starts) - 1:
            return max(i, 0)
        while self.start(i + 1) <= pos:
            i += 1
        return i


@dataclass
class ClosedWindow:
    """A finished window of one channel: bars ``[bar, bar + 2)``, ticks ``[start, end)``.
    ``inputs`` is its contract-2 input (:mod:`live.inputs`, the other channels heard as the
    ensemble and channel 10 as the drums), ``roll`` its channel 0: contract 1's input. Both are
    views of the engine's buffers, valid until the next close."""

    channel: int  # 1-16
    bar: int
    start: int
    end: int
    valid_steps: int
    inputs: npt.NDArray[np.uint8]  # [5, 128, 16]

    @property
    def roll(self) -> npt.NDArray[np.uint8]:
        """``[128, 16]`` 0/1: the channel's notes sounding (contract 1)."""
        return self.inputs[SOUNDING]


class PendingKey(NamedTuple):
    """Names the pending windows: those closing at the bar line ending bar ``end_bar``, as
    heard after the engine's ``heard``-th event. Equal keys, equal windows (inputs and all)."""

    end_bar: int
    heard: int


@dataclass
class Counters:
    notes: int = 0
    orphan_note_offs: int = 0
    stuck_notes: int = 0
    dropped_notes: int = 0
    windows: int = 0
    empty_windows: int = 0
    relocations: int = 0
    controls: int = 0
    dropped_controls: int = 0


@dataclass
class _ChannelNotes:
    """One channel's notes: finished ones in parallel arrays, sounding ones by pitch."""

    capacity: int
    pitches: npt.NDArray[np.int64] = field(init=False)
    starts: npt.NDArray[np.int64] = field(init=False)
    ends: npt.NDArray[np.int64] = field(init=False)
    velocities: npt.NDArray[np.int64] = field(init=False)
    n: int = 0
    #: Start of the sounding note of each pitch (the earliest, if doubled), or NOT_SOUNDING.
    sounding_from: npt.NDArray[np.int64] = field(init=False)
    #: Velocity of the sounding note of each pitch.
    sounding_velocity: npt.NDArray[np.int64] = field(init=False)
    #: Position of a note-on that came while the pitch was sounding (a retrigger if a note-off
    #: comes on the same tick), or NOT_SOUNDING.
    retrigger_at: npt.NDArray[np.int64] = field(init=False)
    #: Velocity of that note-on.
    retrigger_velocity: npt.NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        self.pitches = np.zeros(self.capacity, np.int64)
        self.starts = np.zeros(self.capacity, np.int64)
        self.ends = np.zeros(self.capacity, np.int64)
        self.velocities = np.zeros(self.capacity, np.int64)
        self.sounding_from = np.full(128, NOT_SOUNDING, np.int64)
        self.sounding_velocity = np.zeros(128, np.int64)
        self.retrigger_at = np.full(128, NOT_SOUNDING, np.int64)
        self.retrigger_velocity = np.zeros(128, np.int64)
        # Scratch for the notes of one window (finished + sounding), preallocated.
        self._p = np.zeros(self.capacity + 128, np.int64)
        self._s = np.zeros(self.capacity + 128, np.int64)
        self._e = np.zeros(self.capacity + 128, np.int64)
        self._v = np.zeros(self.capacity + 128, np.int64)

    def add(self, pitch: int, start: int, end: int, velocity: int) -> bool:
        if self.n == self.capacity:
            return False
        n = self.n
        self.pitches[n], self.starts[n], self.ends[n], self.velocities[n] = (
            pitch,
            start,
            end,
            velocity,
        )
        self.n += 1
        return True

    def clear(self) -> None:
        self.n = 0
        self.sounding_from.fill(NOT_SOUNDING)
        self.retrigger_at.fill(NOT_SOUNDING)

    def prune(self, before: int) -> None:
        """Drop finished notes that ended before ``before`` (no later window can hold them)."""
        keep = self.ends[: self.n] >= before
        k = int(keep.sum())
        if k < self.n:
            for notes in (self.pitches, self.starts, self.ends, self.velocities):
                notes[:k] = notes[: self.n][keep]
            self.n = k

    def notes_until(self, t1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Finished notes plus sounding ones (ending at ``t1`` for this window): pitches,
        starts, ends, velocities."""
        n = self.n
        self._p[:n], self._s[:n], self._e[:n] = self.pitches[:n], self.starts[:n], self.ends[:n]
        self._v[:n] = self.velocities[:n]
        sounding = np.flatnonzero(self.sounding_from != NOT_SOUNDING)
        m = n + len(sounding)
        self._p[n:m] = sounding
        self._s[n:m] = self.sounding_from[sounding]
        self._e[n:m] = t1
        self._v[n:m] = self.sounding_velocity[sounding]
        return self._p[:m], self._s[:m], self._e[:m], self._v[:m]


@dataclass
class _ChannelControls:
    """One channel's controller events (:mod:`live.controls`), in the order heard."""

    capacity: int
    streams: npt.NDArray[np.int64] = field(init=False)
    ticks: npt.NDArray[np.int64] = field(init=False)
    values: npt.NDArray[np.int64] = field(init=False)
    n: int = 0
    #: Per stream, the last value and tick heard (-1: none since the start or a relocation).
    last_value: list[int] = field(init=False)
    last_tick: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.streams = np.zeros(self.capacity, np.int64)
        self.ticks = np.zeros(self.capacity, np.int64)
        self.values = np.zeros(self.capacity, np.int64)
        self.clear()

    def clear(self) -> None:
        self.n = 0
        self.last_value = [-1] * len(STREAMS)
        self.last_tick = [-1] * len(STREAMS)

    def add(self, stream: int, tick: int, value: int) -> bool:
        self.last_value[stream], self.last_tick[stream] = value, tick
        if self.n == self.capacity:
            return False
        self.streams[self.n], self.ticks[self.n], self.values[self.n] = stream, tick, value
        self.n += 1
        return True

    def prune(self, before: int) -> None:
        """Drop events before ``before`` except each stream's last one there (what it holds
        when a later window starts)."""
        n = self.n
        if n == 0 or self.ticks[0] >= before:
            return
        old = self.ticks[:n] < before
        keep = ~old
        for stream in np.unique(self.streams[:n][old]).tolist():
            keep[np.flatnonzero(old & (self.streams[:n] == stream))[-1]] = True
        k = int(keep.sum())
        for a in (self.streams, self.ticks, self.values):
            a[:k] = a[:n][keep]
        self.n = k


class WindowEngine:
    """Notes in, closed windows out. Not thread-safe: one worker owns it.

    Every channel's notes are kept (each is heard in the others' ensemble, channel 10 as the
    drums); windows are made for the channels followed.

    Args:
        bars: where bar lines fall (ticks).
        ticks_per_quarter: tick resolution of positions.
        hop_bars: 1 (a window at every bar line, overlapping by a bar) or 2.
        channels: which MIDI channels (1-16) to follow: make windows of.
        max_note_bars: a note sounding longer than this many bars is ended (a stuck note: a
            lost note-off); 0 = never.
        capacity: finished notes kept per channel (a bar or two of very dense playing fits
            many times over); notes past it are dropped and counted. As many controller
            events are kept per channel.
        controls: keep the channels' controllers and write them into the windows (contract 3,
            :mod:`live.controls`); without, :meth:`control` is never needed.
    """

    def __init__(
        self,
        bars: Bars,
        *,
        ticks_per_quarter: int = LIVE_TICKS_PER_QUARTER,
        hop_bars: int = 1,
        channels: Iterable[int] = CHANNELS,
        max_note_bars: int = 8,
        capacity: int = 4096,
        spec: WindowSpec = WINDOW,
        controls: bool = False,
    ) -> None:
        self.bars, self.tpq, self.spec = bars, ticks_per_quarter, spec
        self.hop = check_hop_bars(hop_bars)
        self.step_ticks = ticks_per_quarter / spec.steps_per_quarter
        self.channels = check_channels(channels)
        #: Whether each channel (index 1-16) is followed.
        self.followed = np.zeros(17, bool)
        self.followed[list(self.channels)] = True
        self.max_note_bars = max_note_bars
        self.notes = {c: _ChannelNotes(capacity) for c in CHANNELS}
        self.controls = controls
        self.control_log = {c: _ChannelControls(capacity if controls else 0) for c in CHANNELS}
        #: One row per channel (1-16 at rows 0-15): the inputs of windows closing together,
        #: all made in one call of :func:`live.inputs.window_inputs`.
        self.inputs = np.zeros(
            (len(CHANNELS), len(CHANNELS_V2), spec.n_pitches, spec.n_steps), np.uint8
        )
        #: The same for the pending windows (:meth:`pending`).
        self.pending_inputs = np.zeros_like(self.inputs)
        self._drum = np.array([c == DRUM_CHANNEL + 1 for c in CHANNELS])
        #: Events heard that can change the pending windows (notes, relocations).
        self.heard = 0
        #: The last :meth:`pending` result's key and empty-window count: a close under the same
        #: key copies its inputs instead of making them again.
        self._pending: tuple[PendingKey, int] | None = None
        #: The key the windows of the last close had while pending: what was computed ahead
        #: for this key belongs to them.
        self.closed_key: PendingKey | None = None
        self.counters = Counters()
        #: Bumped by every relocation and Stop: a part's history starts afresh.
        self.epoch = 0
        self._last_empty = 0
        self._prune_from: int | None = None
        self.position = 0
        self.next_end_bar = spec.bars  # the first window is bars [0, 2)

    # --------------------------------------------------------------------------- events

    def note_on(self, channel: int, pitch: int, pos: int, velocity: int = 100) -> None:
        ch = self.notes[channel]
        self.heard += 1
        self.counters.notes += 1
        if ch.sounding_from[pitch] == NOT_SOUNDING:
            ch.sounding_from[pitch], ch.sounding_velocity[pitch] = pos, velocity
        elif ch.sounding_from[pitch] < pos:
            ch.retrigger_at[pitch] = pos  # doubled note-on: a retrigger if a note-off comes now
            ch.retrigger_velocity[pitch] = velocity

    def note_off(self, channel: int, pitch: int, pos: int) -> None:
        ch = self.notes[channel]
        self.heard += 1
        start = int(ch.sounding_from[pitch])
        if start == NOT_SOUNDING:
            self.counters.orphan_note_offs += 1
            return
        if not ch.add(pitch, start, max(pos, start), int(ch.sounding_velocity[pitch])):
            self.counters.dropped_notes += 1
        if ch.retrigger_at[pitch] == pos:  # retrigger: the note started on this tick sounds on
            ch.sounding_from[pitch] = pos
            ch.sounding_velocity[pitch] = ch.retrigger_velocity[pitch]
        else:
            ch.sounding_from[pitch] = NOT_SOUNDING
        ch.retrigger_at[pitch] = NOT_SOUNDING

    def control(self, channel: int, stream: int, value: int, pos: int) -> None:
        """A controller event of ``channel``: ``stream`` (:data:`live.controls.STREAMS`) took
        ``value`` (0-127; the bend stream |bend| 0-8192) at ``pos``. Kept only with
        ``controls``."""
        if not self.controls:
            return
        log = self.control_log[channel]
        self.counters.controls += 1
        last_value, last_tick = log.last_value[stream], log.last_tick[stream]
        if self._changes_pending(stream, value, pos, last_value, last_tick):
            self.heard += 1
        if not log.add(stream, pos, value):
            self.counters.dropped_controls += 1

    def _changes_pending(
        self, stream: int, value: int, pos: int, last_value: int, last_tick: int
    ) -> bool:
        """Whether an event can change the pending windows' controller states: it changes
        what the stream holds (a threshold crossed), or it is the first of a "moving" stream
        in its step of the pending window."""
        if last_value < 0 or is_on(stream, value) != is_on(stream, last_value):
            return True
        if stream not in MOVING:
            return False
        t0 = self.bars.start(self.next_end_bar - self.spec.bars)
        if pos < t0:
            return False
        step_start = t0 + np.floor((pos - t0) / self.step_ticks) * self.step_ticks
        return bool(last_tick < step_start)

    def all_notes_off(self, channel: int, pos: int) -> None:
        """CC 123 / end of a track: end every sounding note of the channel."""
        for pitch in np.flatnonzero(self.notes[channel].sounding_from != NOT_SOUNDING):
            self.note_off(channel, int(pitch), pos)

    def stop(self) -> None:
        """The transport stopped: what comes after is heard afresh (see :attr:`epoch`)."""
        self.epoch += 1

    # ----------------------------------------------------------------------------- time

    def next_close(self) -> int:
        """Position of the next bar line where windows close."""
        return self.bars.start(self.next_end_bar)

    def advance(self, pos: int) -> list[ClosedWindow]:
        """Move time to ``pos``; returns the windows that closed on the way (call this before
        applying events at ``pos``: a note starting on a bar line belongs to the next window)."""
        closed: list[ClosedWindow] = []
        while self.next_close() <= pos:
            for w in closed:  # rare: several bar lines at once; the row buffers get reused
                w.inputs = w.inputs.copy()
            closed.extend(self._close(self.next_end_bar))
            self.next_end_bar += self.hop
        self.position = max(self.position, pos)
        return closed

    def relocate(self, pos: int) -> None:
        """The song jumped (Start, Song Position Pointer): forget every note; the first window
        is the first whole one after ``pos``."""
        for ch in self.notes.values():
            ch.clear()
        for log in self.control_log.values():
            log.clear()
        self.heard += 1
        self.epoch += 1
        self.counters.relocations += 1
        bar = self.bars.index(pos)
        if self.bars.start(bar) < pos:
            bar += 1
        first = -(-bar // self.hop) * self.hop  # window starts stay on the hop grid
        self.next_end_bar = first + self.spec.bars
        self.position = pos

    def _close(self, end_bar: int) -> list[ClosedWindow]:
        self.tidy()
        start_bar = end_bar - self.spec.bars
        t0, t1 = self.bars.start(start_bar), self.bars.start(end_bar)
        self._end_stuck(t1)
        key = PendingKey(end_bar, self.heard)
        if self._pending is not None and self._pending[0] == key:
            np.copyto(self.inputs, self.pending_inputs)  # nothing heard since pending()
            valid = self.spec.valid_steps((t1 - t0) / self.step_ticks)
            out = self._nonempty(self.inputs, start_bar, t0, t1, valid)
            self.counters.windows += len(out)
            self.counters.empty_windows += self._pending[1]
        else:
            out = self._windows(start_bar, t0, t1, self.inputs, count=True)
        self._pending = None
        self.closed_key = key
        # Notes that ended before the next window are dropped by tidy(), after the results
        # are out (the daemon calls it), or at the next close at the latest.
        self._prune_from = self.bars.start(start_bar + self.hop)
        return out

    def tidy(self) -> None:
        """Drop the notes no later window can hold (deferred from the last close)."""
        if self._prune_from is not None:
            for ch in self.notes.values():
                ch.prune(self._prune_from)
            for log in self.control_log.values():
                log.prune(self._prune_from)
            self._prune_from = None

    def pending_key(self) -> PendingKey:
        """The key of the pending windows now: it changes with every event that can change
        them, and when they close."""
        return PendingKey(self.next_end_bar, self.heard)

    def pending(self) -> list[ClosedWindow]:
        """The pending windows (closing at the next bar line) as they would close if nothing
        more were heard before it; each has notes of its own. For computing ahead
        (:mod:`live.ahead`). Counts nothing; the windows are rows of ``pending_inputs``, valid
        until the next call, and a close under the same :meth:`pending_key` copies them."""
        start_bar = self.next_end_bar - self.spec.bars
        t0, t1 = self.bars.start(start_bar), self.bars.start(self.next_end_bar)
        out = self._windows(start_bar, t0, t1, self.pending_inputs, count=False)
        self._pending = (self.pending_key(), self._last_empty)
        return out

    def _windows(
        self, start_bar: int, t0: int, t1: int, inputs: npt.NDArray[np.uint8], *, count: bool
    ) -> list[ClosedWindow]:
        """Fill ``inputs`` (a row per channel) with the window ``[t0, t1)`` of every channel in
        one call, and return the followed channels' windows whose own notes are there."""
        notes = [self.notes[c].notes_until(t1) for c in CHANNELS]
        counts = [len(n[0]) for n in notes]
        pitches, starts, ends, velocities = (
            np.concatenate([n[k] for n in notes]) for k in range(4)
        )
        source = np.repeat(np.arange(len(CHANNELS), dtype=np.int64), counts)
        sources = Sources(source, pitches, starts, ends, velocities, self._drum)
        controls = self._controls() if self.controls else None
        valid = window_inputs(
            sources, t0, t1, self.step_ticks, spec=self.spec, out=inputs, controls=controls
        )[1]
        out = self._nonempty(inputs, start_bar, t0, t1, valid)
        with_notes = sum(1 for c, k in zip(CHANNELS, counts, strict=True) if k and self.followed[c])
        self._last_empty = with_notes - len(out)
        if count:
            self.counters.windows += len(out)
            self.counters.empty_windows += self._last_empty
        return out

    def _controls(self) -> Controls:
        """Every channel's controller events, channel ``c`` as source ``c - 1``."""
        logs = [(c - 1, self.control_log[c]) for c in CHANNELS if self.control_log[c].n]
        if not logs:
            return Controls.empty()
        return Controls(
            np.concatenate([np.full(log.n, c, np.int64) for c, log in logs]),
            np.concatenate([log.streams[: log.n] for _, log in logs]),
            np.concatenate([log.ticks[: log.n] for _, log in logs]),
            np.concatenate([log.values[: log.n] for _, log in logs]),
        )

    def _nonempty(
        self, inputs: npt.NDArray[np.uint8], start_bar: int, t0: int, t1: int, valid: int
    ) -> list[ClosedWindow]:
        """The windows of the followed channels whose own notes sound in ``inputs``."""
        busy = self.followed[1:] & inputs[:, SOUNDING].reshape(len(CHANNELS), -1).any(axis=1)
        return [
            ClosedWindow(CHANNELS[row], start_bar, t0, t1, valid, inputs[row])
            for row in np.flatnonzero(busy).tolist()
        ]

    def _end_stuck(self, t1: int) -> None:
        if self.max_note_bars <= 0:
            return
        limit = self.max_note_bars * self.tpq * 4  # bars of 4/4, in ticks
        for c, ch in self.notes.items():
            since = ch.sounding_from
            stuck = np.flatnonzero((since != NOT_SOUNDING) & (t1 - since > limit))
            for pitch in stuck:
                self.counters.stuck_notes += 1
                self.note_off(c, int(pitch), int(since[pitch]) + limit)
