"""Each channel's running answer: what its part sounds written for, having heard it so far.

Beside a window's own answer, the daemon (and ``kdlive replay``) keeps a *running answer* per
channel. A contract-2 student with a history carries a state from window to window
(:meth:`live.model.Model.step`); any other model's running answer is the mean of the channel's
window answers so far. A bundle may mix the two: its ``history_share`` of the history's
answer, the rest the mean (``experiments/running_mix.py`` chooses it on validation). Either
starts afresh, as training does (``train.history``), on Start, Stop and a Song Position
Pointer jump (the engine's ``epoch``), and when the part comes back after more than
:data:`RESET_BARS` bars without a window.

Answers are computed first (:meth:`PartTracker.compute`, which may run ahead of the bar line)
and kept only when they are sent (:meth:`PartTracker.commit`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

import numpy as np
import numpy.typing as npt

from live.channels import DRUM_CHANNEL
from live.contracts import Contract
from live.taxonomy import N_CLASSES

#: A part back after more than this many bars without a window starts afresh.
RESET_BARS = 4
NEVER = -(10**9)


class Window(Protocol):
    """A closed window, as the engine gives it (:class:`live.engine.ClosedWindow`)."""

    channel: int
    bar: int
    inputs: npt.NDArray[np.uint8]


class StepModel(Protocol):
    """What the tracker needs of :class:`live.model.Model`."""

    contract: Contract
    state_size: int
    history_share: float

    def predict(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...

    def step(
        self, x: npt.NDArray[np.float32], state: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...


@dataclass
class Answers:
    """The answers for windows that close together, and the states they lead to."""

    channels: npt.NDArray[np.int64]  # 1-16, one per window
    bars: npt.NDArray[np.int64]
    window: npt.NDArray[np.float32]  # [B, 8] each window's own answer
    part: npt.NDArray[np.float32]  # [B, 8] each channel's running answer
    state: npt.NDArray[np.float32]  # [B, S] (the model's state, the running sum, or both)
    count: npt.NDArray[np.int64]  # windows in each running answer
    epoch: int


class PartTracker:
    """The running answers of the 16 channels (see the module docstring)."""

    def __init__(self, model: StepModel) -> None:
        self.model = model
        # Without a state, the sum of the window answers; with one mixed with their mean, the
        # model's state and that sum side by side.
        self.mean_share = 1.0 - model.history_share if model.state_size else 1.0
        self.size = model.state_size + (N_CLASSES if self.mean_share else 0)
        self.state = np.zeros((17, self.size), np.float32)
        self.count = np.zeros(17, np.int64)
        self.last_bar = np.full(17, NEVER, np.int64)
        self.epoch = 0
        self.batch = np.zeros((16, *model.contract.input_shape), np.float32)

    def compute(self, windows: Sequence[Window], epoch: int) -> Answers:
        """The answers for ``windows`` that closed together, given the engine's ``epoch``;
        nothing is kept until :meth:`commit`.

        They are one bar line's (at most one window per channel) or, when time jumped past
        several bar lines at once (a file's last event, a gap in the clock), several in bar
        order: then each bar line's windows are answered in turn, every part carrying its state
        from its window before, as if each bar line had been committed (as training's
        ``train.history`` runs a part's windows in order)."""
        lines = _bar_lines(windows)
        if len(lines) == 1:
            return self._compute(windows, epoch)
        kept = (self.state.copy(), self.count.copy(), self.last_bar.copy(), self.epoch)
        try:
            answers = []
            for line in lines:
                answers.append(self._compute(line, epoch))
                self.commit(answers[-1])
        finally:
            self.state, self.count, self.last_bar, self.epoch = kept
        rows = {f: np.concatenate([getattr(a, f) for a in answers]) for f in _ROWS}
        return Answers(**rows, epoch=epoch)

    def _compute(self, windows: Sequence[Window], epoch: int) -> Answers:
        """The answers for one bar line's windows (at most one per channel)."""
        channels = np.array([w.channel for w in windows], np.int64)
        bars = np.array([w.bar for w in windows], np.int64)
        fresh = (epoch != self.epoch) | (bars - self.last_bar[channels] > RESET_BARS)
        state = np.where(fresh[:, None], 0, self.state[channels]).astype(np.float32)
        count = np.where(fresh, 0, self.count[channels]) + 1
        batch = self.batch[: len(windows)]
        for i, w in enumerate(windows):
            batch[i] = self.model.contract.model_input(w.inputs)
        drums = channels == DRUM_CHANNEL + 1
        history = state[:, : self.model.state_size]  # the model's own state (a view)
        if drums.any() and not drums.all():
            # The drums, classified only when asked (--channels), are answered apart: a
            # student whose channels attend to each other learnt bar lines of pitched parts
            # alone, and the others' answers must not change with that choice.
            window = np.empty((len(windows), N_CLASSES), np.float32)
            part = np.empty_like(window)
            for rows in (~drums, drums):
                window[rows], part[rows], history[rows] = self._answer(batch[rows], history[rows])
        else:
            window, part, history = self._answer(batch, history)
        if self.mean_share:  # the mean of the window answers so far, alone or mixed in
            total = state[:, self.model.state_size :] + window
            mean = total / count[:, None]
            part = mean if self.mean_share == 1 else part + self.mean_share * (mean - part)
            state = np.concatenate([history, total], axis=1)
        else:
            state = history
        return Answers(channels, bars, window, part, state, count, epoch)

    def _answer(
        self, batch: npt.NDArray[np.float32], state: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """``(window, part, state)`` of one model call; without a state, the part answer and
        state are the caller's to make from the window answers."""
        if self.model.state_size:
            return self.model.step(batch, state)
        window = self.model.predict(batch)
        return window, window, state

    def commit(self, answers: Answers) -> None:
        """Keep the states of answers that were sent."""
        if answers.epoch != self.epoch:
            self.count[:] = 0
            self.last_bar[:] = NEVER
            self.epoch = answers.epoch
        # A channel's last window wins (several bar lines may have closed together).
        rows = answers.channels
        last = len(rows) - 1 - np.unique(rows[::-1], return_index=True)[1]
        rows = rows[last]
        self.state[rows], self.count[rows], self.last_bar[rows] = (
            answers.state[last],
            answers.count[last],
            answers.bars[last],
        )


#: The fields of :class:`Answers` that hold one row per window.
_ROWS = ("channels", "bars", "window", "part", "state", "count")


def _bar_lines(windows: Sequence[Window]) -> list[Sequence[Window]]:
    """``windows`` cut where the bar changes: one run per bar line that closed."""
    cuts = [i for i in range(1, len(windows)) if windows[i].bar != windows[i - 1].bar]
    bounds = [0, *cuts, len(windows)]
    return [windows[a:b] for a, b in pairwise(bounds) if b > a] or [windows]
