"""live.view: the terminal table, rendered from a snapshot."""

from __future__ import annotations

from rich.console import Console

from live.view import ChannelRow, Snapshot, render


def text_of(snap: Snapshot, width: int = 140) -> str:
    console = Console(record=True, width=width, force_terminal=False)
    console.print(render(snap))
    return console.export_text()


def test_each_channel_is_a_row_and_the_footer_says_where_the_song_is() -> None:
    snap = Snapshot(
        rows=[
            ChannelRow(1, 9, "Strings", 0.72, "Strings", 0.81, 6.5, "Strings", 0.72),
            ChannelRow(2, 9, "Bass", 0.93, "Bass", 0.97, 4.0),
        ],
        bar=11,
        beat=3,
        bpm=96.0,
        clock="clock",
        latency={"p50_ms": 1.21, "p99_ms": 2.75, "max_ms": 3.0, "n": 40},
        windows=38,
        xruns=1,
        reconnects=2,
    )
    lines = text_of(snap).splitlines()
    header = next(i for i, line in enumerate(lines) if "window" in line and "likeness" in line)
    ch1, ch2 = lines[header + 1], lines[header + 2]
    assert ch1.split()[:3] == ["1", "9", "Strings"] and "0.72" in ch1 and "6.5" in ch1
    assert "███████░░░ 0.72" in ch1  # the confidence bar: 7 of 10
    assert ch2.split()[:3] == ["2", "9", "Bass"] and "0.97" in ch2
    footer = lines[-1] if lines[-1].strip() else lines[-2]
    for part in ("bar 11.3", "96.0 BPM", "MIDI clock", "p99 2.75 ms", "xruns 1", "reconnects 2"):
        assert part in footer, footer


def test_an_empty_board_says_it_waits() -> None:
    out = text_of(Snapshot())
    assert "no windows yet" in out and "waiting for clock or notes" in out and "latency —" in out


def test_a_narrow_terminal_cuts_lines_instead_of_wrapping_them() -> None:
    rows = [ChannelRow(c, 3, "Strings", 0.5, "Piano", 0.4, 8.0, "Piano", 0.3) for c in (1, 2)]
    out = text_of(Snapshot(rows=rows, bar=4, beat=1, clock="internal"), width=30)
    lines = out.splitlines()
    assert len(lines) == 4  # header, two channels, footer: one line each
    assert all(len(line) <= 30 for line in lines), lines
    assert lines[1].startswith(" 1    3  Strings") and lines[3].startswith("bar 4.1")
