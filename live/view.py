"""What `kdlive listen` shows in a terminal: a table that follows each channel, redrawn from a
snapshot a few times a second.

The worker never draws. At each bar line it replaces one small dict of rows
(:attr:`live.daemon.Daemon.view_rows`); the main thread takes a :class:`Snapshot` of it and of the
counters (no lock: the worker swaps the dict whole) and rich renders that. So the view costs
the worker one dict per bar line, whatever the terminal does.
"""

from __future__ import annotations

from collections.abc import Iterator
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
    """A :class:`live.daemon.Daemon`'s view rows and counters now (called from the drawing
    thread; typed loosely so that the daemon can import this module's rows)."""
    engine, transport = daemon.engine, daemon.transport
    pos = engine.position
    bar = engine.bars.index(pos)
    beat_ticks = engine.tpq * 4 // getattr(engine.bars, "denominator", 4)
    port = daemon.midi_in.counters() if daemon.midi_in is not None else {}
    return Snapshot(
        rows=sorted(daemon.view_rows.values()),
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


#: The table's columns: header, and whether cells align right.
COLUMNS = (
    ("ch", True),
    ("bar", True),
    ("window", False),
    ("", False),
    ("part", False),
    ("notes/bar", True),
    ("declared", False),
    ("likeness", False),
)
#: Between two columns.
GAP = "  "


def render(snap: Snapshot) -> RenderableType:
    """The table of channels, and the footer: laid out here as plain lines, which rich only
    styles and cuts to the terminal's width. (A rich ``Table`` measures every cell again on
    each redraw, all of it holding the GIL that the worker and the JACK callback need; what
    each costs is in docs/results.md, "the view's cost", from benchmarks/view_redraw.py.)"""
    from rich.style import Style

    bold, dim = Style(bold=True), Style(dim=True)
    cells = [
        [
            str(r.channel),
            str(r.bar),
            r.window,
            _bar(r.confidence, 10) + f" {r.confidence:.2f}",
            f"{r.part} {r.part_confidence:.2f}",
            f"{r.notes_per_bar:.1f}",
            r.declared or "",
            _bar(r.likeness, 8) + f" {r.likeness:.2f}" if r.likeness is not None else "",
        ]
        for r in snap.rows
    ]
    widths = [len(name) for name, _ in COLUMNS]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def layout(row: list[str]) -> list[str]:
        return [
            c.rjust(w) if right else c.ljust(w)
            for c, w, (_, right) in zip(row, widths, COLUMNS, strict=True)
        ]

    header = GAP.join(layout([name for name, _ in COLUMNS])).rstrip()
    lines: list[list[tuple[str, Style | None]]] = [[(header, bold)]]
    for row in cells:
        laid = layout(row)
        before, after = GAP.join(laid[:2]) + GAP, GAP + GAP.join(laid[3:])
        lines.append([(before, None), (laid[2], bold), (after.rstrip(), None)])
    if not snap.rows:
        lines.append([("no windows yet: play something", dim)])
    lat = snap.latency
    latency = (
        f"latency p50 {lat['p50_ms']:.2f} ms  p99 {lat['p99_ms']:.2f} ms" if lat else "latency —"
    )
    footer = (
        f"bar {snap.bar}.{snap.beat}  {snap.bpm:.1f} BPM  "
        f"{CLOCK_SOURCES.get(snap.clock, snap.clock)}  |  {latency}  |  windows {snap.windows}  "
        f"xruns {snap.xruns}  reconnects {snap.reconnects}  errors {snap.errors}"
    )
    lines.append([(footer, dim)])
    return Lines(lines)


class Lines:
    """Lines of (text, style) pieces, each cut to the console's width (the view's text is
    all one cell per character)."""

    def __init__(self, lines: list[list[tuple[str, Any]]]) -> None:
        self.lines = lines

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Any]:
        from rich.segment import Segment

        for pieces in self.lines:
            left = options.max_width
            for text, style in pieces:
                piece = text[: max(0, left)]
                left -= len(piece)
                if piece:
                    yield Segment(piece, style)
            yield Segment.line()


def _bar(value: float, width: int) -> str:
    full = int(round(max(0.0, min(1.0, value)) * width))
    return "█" * full + "░" * (width - full)
