"""Contract v2: what the student hears of a part in a window, beyond the paper's roll.

Contract v1 (the paper, :func:`live.windows.window_roll`) gives the model one channel: the
part's notes sounding on the 128-pitch x 16-step grid. Contract v2 adds what a DAW really sends,
as more channels on the same grid, all small integers (``uint8``)::

    0  sounding   1 where a note of the part sounds during the step (v1's roll)
    1  onset      1 where a note of the part starts in the step
    2  velocity   the velocity (1-127) of the loudest note of the part starting there
    3  ensemble   1 where a note of another pitched source sounds during the step
    4  drums      1 where a drum hit starts in the step (pitch = its General MIDI key)

Contract v3 (:mod:`live.controls`) is contract v2 with the part's controllers: rows 0-7 of the
drums plane (keys no General MIDI kit has) hold eight binary states of the source's channel
(pedal, bends, modulation, expression, ...) at each step, instead of the kits' onsets there.

A *source* is what plays: a part of a MIDI file in training (track, channel, program), a MIDI
channel live. :func:`window_inputs` computes every source's input of one window in one call,
from the notes of all of them (the song's parts in training, the 16 channels live), so training,
``kdlive replay`` and ``kdlive listen`` make the same bytes. A model scales the velocity channel
itself (the bundle's input is these integers as float32).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from live.contract import WINDOW, WindowSpec
from live.controls import N_ROWS, Controls, control_rows
from live.midifile import BarGrid, Part
from live.windows import window_bounds, window_roll

CHANNELS_V2 = ("sounding", "onset", "velocity", "ensemble", "drums")
SOUNDING, ONSET, VELOCITY, ENSEMBLE, DRUMS = range(len(CHANNELS_V2))


@dataclass(frozen=True)
class Sources:
    """The notes of every source that can sound in a window, flattened: note ``i`` belongs to
    source ``source[i]`` (0 .. ``n - 1``); ``drum[s]`` says whether source ``s`` is a drum kit.
    Times are ticks; a note sounds during ``[start, end)``."""

    source: npt.NDArray[np.int64]
    pitches: npt.NDArray[np.int64]
    starts: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]
    velocities: npt.NDArray[np.int64]
    drum: npt.NDArray[np.bool_]

    @property
    def n(self) -> int:
        return len(self.drum)


def window_inputs(
    sources: Sources,
    t0: int,
    t1: int,
    step_ticks: float,
    *,
    spec: WindowSpec = WINDOW,
    out: npt.NDArray[np.uint8] | None = None,
    controls: Controls | None = None,
) -> tuple[npt.NDArray[np.uint8], int]:
    """Every source's contract-v2 input for the window ``[t0, t1)`` (ticks); with ``controls``
    (the sources' controller events), contract v3's.

    Returns ``(inputs, valid_steps)``: ``inputs`` is ``uint8 [n, 5, n_pitches, n_steps]`` (into
    ``out`` when given), channels as in the module docstring; columns past ``valid_steps`` (a
    3/4 window fills 12 of 16) stay 0. Channel 0 of a source is exactly
    :func:`live.windows.window_roll` of its notes alone.
    """
    n, P, S = sources.n, spec.n_pitches, spec.n_steps
    inputs = np.zeros((n, len(CHANNELS_V2), P, S), np.uint8) if out is None else out
    inputs.fill(0)
    if n == 0:
        return inputs, spec.valid_steps((t1 - t0) / step_ticks)
    # All sources' sounding rolls in one quantiser call: row = source * P + pitch.
    flat = np.zeros((n * P, S), np.uint8)
    rows = sources.source * P + sources.pitches
    all_rows = replace(spec, n_pitches=n * P)
    valid = window_roll(rows, sources.starts, sources.ends, t0, t1, step_ticks, flat, all_rows)
    sounding = flat.reshape(n, P, S)
    inputs[:, SOUNDING] = sounding
    # Onsets in the window, at the step that holds them; the loudest velocity per cell.
    start = (sources.starts >= t0) & (sources.starts < t1)
    steps = np.floor((sources.starts[start] - t0) / step_ticks).astype(np.int64)
    keep = steps < valid
    src, pitch, step = sources.source[start][keep], sources.pitches[start][keep], steps[keep]
    inputs[src, ONSET, pitch, step] = 1
    cells = (src, np.full_like(src, VELOCITY), pitch, step)
    np.maximum.at(inputs, cells, sources.velocities[start][keep].astype(np.uint8))
    # The ensemble: whatever another pitched source sounds; the drums: every kit's onsets.
    pitched = ~sources.drum
    count = sounding[pitched].sum(axis=0, dtype=np.int64)
    inputs[:, ENSEMBLE] = (count[None] - sounding * pitched[:, None, None]) > 0
    if sources.drum.any():
        inputs[:, DRUMS] = inputs[sources.drum, ONSET].max(axis=0)
    if controls is not None:
        control_rows(controls, n, t0, step_ticks, valid, spec=spec, out=inputs[:, DRUMS, :N_ROWS])
    return inputs, valid


def sources_of(parts: Sequence[Part]) -> Sources:
    """The notes of ``parts`` (a song's, in training) as :class:`Sources`: source ``i`` is
    ``parts[i]``, a drum kit when it plays on channel 10."""
    counts = [len(p) for p in parts]
    cat = {
        key: np.concatenate([getattr(p, key) for p in parts]) if parts else np.zeros(0, np.int64)
        for key in ("pitches", "starts", "ends", "velocities")
    }
    return Sources(
        source=np.repeat(np.arange(len(parts), dtype=np.int64), counts),
        drum=np.array([p.is_drum for p in parts], bool),
        **cat,
    )


def song_inputs(
    sources: Sources,
    bars: BarGrid,
    ticks_per_beat: int,
    *,
    hop_bars: int = 1,
    spec: WindowSpec = WINDOW,
) -> Iterator[tuple[int, int, int, npt.NDArray[np.uint8], int]]:
    """``(bar, start_tick, end_tick, inputs, valid_steps)`` of every whole window of a song
    (:func:`live.windows.window_bounds`): :func:`window_inputs` of all its sources."""
    step_ticks = ticks_per_beat / spec.steps_per_quarter
    for bar, t0, t1 in window_bounds(bars, hop_bars=hop_bars, spec=spec):
        inputs, valid = window_inputs(sources, t0, t1, step_ticks, spec=spec)
        yield bar, t0, t1, inputs, valid
