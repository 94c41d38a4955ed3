"""The ``kdlive`` console script: the live runtime's command line, as ``live.cli`` builds it."""

from __future__ import annotations

from live.cli import app

__all__ = ["app"]

if __name__ == "__main__":
    app()
