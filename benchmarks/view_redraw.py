"""What one redraw of `kdlive listen`'s terminal view costs, in-process: the time the drawing
thread holds the GIL (rich is pure Python), which the worker and the JACK callback then wait for.

Usage::

    python benchmarks/view_redraw.py                 # writes benchmarks/results/view_redraw.json

For 1, 8 and 16 channel rows: ``--redraws`` redraws of a rich ``Live`` into an in-memory
terminal (120 columns), each the renderable of a fresh snapshot, as ``live.listen.watch`` does;
p50 / p99 / max in ms. A rich ``Table`` (the view up to commit a4cefa5) took 24 ms (p50) at 16
rows on the 2-core VM; the plain lines of ``live.view.render`` about 1 ms. The check that counts is
the daemon's latency with the view on (`live_latency.py --view`): the view also redraws only
clear of bar lines.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.live import Live

from live.latency import summary
from live.view import ChannelRow, Snapshot, render

REPO = Path(__file__).resolve().parents[1]


def snapshot(rows: int, k: int) -> Snapshot:
    """A busy board: every row declared, the numbers changing with ``k``."""
    return Snapshot(
        rows=[
            ChannelRow(c, 9 + k, "Strings", 0.61, "Strings", 0.55, 7.5, "Piano", 0.12 + k % 7 / 10)
            for c in range(1, rows + 1)
        ],
        bar=11 + k,
        beat=k % 4 + 1,
        bpm=120.0,
        clock="clock",
        latency={"p50_ms": 1.21, "p99_ms": 2.75, "max_ms": 3.0, "n": 400},
        windows=400 + k,
    )


def redraws(rows: int, n: int) -> dict[str, float]:
    console = Console(file=io.StringIO(), force_terminal=True, width=120, height=40)
    ms = []
    with Live(render(snapshot(rows, 0)), console=console, auto_refresh=False) as live:
        for k in range(n):
            snap = snapshot(rows, k)
            t = time.perf_counter_ns()
            live.update(render(snap), refresh=True)
            ms.append((time.perf_counter_ns() - t) / 1e6)
    return {"n": n, **summary(ms)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--redraws", type=int, default=400)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks/results/view_redraw.json")
    args = ap.parse_args()
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.machine(), "python": platform.python_version()},
        "rows": {str(r): redraws(r, args.redraws) for r in (1, 8, 16)},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    for r, d in result["rows"].items():
        p50, p99, top = d["p50_ms"], d["p99_ms"], d["max_ms"]
        print(f"{r:>2} rows: p50 {p50:.3f}, p99 {p99:.3f}, max {top:.3f} ms")
    print(f"results: {args.json}")


if __name__ == "__main__":
    main()
