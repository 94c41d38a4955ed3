"""`kdlive`: the live side's command line. Imports nothing heavy at start-up (no torch)."""

from __future__ import annotations

import os

import typer

app = typer.Typer(
    help="Realtime instrument classification of MIDI parts.",
    no_args_is_help=True,
    add_completion=False,
)

#: The MIDI API when the user names none: JACK on Linux (ALSA is often absent in containers and
#: python-rtmidi does not fall back), the platform's own elsewhere. MIDO_BACKEND wins if set.
API_BACKENDS = {
    "jack": "mido.backends.rtmidi/UNIX_JACK",
    "alsa": "mido.backends.rtmidi/LINUX_ALSA",
    "coremidi": "mido.backends.rtmidi/MACOSX_CORE",
    "winmm": "mido.backends.rtmidi/WINDOWS_MM",
}


@app.callback()
def main() -> None:
    """kdlive: which instrument is each MIDI part written for."""


def select_backend(api: str | None) -> str:
    """The mido backend string for ``--api`` (or ``MIDO_BACKEND``, or the platform default)."""
    if api is not None:
        try:
            return API_BACKENDS[api.lower()]
        except KeyError:
            raise typer.BadParameter(f"--api must be one of {', '.join(API_BACKENDS)}") from None
    if os.environ.get("MIDO_BACKEND"):
        return os.environ["MIDO_BACKEND"]
    return "mido.backends.rtmidi"


@app.command()
def ports(
    api: str = typer.Option(None, help="MIDI API: jack, alsa, coremidi or winmm."),
) -> None:
    """List the MIDI input and output ports."""
    import mido

    try:
        backend = mido.Backend(select_backend(api), load=True)
        inputs, outputs = backend.get_input_names(), backend.get_output_names()
    except Exception as exc:  # noqa: BLE001 (rtmidi raises bare errors when an API is absent)
        typer.secho(
            f"error: cannot list MIDI ports ({exc}). On Linux without ALSA, start a JACK "
            "server and pass --api jack.",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1) from None
    typer.echo("inputs:")
    for name in inputs:
        typer.echo(f"  {name}")
    typer.echo("outputs:")
    for name in outputs:
        typer.echo(f"  {name}")


@app.command()
def contract() -> None:
    """Print the input contract: window, grid, classes and audio features."""
    import json
    from dataclasses import asdict

    from live.contract import CONTRACT_VERSION, MEL, WINDOW
    from live.taxonomy import CLASSES

    info = {"contract_version": CONTRACT_VERSION, "window": asdict(WINDOW),
            "input_shape": [None, *WINDOW.input_shape], "classes": list(CLASSES),
            "mel": asdict(MEL)}  # fmt: skip
    typer.echo(json.dumps(info, indent=1))
