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


@app.command(name="all")
def all_(
    midi: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Option(help="Folder of General MIDI files (repeatable). Default: the demo corpus."),
    ] = None,
    slakh: Annotated[Optional[Path], typer.Option(help="Slakh2100 folder.")] = None,  # noqa: UP045
    soundfont: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Option(help="Soundfont to render with (repeatable). Default: every GM bank found."),
    ] = None,
    run: Annotated[Path, typer.Option(help="Run folder (checkpoints, report).")] = Path(
        "runs/demo"
    ),
    data_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--data", help="Data folder (default RUN/data); share it between runs."),
    ] = None,
    preset: Annotated[str, typer.Option(help="Model preset: fast, paper or tiny.")] = "fast",
    teacher_mel_bands: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Average the teacher's 128 mel bins into N bands (less timbre)."),
    ] = None,
    teacher_timbre: Annotated[
        str,
        typer.Option(
            help="What the teacher hears: own (each part's instrument, the paper) or "
            "neutral (every part re-rendered as a piano: the performance, no timbre)."
        ),
    ] = "own",
    student_preset: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="The students' preset when it differs (e.g. paper with a fast teacher)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    epochs: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Epochs for every model (default: the preset's)."),
    ] = None,
    teacher_epochs: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Epochs of the teacher (overrides --epochs)."),
    ] = None,
    student_epochs: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Epochs of NIC and KDIC (overrides --epochs)."),
    ] = None,
    teacher_patience: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="The teacher stops after this many epochs without a better val F1."),
    ] = None,
    student_patience: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Students stop after this many epochs without a better val F1."),
    ] = None,
    teacher_mixup: Annotated[
        float,
        typer.Option(
            help="Mixup for the teacher: Beta(a, a) mixes of two windows' mels and labels "
            "(e.g. 0.4); 0: off."
        ),
    ] = 0.0,
    teacher_label_smoothing: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(help="The teacher's label smoothing (default: the preset's, 0.1)."),
    ] = None,
    student_ema: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(
            help="Validate and keep a moving average of the students' weights with "
            "this decay per step (default: the preset's, 0.995 for fast); 0: off."
        ),
    ] = None,
    limit_songs: Annotated[Optional[int], typer.Option(help="Use the first N songs.")] = None,  # noqa: UP045
    samples_per_epoch: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Windows drawn per epoch, every model (default: the preset's)."),
    ] = None,
    train_fraction: Annotated[
        float,
        typer.Option(
            help="Train on this share of the training songs (a learning curve); "
            "validation and test stay whole."
        ),
    ] = 1.0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    workers: Annotated[int, typer.Option(help="Data processes.")] = os.cpu_count() or 1,
    temperature: Annotated[float, typer.Option(help="Distillation temperature T.")] = 4.0,
    alpha: Annotated[float, typer.Option(help="Weight of hard-label CE in KDIC.")] = 0.5,
    feature_weight: Annotated[
        float, typer.Option(help="Weight of embedding regression onto the teacher's.")
    ] = 0.0,
    nckd_weight: Annotated[
        float, typer.Option(help="Decoupled KD: weight of the non-target classes' KL (0: off).")
    ] = 0.0,
    teacher_folds: Annotated[
        int, typer.Option(help="Cross-fit the teacher's soft targets over K song folds.")
    ] = 0,
    paper_kd: Annotated[
        bool, typer.Option(help="The paper's KDIC: soft targets only (alpha 0, no features).")
    ] = False,
) -> None:
    """Data -> teacher (AIC) -> NIC -> KDIC -> baseline -> evaluation -> report -> bundle.

    Each stage is skipped when its output exists and is current: run it again to resume.
    """
    from train.config import TIMBRES, DistillConfig, RunConfig, preset_config
    from train.data import DataConfig
    from train.pipeline import run_all

    try:
        cfg: RunConfig = preset_config(preset, student_preset)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    cfg.run, cfg.seed, cfg.device = run, seed, device
    if not 0 < train_fraction <= 1:
        raise typer.BadParameter("--train-fraction is a share of the songs, in (0, 1]")
    cfg.train_fraction = train_fraction
    if teacher_mel_bands:
        if preset == "paper" or 128 % teacher_mel_bands:
            raise typer.BadParameter("--teacher-mel-bands needs --preset fast or tiny and a "
                                     "divisor of 128 (e.g. 16, 8, 4)")  # fmt: skip
        cfg.model.teacher_mel_bands = teacher_mel_bands
    if teacher_timbre not in TIMBRES:
        raise typer.BadParameter(f"--teacher-timbre is one of {', '.join(TIMBRES)}")
    cfg.model.teacher_timbre = teacher_timbre
    cfg.data = DataConfig(
        out=data_dir or run / "data", midi=list(midi or []), slakh=slakh, workers=max(1, workers),
        limit_songs=limit_songs, soundfonts=list(soundfont or []),
    )  # fmt: skip
    cfg.distill = DistillConfig(
        temperature=temperature, alpha=0.0 if paper_kd else alpha,
        feature_weight=0.0 if paper_kd else feature_weight, teacher_folds=teacher_folds,
        nckd_weight=0.0 if paper_kd else nckd_weight,
    )  # fmt: skip
    if epochs is not None:
        cfg.teacher.epochs = cfg.student.epochs = epochs
    if teacher_epochs is not None:
        cfg.teacher.epochs = teacher_epochs
    if student_epochs is not None:
        cfg.student.epochs = student_epochs
    if teacher_patience is not None:
        cfg.teacher.patience = teacher_patience
    if student_patience is not None:
        cfg.student.patience = student_patience
    if teacher_mixup < 0:
        raise typer.BadParameter("--teacher-mixup is Beta(a, a)'s a, >= 0 (0: off)")
    cfg.teacher.mixup = teacher_mixup
    if teacher_label_smoothing is not None:
        if not 0 <= teacher_label_smoothing < 1:
            raise typer.BadParameter("--teacher-label-smoothing is in [0, 1)")
        cfg.teacher.label_smoothing = teacher_label_smoothing
    if student_ema is not None:
        if not 0 <= student_ema < 1:
            raise typer.BadParameter("--student-ema is a decay per step, in [0, 1) (0: off)")
        cfg.student.ema = student_ema
    if samples_per_epoch is not None:
        cfg.teacher.samples_per_epoch = cfg.student.samples_per_epoch = samples_per_epoch
    report = _run_training(
        lambda progress, say, data_progress: run_all(
            cfg, progress=progress, say=say, data_progress=data_progress
        )
    )
    if report:
        _print_report(report, run)


def _run_training(job):  # type: ignore[no-untyped-def]
    """Run ``job(progress, say, data_progress)`` under progress bars; bad input exits 1."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from export.errors import ExportError
    from live.errors import LiveError
    from train.errors import DataError

    console = Console(stderr=True)
    tasks: dict[str, int] = {}
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn(), "{task.fields[info]}")  # fmt: skip
    try:
        with Progress(*columns, console=console) as bars:

            def progress(name: str, epoch: int, step: int, steps: int, metrics: dict) -> None:
                key = f"{name}/{epoch}" if "val_f1" not in metrics else f"{name}/{epoch - 1}"
                if key not in tasks:
                    tasks[key] = bars.add_task(f"{name} epoch {epoch + 1}", total=steps, info="")
                info = " ".join(f"{k}={v:.3f}" for k, v in metrics.items())
                bars.update(tasks[key], completed=step, info=info)
                if "val_f1" in metrics:  # one line per epoch, also in logs without a terminal
                    bars.console.print(f"{name} epoch {epoch}: {info}")

            def data_progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bars.add_task(stage, total=total, info="")
                bars.update(tasks[stage], completed=done, total=total)

            def say(stage: str, message: str) -> None:
                bars.console.print(f"[bold]{stage}[/bold]: {message}")

            return job(progress, say, data_progress)
    except (DataError, LiveError, ExportError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


def _print_report(report: dict, run: Path) -> None:
    for name, m in report["models"].items():
        typer.echo(f"{name:>10}: macro-F1 {m['macro_f1']:.3f}  accuracy {m['accuracy']:.3f}")
    typer.echo(f"report: {run / 'report.md'}")
    typer.echo(f"bundle: {run / 'bundle'}  (kdlive listen --model {run / 'bundle'})")


if __name__ == "__main__":
    app()
