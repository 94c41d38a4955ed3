"""Cut a part into 2-bar windows on its song's bar grid: the offline half of the contract.

Training calls :func:`cut_windows` on every stem; the live engine (:mod:`live.engine`, which
``kdlive listen`` and ``kdlive replay`` run) calls :func:`window_roll`, the function that
:func:`cut_windows` itself uses, so their rolls are equal bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from live.contract import WINDOW, WindowSpec, quantize
from live.midifile import BarGrid, Part


@dataclass(frozen=True)
class Window:
    """One window of a part: bars ``[bar, bar + 2)``, ticks ``[start_tick, end_tick)``."""

    bar: int  # 0-based index of the first bar
    start_tick: int
    end_tick: int
    valid_steps: int  # columns the meter fills (16 in 4/4, 12 in 3/4)
    roll: npt.NDArray[np.uint8]  # [n_pitches, n_steps], 0/1


def window_bounds(
    bars: BarGrid, *, hop_bars: int = 1, spec: WindowSpec = WINDOW
) -> Iterator[tuple[int, int, int]]:
    """``(bar, start_tick, end_tick)`` of every whole window on the grid, ``hop_bars`` apart."""
    if hop_bars < 1:
        raise ValueError("hop_bars must be >= 1")
    for bar in range(0, len(bars) - spec.bars, hop_bars):
        yield bar, int(bars.starts[bar]), int(bars.starts[bar + spec.bars])


def cut_windows(
    part: Part,
    bars: BarGrid,
    ticks_per_beat: int,
    *,
    hop_bars: int = 1,
    spec: WindowSpec = WINDOW,
    keep_empty: bool = False,
) -> Iterator[Window]:
    """Yield the windows of ``part`` (rolls from :func:`quantize`); empty ones are dropped.

    A note reaches into every window it sounds in, so a held note appears in the next window too.
    """
    step_ticks = ticks_per_beat / spec.steps_per_quarter
    for bar, t0, t1 in window_bounds(bars, hop_bars=hop_bars, spec=spec):
        roll = np.zeros((spec.n_pitches, spec.n_steps), np.uint8)
        valid = window_roll(part.pitches, part.starts, part.ends, t0, t1, step_ticks, roll, spec)
        if keep_empty or roll.any():
            yield Window(bar, t0, t1, valid, roll)


def window_roll(
    pitches: npt.NDArray[np.int64],
    starts: npt.NDArray[np.int64],
    ends: npt.NDArray[np.int64],
    t0: int,
    t1: int,
    step_ticks: float,
    out: npt.NDArray,
    spec: WindowSpec = WINDOW,
) -> int:
    """Fill ``out`` with the roll of the window ``[t0, t1)`` (ticks) of these notes; returns
    the window's valid steps. The one place where note times become steps: the offline cutter
    and the live engine both call it, so their rolls are equal bit for bit.

    A note belongs to the window when it starts before the window ends and has not ended
    before it starts; a note still sounding is passed with ``end >= t1``.
    """
    sel = (starts < t1) & (ends >= t0)
    valid = spec.valid_steps((t1 - t0) / step_ticks)
    quantize(
        pitches[sel],
        (starts[sel] - t0) / step_ticks,
        (ends[sel] - t0) / step_ticks,
        valid_steps=valid,
        spec=spec,
        out=out,
    )
    return valid
