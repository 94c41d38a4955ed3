"""Computing ahead: the model's answers for the pending windows, made while the input is quiet
before the bar line, so that at the bar line the daemon only sends them.

A window's input is final once no event before its bar line is left to come. The engine says
what is pending (:meth:`live.engine.WindowEngine.pending`) and names it with a key that changes
with every event heard (:meth:`~live.engine.WindowEngine.pending_key`); :class:`Lookahead`
decides when to compute, keeps the answers with the key they were computed for, and hands them
back at the close only if the windows that closed had that key
(:attr:`~live.engine.WindowEngine.closed_key`) and the song did not stop or jump since (the
engine's ``epoch``). Otherwise the daemon computes at the close, as without it; the answers
are the same either way (the same inputs through the same model).

Input that keeps changing the pending windows (controllers crossing a threshold on every MIDI
clock) would make every computation ahead but the last one before the bar line a waste, and on
a small machine those computations take the CPU the audio thread needs. So before the last
clock period ahead of the bar line it computes only once the pending windows have stayed the
same for a whole clock period; in that last period, as soon as the input is quiet.
"""

from __future__ import annotations

from typing import Protocol

from live.engine import PendingKey, WindowEngine
from live.parts import Answers, PartTracker

#: Compute ahead once the input has been quiet this long (s): what a DAW sends together (a
#: chord, the controllers of one clock) arrives within an audio period. Before the bar line's
#: last clock period, the pending windows must also have stayed the same for a clock period.
QUIET_S = 0.001
#: ... and only if the bar line is at least this far away (ns), else the closing event could
#: wait for the model.
MARGIN_NS = 3_000_000


class Clock(Protocol):
    """What the lookahead needs of :class:`live.transport.Transport`."""

    @property
    def period_ns(self) -> int:
        """Nanoseconds per MIDI clock at the current tempo."""

    def ns_until(self, pos: int, t_ns: int) -> int | None: ...


class Lookahead:
    """The answers computed ahead for the pending windows, and when to compute them.

    Args:
        engine: the window engine (read only: its pending windows, keys and epoch).
        transport: how far away the next bar line is.
        parts: computes answers (nothing is kept there until the daemon commits them).
        quiet_s: see :data:`QUIET_S`.
        margin_ns: see :data:`MARGIN_NS`.
    """

    def __init__(
        self,
        engine: WindowEngine,
        transport: Clock,
        parts: PartTracker,
        *,
        quiet_s: float = QUIET_S,
        margin_ns: int = MARGIN_NS,
    ) -> None:
        self.engine, self.transport, self.parts = engine, transport, parts
        self.quiet_s, self.margin_ns = quiet_s, margin_ns
        #: The pending windows' key when :attr:`answers` were computed (None: nothing computed).
        self.key: PendingKey | None = None
        #: Their answers (None if no window was pending, or the model failed).
        self.answers: Answers | None = None
        #: The bar line (its ``end_bar``) whose windows failed to compute ahead: not tried again.
        self.gave_up_at: int | None = None
        #: The pending windows' key as :meth:`due` last saw it, and when it first saw it.
        self._seen: tuple[PendingKey | None, int] = (None, 0)
        #: Times the pending windows were computed ahead.
        self.computed = 0
        #: Closes whose answers were the ones computed ahead (``--stats``: computed_ahead).
        self.used = 0

    def wait_s(self, t_ns: int | None = None) -> float | None:
        """How long the worker may wait for input before this wants a chance to compute (None:
        as long as it likes: nothing is left to compute for the pending windows, or the song
        is stopped). Given the time ``t_ns``, and pending windows :meth:`due` has seen before,
        until it could first say yes: when they have stayed the same for a clock period, or
        the bar line's last clock period begins, whichever comes first (input that arrives
        before then wakes the worker anyway); else :attr:`quiet_s`."""
        key = self.engine.pending_key()
        if key == self.key or key.end_bar == self.gave_up_at:
            return None
        if t_ns is None or key != self._seen[0]:
            return self.quiet_s
        left = self.transport.ns_until(self.engine.next_close(), t_ns)
        if left is None:
            return None
        period = self.transport.period_ns
        until = min(left - period - self.margin_ns, self._seen[1] + period - t_ns)
        return max(until / 1e9, self.quiet_s)

    def due(self, t_ns: int) -> bool:
        """Whether to compute now, the input having been quiet for :attr:`quiet_s` at ``t_ns``:
        something is left to compute, the bar line is more than :attr:`margin_ns` away, and
        either it is less than a clock period further or the pending windows have not changed
        for a clock period (see the module docstring)."""
        if self.wait_s() is None:
            return False
        key = self.engine.pending_key()
        if key != self._seen[0]:
            self._seen = (key, t_ns)
        left = self.transport.ns_until(self.engine.next_close(), t_ns)
        if left is None or left <= self.margin_ns:
            return False
        period = self.transport.period_ns
        return left <= period + self.margin_ns or t_ns - self._seen[1] >= period

    def compute(self) -> None:
        """Compute the pending windows' answers. If the model fails, the error goes up and this
        bar line is not tried again ahead (its close computes them anyway)."""
        key = self.engine.pending_key()
        self.key, self.answers = None, None
        windows = self.engine.pending()
        self.computed += 1
        try:
            answers = self.parts.compute(windows, self.engine.epoch) if windows else None
        except Exception:
            self.gave_up_at = key.end_bar
            raise
        self.key, self.answers = key, answers

    def take(self) -> Answers | None:
        """At a close: the answers computed ahead, if they are those of the windows that just
        closed (same key, same epoch), else None (compute them now). Either way they are
        forgotten: they were for this bar line only."""
        key, answers = self.key, self.answers
        self.key, self.answers = None, None
        if answers is None or key != self.engine.closed_key or answers.epoch != self.engine.epoch:
            return None
        self.used += 1
        return answers
