"""`kdtrain`: the training pipeline's command line (a thin layer over ``train.data`` & co)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    help="Train kdlive: data (Slakh2100 or any MIDI collection rendered with FluidSynth), "
    "teacher, students, report.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """kdlive training pipeline."""


@app.command()
def data(
    out: Annotated[Path, typer.Option(help="Folder to write the data set into.")] = Path("data"),
    midi: Annotated[
        Optional[list[Path]],  # noqa: UP045 (typer needs Optional here)
        typer.Option(help="Folder of General MIDI files (recursive). Repeatable."),
    ] = None,
    slakh: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Slakh2100 folder (redux or original layout)."),
    ] = None,
    soundfont: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Option(help="Soundfont to render with (repeatable). Default: every GM bank found."),
    ] = None,
    workers: Annotated[int, typer.Option(help="Parallel processes.")] = os.cpu_count() or 1,
    limit_songs: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Use only the first N songs."),
    ] = None,
) -> None:
    """Build the window store: render MIDI (or read Slakh), cut 2-bar windows, write summary.

    With neither --midi nor --slakh: the demo corpus (Debian packages openttd-openmsx,
    simutrans-data, planetblupi-music-midi).
    """
    from train.data import DataConfig, build

    config = DataConfig(
        out=out,
        midi=list(midi or []),
        slakh=slakh,
        soundfonts=list(soundfont or []),
        workers=max(1, workers),
        limit_songs=limit_songs,
    )
    summary = _run(lambda progress: build(config, progress))
    _print_summary(summary, out)


def _run(job):  # type: ignore[no-untyped-def]
    """Run ``job(progress)`` under rich progress bars; bad input exits 1 with one clear line."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from live.errors import LiveError
    from train.errors import DataError

    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())  # fmt: skip
    tasks: dict[str, int] = {}
    try:
        with Progress(*columns, transient=False) as bars:

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bars.add_task(stage, total=total)
                bars.update(tasks[stage], completed=done, total=total)

            return job(progress)
    except (DataError, LiveError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


def _print_summary(summary: dict, out: Path) -> None:
    typer.echo(json.dumps(summary["windows"], indent=None))
    typer.echo(
        f"{summary['stems_found']} stems found; {summary['songs']} songs and {summary['stems']} "
        f"stems gave {sum(sum(c.values()) for c in summary['windows'].values())} windows "
        f"({summary['windows_past_audio_end']} ran past the end of the audio); "
        f"{summary['silent_windows']} silent windows and {summary['silent_tracks']} silent "
        f"tracks dropped; {summary['skipped']} skipped (see {out / 'skipped.jsonl'})"
    )
