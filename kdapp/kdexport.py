"""The ``kdexport`` console script: bundles, TensorRT engines and latency, as ``export.cli``
builds it."""

from __future__ import annotations

from export.cli import app

__all__ = ["app"]

if __name__ == "__main__":
    app()
