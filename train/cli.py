"""`kdtrain`'s commands, a thin layer over ``train``: :func:`build_app` makes the command line.

The options are the few a user turns every day; every other setting is a field of the preset's
:class:`train.config.RunConfig`, changed with ``--set KEY=VALUE`` (``kdtrain config`` lists them).
Training ends at the report; a stage after it (the bundle) is handed in by whoever builds the app:
``kdapp.kdtrain``, the console script, passes ``export``'s, so ``train`` never imports ``export``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from live.console import clean_errors

if TYPE_CHECKING:
    from train.config import RunConfig
    from train.progress import Reporter


Midi = Annotated[
    list[Path] | None,
    typer.Option(help="Folder of General MIDI files (repeatable). Default: the demo corpus."),
]
Slakh = Annotated[Path | None, typer.Option(help="Slakh2100 folder (redux or original layout).")]
Soundfont = Annotated[
    list[Path] | None,
    typer.Option(help="Soundfont to render with (repeatable). Default: every GM bank found."),
]
Workers = Annotated[int, typer.Option(help="Parallel processes for the data.")]
Cluster = Annotated[
    str | None,
    typer.Option(
        help="Build the data on a Dask cluster instead: local:N (N worker processes here) or "
        "a running scheduler's address, tcp://host:8786 (needs the kdlive[cluster] extra; "
        "docs/data.md).",
    ),
]
CPUS = os.cpu_count() or 1
LimitSongs = Annotated[int | None, typer.Option(help="Use only the first N songs.")]
Preset = Annotated[
    str,
    typer.Option(
        help="fast (default), shipped (the shipped bundle's recipe), paper (Table 1) or tiny "
        "(tests)."
    ),
]
Sets = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Change any setting: KEY=VALUE, e.g. student.epochs=30 (repeatable; "
        "`kdtrain config` lists the keys).",
    ),
]


@dataclass(frozen=True)
class LastStage:
    """A stage that ``kdtrain all`` runs after the report, handed in by the application.

    ``run(run_folder, reporter)`` does it (inside the command's one-line errors) and returns
    the line printed last, e.g. where its output is and how to use it.
    """

    name: str  # as the help and the progress lines call it, e.g. "bundle"
    run: Callable[[Path, Reporter], str]


def build_app(last: LastStage | None = None) -> typer.Typer:
    """The ``kdtrain`` command line: ``data``, ``all`` (ending with ``last`` when given, at the
    report otherwise) and ``config``. Building it imports nothing heavy."""
    app = typer.Typer(
        help="Train kdlive: data (Slakh2100 or any MIDI collection rendered with FluidSynth), "
        f"teacher, students, report{', ' + last.name if last else ''}.",
        no_args_is_help=True,
        add_completion=False,
    )
    app.callback()(main)
    app.command()(data)
    app.command(name="all", help=_all_help(last))(_all_command(last))
    app.command()(config)
    return app


def main() -> None:
    """kdlive training pipeline."""


def data(
    out: Annotated[Path, typer.Option(help="Folder to write the data set into.")] = Path("data"),
    midi: Midi = None,
    slakh: Slakh = None,
    soundfont: Soundfont = None,
    workers: Workers = CPUS,
    cluster: Cluster = None,
    limit_songs: LimitSongs = None,
    notes: Annotated[
        bool,
        typer.Option(
            "--notes",
            help="Also build the notes-only store (OUT/notes) that the contract-2 and -3 "
            "students learn from; `kdtrain all` builds it when its students need it.",
        ),
    ] = False,
) -> None:
    """Build the window store: render MIDI (or read Slakh), cut 2-bar windows, write summary.

    With neither --midi nor --slakh: the demo corpus (Debian packages openttd-openmsx,
    simutrans-data, planetblupi-music-midi).
    """
    with clean_errors():
        from train.config import DataConfig
        from train.data.build import build
        from train.progress import reporter

        config = DataConfig(
            out=out,
            midi=list(midi or []),
            slakh=slakh,
            soundfonts=list(soundfont or []),
            workers=max(1, workers),
            cluster=cluster,
            limit_songs=limit_songs,
        )
        with reporter() as report:
            summary = build(config, report.progress, notes=notes)
    _print_summary(summary, out)


def _print_summary(summary: dict, out: Path) -> None:
    windows = sum(sum(c.values()) for c in summary["windows"].values())
    typer.echo(json.dumps(summary["windows"]))
    typer.echo(
        f"{summary['stems_found']} stems found; {summary['songs']} songs and {summary['stems']} "
        f"stems gave {windows} windows ({summary['windows_past_audio_end']} ran past the end "
        f"of the audio); {summary['silent_windows']} silent windows and "
        f"{summary['silent_tracks']} silent tracks dropped; {summary['skipped']} skipped "
        f"(see {out / 'skipped.jsonl'})"
    )
    if "notes" in summary:
        notes = summary["notes"]
        windows = sum(sum(c.values()) for c in notes["windows"].values())
        typer.echo(
            f"notes store {out / 'notes'}: {notes['songs']} songs, {windows} windows, "
            f"{notes['skipped']} skipped"
        )


def _all_help(last: LastStage | None) -> str:
    stages = "Data -> teacher (AIC) -> NIC -> KDIC -> floor -> evaluation -> report"
    return (
        f"{stages}{' -> ' + last.name if last else ''}.\n\n"
        "Each stage is skipped when its output exists and is current: run it again to resume."
    )


def _all_command(last: LastStage | None) -> Callable[..., None]:
    """``kdtrain all``, ending with ``last`` (its options are the command's options)."""

    def all_(
        midi: Midi = None,
        slakh: Slakh = None,
        soundfont: Soundfont = None,
        run: Annotated[Path, typer.Option(help="Run folder (checkpoints, report, bundle).")] = Path(
            "runs/demo"
        ),
        data_dir: Annotated[
            Path | None,
            typer.Option("--data", help="Data folder (default RUN/data); share it between runs."),
        ] = None,
        preset: Preset = "fast",
        seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
        split: Annotated[
            str,
            typer.Option(
                help="song (default: whole songs and their versions on one side), window (each "
                "window at random) or slakh-orig (Slakh2100's split, duplicates kept; emulated "
                "on MIDI files). The report measures what the split leaks."
            ),
        ] = "song",
        device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
        workers: Workers = CPUS,
        cluster: Cluster = None,
        limit_songs: LimitSongs = None,
        set_: Sets = None,
    ) -> None:
        with clean_errors():
            cfg = _config(
                preset,
                set_,
                run=run,
                data_dir=data_dir,
                midi=midi,
                slakh=slakh,
                soundfont=soundfont,
                workers=workers,
                cluster=cluster,
                limit_songs=limit_songs,
                seed=seed,
                device=device,
                split=split,
            )
            _train(cfg, last)

    return all_


def _train(cfg: RunConfig, last: LastStage | None) -> None:
    """Run every stage of ``cfg`` (``last`` after the report), then print the table's figures
    and where the outputs are."""
    from train.pipeline import run_all
    from train.progress import reporter

    with reporter() as report:
        result = run_all(cfg, report)
        after = last.run(cfg.run, report) if result and last else None
    for name, m in result.get("models", {}).items():
        typer.echo(f"{name:>10}: macro-F1 {m['macro_f1']:.3f}  accuracy {m['accuracy']:.3f}")
    if result:
        typer.echo(f"report: {cfg.run / 'report.md'}")
    if after:
        typer.echo(after)


def config(preset: Preset = "fast", set_: Sets = None) -> None:
    """Print a preset's resolved settings (with --set applied) as JSON: every key --set takes."""
    with clean_errors():
        from train.config import override, preset_config, to_json

        typer.echo(json.dumps(to_json(override(preset_config(preset), set_ or [])), indent=1))


def _config(
    preset: str,
    sets: list[str] | None,
    *,
    run: Path,
    data_dir: Path | None,
    midi: list[Path] | None,
    slakh: Path | None,
    soundfont: list[Path] | None,
    workers: int,
    limit_songs: int | None,
    seed: int,
    cluster: str | None = None,
    device: str,
    split: str = "song",
) -> RunConfig:
    """The preset, with the command line's options, then its ``--set`` overrides."""
    from train.config import override, preset_config

    cfg = preset_config(preset)
    data = replace(
        cfg.data,
        out=data_dir or run / "data",
        midi=list(midi or []),
        slakh=slakh,
        soundfonts=list(soundfont or []),
        workers=max(1, workers),
        cluster=cluster,
        limit_songs=limit_songs,
    )
    cfg = replace(cfg, run=run, data=data, seed=seed, device=device, split=split)
    return override(cfg, sets or [])


if __name__ == "__main__":  # `python -m train.cli` was documented for torchrun until kdapp
    raise SystemExit("error: kdtrain is `python -m kdapp.kdtrain ...` now (it adds the bundle)")
