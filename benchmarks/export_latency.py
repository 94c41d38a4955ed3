"""Inference latency of a model bundle per backend, beside the paper's student (JSON).

Usage::

    python benchmarks/export_latency.py [--bundle DIR] [--json PATH] [--iters N]

The same measurement as ``kdexport bench``; see :mod:`export.bench` for the method.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from export.bench import run_bench
from export.cli import _print_bench
from live.bundle import default_bundle_dir

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bundle", type=Path, default=default_bundle_dir())
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks/results/export_latency.json")
    ap.add_argument("--iters", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    result = run_bench(args.bundle, threads=args.threads, iters=args.iters, say=print)
    _print_bench(result, print)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(f"results: {args.json}")


if __name__ == "__main__":
    main()
