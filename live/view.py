"""What `kdlive listen` shows in a terminal: a table that follows each channel, redrawn from a
snapshot a few times a second.

The worker never draws. At each bar line it replaces one small dict of rows
(:attr:`live.daemon.Daemon.board`); the main thread takes a :class:`Snapshot` of it and of the
counters (no lock: the worker swaps the dict whole) and rich renders that. So the view costs
the worker one dict per bar line, whatever the terminal does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from rich.console import RenderableType

#: Redraws per second at most.
REFRESH_PER_SECOND = 4
#: What the transport's mode means, for the footer.
CLOCK_SOURCES = {
    "clock": "MIDI clock",
    "internal": "internal clock",
    "stopped": "stopped",
    "idle": "waiting for clock or notes",
}


class ChannelRow(NamedTuple):
    """One channel's latest window, as the worker left it."""

    channel: int
    bar: int  # 1-based bar where the window starts
    window: str  # the window answer's class
    confidence: float  # and its probability
    part: str  # the running answer's class
    part_confidence: float
    notes_per_bar: float
    declared: str | None = None
    likeness: float | None = None


@dataclass
class Snapshot:
    """Everything the view draws, copied out of the daemon at one moment."""

    rows: list[ChannelRow] = field(default_factory=list)
    bar: int = 0  # 1-based, where the song position stands
    beat: int = 0  # 1-based
    bpm: float = 120.0
    clock: str = "idle"  # the transport's mode
    latency: dict[str, float] = field(default_factory=dict)  # p50_ms, p99_ms, ...
    windows: int = 0
    xruns: int = 0
    reconnects: int = 0
    errors: int = 0


def snapshot(daemon: Any) -> Snapshot:
    """A :class:`live.daemon.Daemon`'s board and counters now (called from the drawing
    thread; typed loosely so that the daemon can import this module's rows)."""
    engine, transport = daemon.engine, daemon.transport
    pos = engine.position
    bar = engine.bars.index(pos)
    beat_ticks = engine.tpq * 4 // getattr(engine.bars, "denominator", 4)
    port = daemon.midi_in.counters() if daemon.midi_in is not None else {}
    return Snapshot(
        rows=sorted(daemon.board.values()),
        bar=bar + 1,
        beat=(pos - engine.bars.start(bar)) // max(1, beat_ticks) + 1,
        bpm=transport.bpm,
        clock=transport.mode,
        latency=daemon.stats.percentiles(),
        windows=daemon.stats.emitted,
        xruns=int(port.get("xruns", 0)),
        reconnects=int(port.get("reconnects", 0)),
        errors=daemon.worker_errors + daemon.stats.send_errors,
    )


def render(snap: Snapshot) -> RenderableType:
    """The table of channels, and the footer."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(expand=False, box=None, pad_edge=False, header_style="bold")
    for name, justify in (
        ("ch", "right"),
        ("bar", "right"),
        ("window", "left"),
        ("", "left"),
        ("part", "left"),
        ("notes/bar", "right"),
        ("declared", "left"),
        ("likeness", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in snap.rows:
        declared = r.declared or ""
        likeness = _bar(r.likeness, 8) + f" {r.likeness:.2f}" if r.likeness is not None else ""
        table.add_row(
            str(r.channel),
            str(r.bar),
            Text(r.window, style="bold"),
            _bar(r.confidence, 10) + f" {r.confidence:.2f}",
            f"{r.part} {r.part_confidence:.2f}",
            f"{r.notes_per_bar:.1f}",
            declared,
            likeness,
        )
    if not snap.rows:
        table.add_row("", "", Text("no windows yet: play something", style="dim"))
    lat = snap.latency
    latency = (
        f"latency p50 {lat['p50_ms']:.2f} ms  p99 {lat['p99_ms']:.2f} ms" if lat else "latency —"
    )
    footer = Text(
        f"bar {snap.bar}.{snap.beat}  {snap.bpm:.1f} BPM  "
        f"{CLOCK_SOURCES.get(snap.clock, snap.clock)}  |  {latency}  |  windows {snap.windows}  "
        f"xruns {snap.xruns}  reconnects {snap.reconnects}  errors {snap.errors}",
        style="dim",
    )
    return Group(table, footer)


def _bar(value: float, width: int) -> str:
    full = int(round(max(0.0, min(1.0, value)) * width))
    return "█" * full + "░" * (width - full)
