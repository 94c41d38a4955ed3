"""`kdtrain`: the training pipeline's command line, a thin layer over ``train``.

The options are the few a user turns every day; every other setting is a field of the preset's
:class:`train.config.RunConfig`, changed with ``--set KEY=VALUE`` (``kdtrain config`` lists them).
``kdtrain all`` ends by exporting the distilled student as a bundle for ``kdlive``: this entry
point is the one place that composes ``train`` and ``export`` (nothing imports it).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from live.console import clean_errors

if TYPE_CHECKING:
    from train.config import RunConfig

app = typer.Typer(
    help="Train kdlive: data (Slakh2100 or any MIDI collection rendered with FluidSynth), "
    "teacher, students, report, bundle.",
    no_args_is_help=True,
    add_completion=False,
)

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
CPUS = os.cpu_count() or 1
LimitSongs = Annotated[int | None, typer.Option(help="Use only the first N songs.")]
Preset = Annotated[str, typer.Option(help="fast (default), paper (Table 1) or tiny (tests).")]
Sets = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Change any setting: KEY=VALUE, e.g. student.epochs=30 (repeatable; "
        "`kdtrain config` lists the keys).",
    ),
]


@app.callback()
def main() -> None:
    """kdlive training pipeline."""


@app.command()
def data(
    out: Annotated[Path, typer.Option(help="Folder to write the data set into.")] = Path("data"),
    midi: Midi = None,
    slakh: Slakh = None,
    soundfont: Soundfont = None,
    workers: Workers = CPUS,
    limit_songs: LimitSongs = None,
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
            limit_songs=limit_songs,
        )
        with reporter() as report:
            summary = build(config, report.progress)
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


@app.command(name="all")
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
            "window at random) or slakh-orig (Slakh2100's split, duplicates kept; emulated on "
            "MIDI files). The report measures what the split leaks."
        ),
    ] = "song",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    workers: Workers = CPUS,
    limit_songs: LimitSongs = None,
    set_: Sets = None,
) -> None:
    """Data -> teacher (AIC) -> NIC -> KDIC -> baseline -> evaluation -> report -> bundle.

    Each stage is skipped when its output exists and is current: run it again to resume.
    """
    with clean_errors():
        from export.bundle import write_bundle
        from train.pipeline import run_all
        from train.progress import reporter

        cfg = _config(
            preset,
            set_,
            run=run,
            data_dir=data_dir,
            midi=midi,
            slakh=slakh,
            soundfont=soundfont,
            workers=workers,
            limit_songs=limit_songs,
            seed=seed,
            device=device,
            split=split,
        )
        with reporter() as report:
            result = run_all(cfg, report)
            if result:
                report.say("bundle", f"exporting KDIC to {run / 'bundle'}")
                write_bundle(
                    run, run / "bundle", which="kdic", say=lambda m: report.say("bundle", m)
                )
    for name, m in result.get("models", {}).items():
        typer.echo(f"{name:>10}: macro-F1 {m['macro_f1']:.3f}  accuracy {m['accuracy']:.3f}")
    if result:
        typer.echo(f"report: {run / 'report.md'}")
        typer.echo(f"bundle: {run / 'bundle'}  (kdlive listen --model {run / 'bundle'})")


@app.command()
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
        limit_songs=limit_songs,
    )
    cfg = replace(cfg, run=run, data=data, seed=seed, device=device, split=split)
    return override(cfg, sets or [])


if __name__ == "__main__":
    app()
