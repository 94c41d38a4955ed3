"""`kdexport`: model bundles, TensorRT engines and latency benchmarks (see the export issue)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Export a trained kdlive student.", no_args_is_help=True,
                  add_completion=False)  # fmt: skip


@app.callback()
def main() -> None:
    """Export a trained kdlive student: bundle, TensorRT engine, latency benchmark."""
