"""What the three command lines (``kdlive``, ``kdtrain``, ``kdexport``) share: a known error
becomes one red line and exit status 1, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

from live.errors import KdliveError

#: Modules that only an extra installs (pyproject.toml), by top-level name.
EXTRA_OF_MODULE = {
    **dict.fromkeys(
        ("torch", "librosa", "pretty_midi", "soundfile", "sklearn", "matplotlib", "yaml", "onnx"),
        "train",
    ),
    "tensorrt": "tensorrt",
    "cuda": "tensorrt",
}


def fail(message: str) -> NoReturn:
    """Print ``error: message`` in red on stderr and exit with status 1."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@contextmanager
def clean_errors() -> Iterator[None]:
    """Run the block; a :class:`KdliveError`, or a module that only an extra installs being
    missing, ends the command with one line that says what to do."""
    try:
        yield
    except KdliveError as exc:
        fail(str(exc))
    except ModuleNotFoundError as exc:
        extra = EXTRA_OF_MODULE.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        fail(
            f"{exc.name} is not installed: this command needs kdlive's {extra!r} extra "
            f"(pip install 'kdlive[{extra}]')"
        )
