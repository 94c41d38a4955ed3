"""A part's controllers on the window grid: what contract 3 adds to contract 2.

A DAW sends each channel's controllers beside its notes: the sustain pedal, pitch bend, the
modulation wheel, expression. Which of them a part uses says much about its instrument (a
pedal is a piano's, bends a guitar's or a reed's; docs/results.md, "What the contract drops").
Contract 3 gives the student eight binary states of the part's channel at each eighth-note
step, in rows 0-7 of the drums plane (keys below any General MIDI drum, so a kit loses
nothing it plays)::

    0 sustain pedal down (CC 64 >= 64)        4 expression moving (a CC 11 inside the step)
    1 pitch bent (|bend| >= 256 of 8192)      5 expression low (CC 11 < 96)
    2 pitch bend moving (an event inside)     6 breath (CC 2 > 0) or portamento (CC 5/65 >= 64)
    3 modulation on (CC 1 > 0)                7 soft pedal or sostenuto (CC 66/67 >= 64)

A state is on at a step if it holds when the step starts (the last event at or before it) or
after any event inside the step; "moving" is on where an event of its controller falls in the
step. A controller never sent holds nothing. Only what a daemon knows at the window's end is
read: events up to the end of each step, the program and bank never.

Events are kept per *stream*: one controller of one source (a MIDI channel live, a part in
training, which reads its channel's controllers from every track). CC 5 and 65 share a stream,
as do CC 66 and 67: the later event of the two decides. :func:`control_rows` turns the streams
of every source into their rows, for training (:mod:`train.data.notes`), ``kdlive replay`` and
``kdlive listen`` alike (:mod:`live.engine`). Torch-free: numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mido
import numpy as np
import numpy.typing as npt

from live.contract import WINDOW, WindowSpec

#: The streams, by name; their CC numbers (``"bend"``: the pitch wheel).
STREAMS = ("pedal", "bend", "modulation", "expression", "breath", "portamento", "soft")
PEDAL, BEND, MODULATION, EXPRESSION, BREATH, PORTAMENTO, SOFT = range(len(STREAMS))
#: Control Change number -> stream.
CC_STREAM = {64: PEDAL, 1: MODULATION, 11: EXPRESSION, 2: BREATH, 5: PORTAMENTO, 65: PORTAMENTO}
CC_STREAM |= {66: SOFT, 67: SOFT}
#: The rows, in order: ``(stream, threshold)`` pairs whose states are or-ed into the row; a
#: threshold ``t`` means "value >= t" (values are 0-127, and |bend| 0-8192), None "an event
#: falls inside the step", and a negative one ``-t`` "value < t".
ROWS: tuple[tuple[tuple[int, int | None], ...], ...] = (
    ((PEDAL, 64),),
    ((BEND, 256),),
    ((BEND, None),),
    ((MODULATION, 1),),
    ((EXPRESSION, None),),
    ((EXPRESSION, -96),),
    ((BREATH, 1), (PORTAMENTO, 64)),
    ((SOFT, 64),),
)
N_ROWS = len(ROWS)
#: Streams whose every event can change a row (a "moving" state): the others only where the
#: value crosses a threshold.
MOVING = frozenset(s for row in ROWS for s, t in row if t is None)
#: Bits of a stream key: ``source << 3 | stream``.
_STREAM_BITS = 3
#: Ticks fit below this in a (stream, tick) search key (2**40 ticks: years of music).
_TICK_SPAN = float(2**40)


def bend_value(pitch: int) -> int:
    """A pitch wheel position (-8192 .. 8191, 0 centred) as the bend stream's value, 0-8192."""
    return abs(int(pitch))


def is_on(stream: int, value: int) -> tuple[bool, ...]:
    """The held states the stream's ``value`` sets, one per threshold rule of the stream: what
    :class:`live.engine.WindowEngine` compares to tell whether an event changes a window (per
    event in the daemon's worker: plain Python)."""
    return tuple(
        value < -t if t < 0 else value >= t
        for row in ROWS
        for s, t in row
        if s == stream and t is not None
    )


def _holds(threshold: int, values: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    return values < -threshold if threshold < 0 else values >= threshold


@dataclass(frozen=True)
class Controls:
    """The controller events of every source, flattened: event ``i`` belongs to source
    ``source[i]``, stream ``stream[i]``, at ``ticks[i]`` with ``values[i]``. Events of one
    stream keep their order (the later of two on one tick decides what is held)."""

    source: npt.NDArray[np.int64]
    stream: npt.NDArray[np.int64]
    ticks: npt.NDArray[np.int64]
    values: npt.NDArray[np.int64]

    @classmethod
    def empty(cls) -> Controls:
        z = np.zeros(0, np.int64)
        return cls(z, z, z, z)

    def __len__(self) -> int:
        return len(self.ticks)


def control_rows(
    controls: Controls,
    n: int,
    t0: int,
    step_ticks: float,
    valid: int,
    *,
    spec: WindowSpec = WINDOW,
    out: npt.NDArray[np.uint8] | None = None,
) -> npt.NDArray[np.uint8]:
    """The :data:`N_ROWS` states of each of ``n`` sources at each step of the window starting
    at ``t0``: ``uint8 [n, 8, n_steps]`` (into ``out`` when given), 0 past ``valid`` steps.

    All streams at once (a few dozen numpy calls whatever their number: the daemon makes
    these at a bar line): per stream and step, where its events fall among all events sorted
    by stream and tick, how many of them turn its threshold state on, and which one holds
    when the step starts."""
    rows = np.zeros((n, N_ROWS, spec.n_steps), np.uint8) if out is None else out
    rows.fill(0)
    if len(controls) == 0 or valid == 0:
        return rows
    key_of = (controls.source << _STREAM_BITS) | controls.stream
    order = np.lexsort((controls.ticks, key_of))  # stable: a tick's events keep their order
    key_of, ticks, values = key_of[order], controls.ticks[order], controls.values[order]
    stream = key_of & 7
    threshold = _THRESHOLD[stream]
    on = np.where(threshold < 0, values < -threshold, values >= threshold)
    count = np.r_[0, np.cumsum(on)]
    search = key_of * _TICK_SPAN + ticks
    keys, first = np.unique(key_of, return_index=True)  # the streams present, and where each starts
    s0 = t0 + np.arange(valid) * step_ticks
    base = (keys * _TICK_SPAN)[:, None]
    lo = np.searchsorted(search, base + s0, side="left")
    hi = np.searchsorted(search, base + s0 + step_ticks, side="left")
    held = np.searchsorted(search, base + s0, side="right") - 1
    state = ((held >= first[:, None]) & on[held]) | (count[hi] - count[lo] > 0)
    source, kind = keys >> _STREAM_BITS, keys & 7
    target = rows[:, :, :valid]
    np.maximum.at(target, (source, _THRESHOLD_ROW[kind]), state.astype(np.uint8))
    moving = _MOVING_ROW[kind] >= 0
    if moving.any():
        inside = (hi > lo)[moving].astype(np.uint8)
        np.maximum.at(target, (source[moving], _MOVING_ROW[kind[moving]]), inside)
    return rows


def _tables() -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per stream: its threshold (each has one), the row it sets, its "moving" row or -1."""
    threshold = np.zeros(8, np.int64)
    threshold_row, moving_row = np.full(8, -1, np.int64), np.full(8, -1, np.int64)
    for r, rules in enumerate(ROWS):
        for stream, t in rules:
            if t is None:
                moving_row[stream] = r
            else:
                assert threshold_row[stream] < 0, "one threshold rule per stream"
                threshold[stream], threshold_row[stream] = t, r
    assert (threshold_row[: len(STREAMS)] >= 0).all()
    return threshold, threshold_row, moving_row


_THRESHOLD, _THRESHOLD_ROW, _MOVING_ROW = _tables()


# ------------------------------------------------------------------------------- files


def file_controls(midi: mido.MidiFile) -> dict[int, Controls]:
    """Every channel's controller events (0-15; channels that send none are absent), as one
    source each: ``source`` 0. Events in time order, a tick's in the order the tracks give
    them (track by track, then within the track), as ``kdlive replay`` feeds them."""
    raw: dict[int, list[tuple[int, int, int, int, int]]] = {}
    for t, track in enumerate(midi.tracks):
        tick = 0
        for i, msg in enumerate(track):
            tick += msg.time
            if msg.type == "control_change" and msg.control in CC_STREAM:
                stream, value = CC_STREAM[msg.control], msg.value
            elif msg.type == "pitchwheel":
                stream, value = BEND, bend_value(msg.pitch)
            else:
                continue
            raw.setdefault(msg.channel, []).append((tick, t, i, stream, value))
    out = {}
    for channel, events in raw.items():
        events.sort(key=lambda e: (e[0], e[1], e[2]))
        a = np.array(events, np.int64).reshape(-1, 5)
        out[channel] = Controls(np.zeros(len(a), np.int64), a[:, 3], a[:, 0], a[:, 4])
    return out


def controls_of(channels: Sequence[int], by_channel: dict[int, Controls]) -> Controls:
    """The controls of sources playing on ``channels`` (0-15; source ``i`` on
    ``channels[i]``): each hears its channel's (training: a part, every track's events of its
    channel)."""
    parts = [
        (i, by_channel[c]) for i, c in enumerate(channels) if c in by_channel and len(by_channel[c])
    ]
    if not parts:
        return Controls.empty()
    return Controls(
        np.concatenate([np.full(len(c), i, np.int64) for i, c in parts]),
        np.concatenate([c.stream for _, c in parts]),
        np.concatenate([c.ticks for _, c in parts]),
        np.concatenate([c.values for _, c in parts]),
    )
