"""Raw MIDI in, engine calls out: message parsing and the song position from the DAW's clock.

:class:`Transport` turns each timestamped message from the port into positions for the
:class:`live.engine.WindowEngine`:

- MIDI clock (24 per quarter) counts the song position: Start puts it at bar 1, Continue
  resumes, Stop halts, Song Position Pointer relocates (the first window is then the first
  whole one from the new position on); the tempo is the mean clock interval over the last beat,
  so jitter barely moves it. A note between two clocks is placed by interpolating from the
  last clock, never past the next one.
- Without clock, an internal clock at ``--bpm`` starts at the first note. When the clock stops
  arriving while notes still come, the transport falls back to the internal clock at the last
  tempo, on the same bar grid, and says so; a clock arriving again takes over.

For a contract-3 student (an engine with ``controls``) the tracked controllers (sustain pedal,
modulation, expression, ... :data:`live.controls.CC_STREAM`) and pitch bend go to the engine at
their positions; otherwise, like every other controller, they are ignored.

Malformed input (stray data bytes, truncated messages, undefined status bytes, sysex without
its end, out-of-range values) is counted and dropped, never raised.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from live.controls import BEND, CC_STREAM, bend_value
from live.engine import LIVE_TICKS_PER_QUARTER, TICKS_PER_CLOCK, ClosedWindow, WindowEngine
from live.errors import SettingError

log = logging.getLogger("kdlive")

NS = 1_000_000_000
CLOCK, START, CONTINUE, STOP, SPP = 0xF8, 0xFA, 0xFB, 0xFC, 0xF2
#: Data bytes after each channel-voice status (high nibble) and system-common status.
_VOICE_LEN = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
_COMMON_LEN = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0}
_REALTIME = {0xF8, 0xFA, 0xFB, 0xFC, 0xFE, 0xFF}
#: Tempi the internal clock runs at (BPM).
BPM_RANGE = (10.0, 400.0)


def check_bpm(bpm: float) -> float:
    """``bpm``, if the internal clock can run at it (:data:`BPM_RANGE`); else
    :class:`SettingError`."""
    lo, hi = BPM_RANGE
    if not lo <= bpm <= hi:
        raise SettingError(f"{{bpm}} {bpm:g} is out of range: give {lo:g} to {hi:g}", "bpm")
    return bpm


@dataclass
class TransportCounters:
    messages: int = 0
    malformed: int = 0
    sysex: int = 0
    unterminated_sysex: int = 0
    clocks: int = 0
    clock_fallbacks: int = 0
    ignored: int = 0


def classify(msg: Sequence[int]) -> str | None:
    """``"voice"``, ``"realtime"``, ``"common"``, ``"sysex"``, or None for a malformed message
    (as delivered by a MIDI API: one message per call)."""
    n = len(msg)
    if n == 0:
        return None
    status = msg[0]
    if not isinstance(status, int) or status < 0x80 or status > 0xFF:
        return None  # a data byte where a status byte must be (or not a byte at all)
    if status == 0xF0:
        return "sysex" if msg[-1] == 0xF7 and all(0 <= b < 0x80 for b in msg[1:-1]) else None
    if status in _REALTIME:
        return "realtime" if n == 1 else None
    want = _COMMON_LEN.get(status) if status >= 0xF0 else _VOICE_LEN[status & 0xF0]
    if want is None or n != want + 1:
        return None  # undefined status (F4, F5, F7, F9, FD) or wrong length
    if not all(isinstance(b, int) and 0 <= b < 0x80 for b in msg[1:]):
        return None
    return "common" if status >= 0xF0 else "voice"


class Transport:
    """Feeds an engine from raw messages with arrival times in ns (``time.perf_counter_ns``, or
    JACK's sample clock: any clock, as long as the caller's deadlines use the same one).

    Args:
        engine: the window engine (its ``ticks_per_quarter`` must be the live resolution).
        bpm: tempo of the internal clock, used when no MIDI clock arrives (:data:`BPM_RANGE`).
        clock_timeout: seconds without a clock tick after which a running clock counts as
            gone (also at least 6 clock periods).
    """

    def __init__(
        self,
        engine: WindowEngine,
        *,
        bpm: float = 120.0,
        clock_timeout: float = 0.25,
        say: Callable[[str], None] = log.info,
    ) -> None:
        if engine.tpq != LIVE_TICKS_PER_QUARTER:
            raise ValueError("the live engine must run at LIVE_TICKS_PER_QUARTER")
        self.engine, self.say = engine, say
        self.counters = TransportCounters()
        self.default_period = self._period_of(check_bpm(bpm))
        self.clock_timeout_ns = int(clock_timeout * NS)
        #: Arrival times of the last clocks without a pause: the tempo is their mean spacing
        #: (jitter only enters through the two ends: +-1 ms over 24 clocks is 0.4 % at 120 BPM).
        self.clock_times: deque[int] = deque(maxlen=25)
        self.mode = "idle"  # idle | clock | stopped | internal
        self.clock_count = 0  # clocks since song start while in clock mode
        self.last_clock_ns = 0
        self.origin_ns = 0  # internal clock: time of position origin_pos
        self.origin_pos = 0
        #: After Start / Continue the next clock marks the current position, later ones step.
        self.first_clock_pending = False
        self.clock_lost = False
        #: The last Program Change of each channel (index 1-16), or None: the instrument the
        #: channel declares (``kdlive listen`` reports how much each window sounds like it).
        self.programs: list[int | None] = [None] * 17

    # ----------------------------------------------------------------------- tempo

    @staticmethod
    def _period_of(bpm: float) -> int:
        return int(round(60 * NS / (bpm * 24)))

    @property
    def period_ns(self) -> int:
        """Nanoseconds per MIDI clock over the last beat of clocks, or the ``bpm`` given's."""
        n = len(self.clock_times)
        if n >= 4:
            return max(1, (self.clock_times[-1] - self.clock_times[0]) // (n - 1))
        return self.default_period

    @property
    def bpm(self) -> float:
        return 60 * NS / (self.period_ns * 24)

    def position(self, t_ns: int) -> int:
        """The song position (ticks) at time ``t_ns``."""
        if self.mode == "clock" and not self.first_clock_pending:
            frac = (t_ns - self.last_clock_ns) * TICKS_PER_CLOCK // max(1, self.period_ns)
            return self.clock_count * TICKS_PER_CLOCK + int(min(max(frac, 0), TICKS_PER_CLOCK - 1))
        if self.mode == "internal":
            return self.origin_pos + (t_ns - self.origin_ns) * TICKS_PER_CLOCK // self.period_ns
        return self.clock_count * TICKS_PER_CLOCK  # stopped / idle: time stands still

    def deadline_ns(self) -> int | None:
        """When the internal clock reaches the next bar line where windows close (the worker
        wakes then), or when a running MIDI clock should be declared gone; None if neither."""
        if self.mode == "internal":
            ticks = self.engine.next_close() - self.origin_pos
            return self.origin_ns + -(-ticks * self.period_ns // TICKS_PER_CLOCK)
        if self.mode == "clock" and not self.clock_lost:
            return self.last_clock_ns + self._timeout()
        return None

    def _clock_gone(self, t_ns: int) -> bool:
        return self.mode == "clock" and t_ns - self.last_clock_ns > self._timeout()

    def ns_until(self, pos: int, t_ns: int) -> int | None:
        """Nanoseconds from ``t_ns`` until the song reaches ``pos`` at the current tempo, or
        None while time stands still (stopped, or no clock and no notes yet)."""
        if self.mode not in ("clock", "internal"):
            return None
        return (pos - self.position(t_ns)) * self.period_ns // TICKS_PER_CLOCK

    def _timeout(self) -> int:
        return max(self.clock_timeout_ns, 6 * self.period_ns)

    # ---------------------------------------------------------------------- messages

    def tick(self, t_ns: int) -> list[ClosedWindow]:
        """Time passes with no message (the worker's deadline): close what is due."""
        if self._clock_gone(t_ns) and not self.clock_lost:
            self.clock_lost = True  # said once; the next note falls back to the internal clock
            self.say(f"MIDI clock stopped arriving (last at {self.bpm:.1f} BPM)")
        if self.mode == "internal":
            return self.engine.advance(self.position(t_ns))
        return []

    def handle(self, t_ns: int, msg: Sequence[int]) -> list[ClosedWindow]:
        """One message from the port, received at ``t_ns``; returns the windows it closed."""
        c = self.counters
        c.messages += 1
        kind = classify(msg)
        if kind is None:
            c.malformed += 1
            if len(msg) and msg[0] == 0xF0:
                c.unterminated_sysex += 1
            return []
        status = msg[0]
        if kind == "voice":
            return self._voice(t_ns, status, msg)
        if kind == "sysex":
            c.sysex += 1
            return []
        if status == CLOCK:
            return self._clock(t_ns)
        if status in (START, CONTINUE):
            if status == START:
                self._relocate(0, t_ns)
            self.mode, self.first_clock_pending = "clock", True
            self.last_clock_ns = t_ns
            return []
        if status == STOP:
            if self.mode in ("clock", "internal"):
                self.clock_count = self.position(t_ns) // TICKS_PER_CLOCK
            self.mode = "stopped"
            self.engine.stop()
            return []
        if status == SPP:
            beats16 = msg[1] | (msg[2] << 7)  # sixteenth notes = 6 clocks each
            self._relocate(beats16 * 6, t_ns)
            return []
        c.ignored += 1  # active sensing, reset, MTC quarter frames, song select, tune request
        return []

    def _clock(self, t_ns: int) -> list[ClosedWindow]:
        c = self.counters
        c.clocks += 1
        self.clock_lost = False
        if self.clock_times and not 0 < t_ns - self.clock_times[-1] < NS // 2:
            self.clock_times.clear()  # a pause (or time going backwards): start over
        self.clock_times.append(t_ns)
        if self.mode in ("idle", "internal"):
            # Clock with no Start: running already (the daemon started mid-song). Follow it,
            # keeping the position we have (the internal clock's grid, or 0).
            was = self.mode
            pos = self.position(t_ns) if was == "internal" else self.engine.position
            self.clock_count = -(-pos // TICKS_PER_CLOCK)
            self.mode = "clock"
            if was == "internal":
                self.say(f"MIDI clock arrived: following it ({self.bpm:.1f} BPM)")
            else:
                self.say(
                    "MIDI clock without Start: bar lines are counted from now; press play "
                    "in the DAW (or send Start) to line them up"
                )
            self.last_clock_ns = t_ns
            return self.engine.advance(self.clock_count * TICKS_PER_CLOCK)
        self.last_clock_ns = t_ns
        if self.mode == "stopped":
            return []  # many DAWs send clock while stopped, to carry the tempo
        if self.first_clock_pending:
            self.first_clock_pending = False
            return self.engine.advance(self.clock_count * TICKS_PER_CLOCK)
        self.clock_count += 1
        return self.engine.advance(self.clock_count * TICKS_PER_CLOCK)

    def _relocate(self, clocks: int, t_ns: int) -> None:
        self.clock_count = clocks
        self.engine.relocate(clocks * TICKS_PER_CLOCK)
        if self.mode == "internal":
            self.mode = "stopped"

    def _voice(self, t_ns: int, status: int, msg: Sequence[int]) -> list[ClosedWindow]:
        kind, channel = status & 0xF0, (status & 0x0F) + 1
        if kind == 0xC0:
            self.programs[channel] = msg[1]
            return []
        if kind == 0xE0 or kind == 0xB0 and msg[1] in CC_STREAM:
            return self._control(t_ns, channel, kind, msg)
        if kind not in (0x80, 0x90, 0xB0):
            self.counters.ignored += 1
            return []
        if kind == 0xB0 and msg[1] not in (120, 123):  # all sound off / all notes off
            self.counters.ignored += 1
            return []
        closed: list[ClosedWindow] = []
        if self.mode in ("idle", "stopped") and kind == 0x90 and msg[2] > 0:
            closed = self._start_internal(t_ns)
        elif self._clock_gone(t_ns) and kind == 0x90 and msg[2] > 0:
            # The clock went away while notes still come: carry on at its last tempo, on the
            # same grid, as if its ticks had kept coming.
            self.mode, self.origin_ns = "internal", self.last_clock_ns
            self.origin_pos = self.clock_count * TICKS_PER_CLOCK
            self.counters.clock_fallbacks += 1
            self.say(f"notes without MIDI clock: internal clock at {self.bpm:.1f} BPM")
        if self.mode == "internal":
            closed += self.engine.advance(self.position(t_ns))
        pos = self.position(t_ns)
        if kind == 0x90 and msg[2] > 0:
            self.engine.note_on(channel, msg[1], pos, msg[2])
        elif kind in (0x80, 0x90):
            self.engine.note_off(channel, msg[1], pos)
        else:
            self.engine.all_notes_off(channel, pos)
        return closed

    def _control(
        self, t_ns: int, channel: int, kind: int, msg: Sequence[int]
    ) -> list[ClosedWindow]:
        """A tracked controller or the pitch wheel: to the engine at its position (a contract-3
        engine), else ignored. It never starts the internal clock: only notes do."""
        if not self.engine.controls:
            self.counters.ignored += 1
            return []
        closed: list[ClosedWindow] = []
        if self.mode == "internal":
            closed = self.engine.advance(self.position(t_ns))
        if kind == 0xE0:
            stream, value = BEND, bend_value((msg[1] | msg[2] << 7) - 8192)
        else:
            stream, value = CC_STREAM[msg[1]], msg[2]
        self.engine.control(channel, stream, value, self.position(t_ns))
        return closed

    def _start_internal(self, t_ns: int) -> list[ClosedWindow]:
        """Notes with no clock running: the internal clock starts here, from where the song
        position stands (bar 1 if nothing ever played)."""
        pos = self.clock_count * TICKS_PER_CLOCK
        if self.mode == "idle" or self.engine.counters.notes == 0 and pos == 0:
            self.engine.relocate(0)
            pos = 0
        else:
            self.counters.clock_fallbacks += 1
            self.say(f"no MIDI clock: internal clock at {self.bpm:.1f} BPM from here")
        self.mode, self.origin_ns, self.origin_pos = "internal", t_ns, pos
        return []
