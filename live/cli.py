"""`kdlive`: the live side's command line, thin over live's Python API.

``kdlive --help`` must be instant, so this module imports typer and nothing heavy: numpy, mido,
the model and the engine are imported inside the commands that use them (and the port modules
import rtmidi and JACK only when they open a port).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from live.channels import PITCHED, channels_text, parse_channels
from live.console import clean_errors, fail
from live.errors import SettingError
from live.ports import API_NAMES
from live.taxonomy import CLASSES

if TYPE_CHECKING:
    from live.parts import StepModel

app = typer.Typer(
    help="Realtime instrument classification of MIDI parts.",
    no_args_is_help=True,
    add_completion=False,
)

#: mido's backend for each ``--api`` name (``kdlive ports``). Without ``--api``: MIDO_BACKEND if
#: set, else mido's default, python-rtmidi on the platform's own API.
API_BACKENDS = {name: f"mido.backends.rtmidi/{rtapi}" for name, rtapi in API_NAMES.items()}


ApiOpt = Annotated[
    str | None, typer.Option("--api", help="MIDI API: jack, alsa, coremidi or winmm.")
]


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
def ports(api: ApiOpt = None) -> None:
    """List the MIDI input and output ports."""
    import mido

    try:
        backend = mido.Backend(select_backend(api), load=True)
        inputs, outputs = backend.get_input_names(), backend.get_output_names()
    except Exception as exc:  # rtmidi raises bare errors when an API is absent
        fail(
            f"cannot list MIDI ports ({exc}). On Linux without ALSA, start a JACK "
            "server and pass --api jack."
        )
    typer.echo("inputs:")
    for name in inputs:
        typer.echo(f"  {name}")
    typer.echo("outputs:")
    for name in outputs:
        typer.echo(f"  {name}")


@app.command()
def contract() -> None:
    """Print the input contracts: window, grid, each contract's input, classes, audio features."""
    from live.contract import MEL, WINDOW
    from live.contracts import CONTRACTS
    from live.controls import CC_STREAM, ROWS, STREAMS
    from live.inputs import CHANNELS_V2
    from live.parts import RESET_BARS

    info = {
        "contract_versions": list(CONTRACTS),
        "window": asdict(WINDOW),
        "input_shape": {str(v): [None, *c.input_shape] for v, c in CONTRACTS.items()},
        "contract_2_channels": list(CHANNELS_V2),
        "contract_3_control_rows": [
            " or ".join(f"{STREAMS[s]} {_rule(t)}" for s, t in row) for row in ROWS
        ],
        "contract_3_cc": {str(cc): STREAMS[s] for cc, s in sorted(CC_STREAM.items())},
        "running_answer_resets_after_silent_bars": RESET_BARS,
        "classes": list(CLASSES),
        "mel": asdict(MEL),
    }
    typer.echo(json.dumps(info, indent=1))


def _rule(threshold: int | None) -> str:
    if threshold is None:
        return "moving"
    return f"< {-threshold}" if threshold < 0 else f">= {threshold}"


# --------------------------------------------------------------------------- shared options


#: Settings fields whose flag is not ``--`` + the field in kebab case.
FLAG_OF_FIELD = {"declared": "--declare", "stats_every": "--stats", "cc": "CC"}


def flag_of(field: str) -> str:
    """The flag that sets a settings field: ``hop_bars`` -> ``--hop-bars``."""
    return FLAG_OF_FIELD.get(field, "--" + field.replace("_", "-"))


@contextmanager
def flag_errors() -> Iterator[None]:
    """A setting that cannot work is a usage error, said with the flags' names."""
    try:
        yield
    except SettingError as exc:
        raise typer.BadParameter(exc.named({f: flag_of(f) for f in exc.fields})) from None


ModelOpt = Annotated[
    Path | None,
    typer.Option("--model", help="Model bundle folder (default: the one shipped with kdlive)."),
]
BackendOpt = Annotated[
    str, typer.Option("--backend", help="Inference: auto, tensorrt, cuda or cpu.")
]
HopOpt = Annotated[int, typer.Option("--hop-bars", help="A window every 1 or 2 bars.")]
#: ``--channels``' default: every channel but General MIDI's drums.
PITCHED_TEXT = channels_text(PITCHED)
ChannelsOpt = Annotated[
    str,
    typer.Option(
        "--channels",
        help="MIDI channels to classify (every channel is heard as context). Default: all but "
        f"10, General MIDI's drums ({PITCHED_TEXT}); 1-16 classifies them too.",
    ),
]


# ----------------------------------------------------------------------------------- replay


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="A Standard MIDI File.")],
    model: ModelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    hop_bars: HopOpt = 1,
    channels: ChannelsOpt = PITCHED_TEXT,
    backend: BackendOpt = "auto",
) -> None:
    """Classify a MIDI file's parts, window by window, with the daemon's own code (no ports).

    Prints per channel and window: bar, the window's class, the part's running answer (what it
    has sounded like so far) and the window's probabilities (contract order).
    """
    from live.model import Model
    from live.parts import PartTracker
    from live.replay import replay_windows

    with clean_errors(), flag_errors():
        chans = parse_channels(channels)
        m = Model(model, backend=backend)
        classes = list(m.classes)
        batches = replay_windows(
            file, hop_bars=hop_bars, channels=chans, controls=m.contract.controls
        )
        parts = PartTracker(m)
        if not as_json:
            head = " ".join(f"{c[:6]:>6}" for c in classes)
            typer.echo(f"{'ch':>2} {'bar':>4}  {'class':<8} {'part':<8} {head}")
        for batch in batches:
            answers = parts.compute(batch, epoch=0)
            parts.commit(answers)
            for w, p, q in zip(batch, answers.window, answers.part, strict=True):
                best, part = classes[int(p.argmax())], classes[int(q.argmax())]
                if as_json:
                    line = {
                        "channel": w.channel,
                        "bar": w.bar + 1,
                        "class": best,
                        "probs": [round(float(x), 6) for x in p],
                        "part_class": part,
                        "part": [round(float(x), 6) for x in q],
                    }
                    typer.echo(json.dumps(line))
                else:
                    probs = " ".join(f"{float(x):6.3f}" for x in p)
                    typer.echo(f"{w.channel:>2} {w.bar + 1:>4}  {best:<8} {part:<8} {probs}")


# -------------------------------------------------------------------------------------- tag


@app.command()
def tag(
    source: Annotated[Path, typer.Argument(help="A MIDI file, or a folder of them.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write: a file (or, for a folder, a folder mirroring it). Without "
            "it, only the table.",
        ),
    ] = None,
    in_place: Annotated[
        bool, typer.Option("--in-place", help="Overwrite the input (or allow -o to be it).")
    ] = False,
    only_missing: Annotated[
        bool,
        typer.Option(
            "--only-missing/--all",
            help="Write only parts that never set a program (the composer's stay, and are "
            "reported where kdlive differs), or every part.",
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per part.")] = False,
    model: ModelOpt = None,
    backend: BackendOpt = "auto",
) -> None:
    """Write each part's instrument into MIDI files: a Program Change of its family's General
    MIDI program and a track name (docs/live.md). Channel 10, the drums, is never tagged."""
    from live.model import Model
    from live.tag import plan, table, tag_file

    with clean_errors(), flag_errors():
        jobs = plan(source, output, in_place=in_place)
        m = Model(model, backend=backend)
    if source.is_dir():
        _tag_folder(source, jobs, m, only_missing=only_missing, as_json=as_json)
        return
    ((src, dst),) = jobs
    with clean_errors():
        reports = tag_file(src, dst, m, only_missing=only_missing)
    for line in (
        (json.dumps({"file": str(src), **r.as_json()}) for r in reports)
        if as_json
        else table(reports)
    ):
        typer.echo(line)
    if not as_json:
        written = sum(r.written is not None for r in reports)
        typer.echo(
            f"wrote {dst} ({written} part(s) tagged)"
            if dst
            else "nothing written: give -o OUT.mid (or --in-place)"
        )


def _tag_folder(
    source: Path,
    jobs: list[tuple[Path, Path | None]],
    model: StepModel,
    *,
    only_missing: bool,
    as_json: bool,
) -> None:
    """``kdlive tag DIR``: a progress bar, one line per skipped file or part that differs
    from the composer's program, a summary (``--json``: a line per part, the rest on
    stderr)."""
    from rich.console import Console
    from rich.progress import Progress

    from live.errors import MidiFileError
    from live.tag import tag_file

    if not jobs:
        fail(f"no MIDI files under {source} (looked for .mid, .midi, .kar, .smf)")
    console = Console(stderr=as_json, highlight=False)
    counts = {"files": 0, "skipped": 0, "written": 0, "differ": 0}
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("tagging", total=len(jobs))
        for src, dst in jobs:
            try:
                reports = tag_file(src, dst, model, only_missing=only_missing)
            except (MidiFileError, OSError) as exc:
                counts["skipped"] += 1
                bar.console.print(f"skipped {src}: {exc}", markup=False, soft_wrap=True)
            else:
                counts["files"] += 1
                counts["written"] += sum(r.written is not None for r in reports)
                for r in reports:
                    counts["differ"] += r.differs
                    if as_json:
                        typer.echo(json.dumps({"file": str(src), **r.as_json()}))
                    elif r.differs:
                        bar.console.print(
                            f"{src}: channel {r.channel} has program "
                            f"{'/'.join(map(str, r.had))}; kdlive hears {r.answer} "
                            f"{r.confidence:.2f}",
                            markup=False,
                            soft_wrap=True,
                        )
            bar.advance(task)
    console.print(
        f"{counts['files']} file(s) read, {counts['written']} part(s) tagged, "
        f"{counts['differ']} kept that kdlive hears otherwise, {counts['skipped']} skipped"
        + ("" if jobs[0][1] is not None else "; nothing written: give -o OUTDIR (or --in-place)"),
        markup=False,
        soft_wrap=True,
    )


# ------------------------------------------------------------------------------------ learn


@app.command()
def learn(
    cc: Annotated[
        int, typer.Argument(help="The CC to send, 0-127 (e.g. 30: the part's running answer).")
    ],
    channel: Annotated[int, typer.Option("--channel", help="MIDI channel, 1-16.")] = 1,
    out_port: Annotated[
        str | None, typer.Option("--out-port", help="Send to this existing output port.")
    ] = None,
    out_virtual: Annotated[
        str, typer.Option("--out-virtual", help="Else create a virtual output port.")
    ] = "kdlive out",
    api: ApiOpt = None,
) -> None:
    """Send one CC on kdlive's output port, its value sweeping 0-127-0, until Ctrl-C: for a
    DAW's MIDI learn."""
    from live.learn import LearnSettings, run

    with flag_errors():
        settings = LearnSettings(
            cc=cc, channel=channel, out_port=out_port, out_virtual=out_virtual, api=api
        )
    with clean_errors():
        run(settings, say=typer.echo)


# ----------------------------------------------------------------------------------- listen


@app.command()
def listen(
    port: Annotated[
        str | None,
        typer.Option("--port", help="Input port to read (case-insensitive substring, e.g. IAC)."),
    ] = None,
    virtual: Annotated[
        str | None,
        typer.Option("--virtual", help="Create a virtual input port with this name instead."),
    ] = None,
    model: ModelOpt = None,
    out_port: Annotated[
        str | None,
        typer.Option("--out-port", help="Send CC to this existing output port."),
    ] = None,
    out_virtual: Annotated[
        str, typer.Option("--out-virtual", help="Else create a virtual output port.")
    ] = "kdlive out",
    osc: Annotated[
        list[str] | None,
        typer.Option("--osc", help="Send OSC to HOST:PORT (repeatable)."),
    ] = None,
    cc_base: Annotated[
        int, typer.Option("--cc-base", help="CCs base..base+7: probabilities.")
    ] = 20,
    cc_class: Annotated[
        int, typer.Option("--cc-class", help="CC carrying the window's class index.")
    ] = 28,
    cc_part: Annotated[
        int, typer.Option("--cc-part", help="CC carrying the part's running class index.")
    ] = 30,
    cc_likeness: Annotated[
        int,
        typer.Option(
            "--cc-likeness", help="CC carrying a declared channel's likeness (see --declare)."
        ),
    ] = 29,
    declare: Annotated[
        list[str] | None,
        typer.Option(
            "--declare",
            help="CHANNEL=CLASS (repeatable), e.g. 3=Strings: the instrument the channel is "
            "written for; each window then reports how much it sounds like it. A Program "
            "Change declares too.",
        ),
    ] = None,
    channels: ChannelsOpt = PITCHED_TEXT,
    hop_bars: HopOpt = 1,
    bpm: Annotated[float, typer.Option("--bpm", help="Tempo when no MIDI clock arrives.")] = 120.0,
    meter: Annotated[str, typer.Option("--meter", help="Meter (MIDI clock has none).")] = "4/4",
    api: ApiOpt = None,
    backend: BackendOpt = "auto",
    threads: Annotated[int, typer.Option("--threads", help="ONNX Runtime CPU threads.")] = 1,
    stats: Annotated[
        float, typer.Option("--stats", help="Print latency percentiles and counters every N s.")
    ] = 0.0,
    max_note_bars: Annotated[
        int, typer.Option("--max-note-bars", help="End notes held longer (lost note-offs).")
    ] = 8,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every window.")] = False,
    view: Annotated[
        bool | None,
        typer.Option(
            "--view/--no-view",
            help="Show a table of the channels, updated at every bar line (default: when "
            "stdout is a terminal); --no-view: plain log lines.",
        ),
    ] = None,
) -> None:
    """Listen to a MIDI port; per channel and 2-bar window, send the instrument as CC and OSC."""
    from live.listen import (
        build_daemon,
        logging_off_the_worker,
        open_ports,
        ready_line,
        run_until_signal,
    )
    from live.outputs import OutputMap
    from live.ports import close_io
    from live.settings import ListenSettings, parse_declarations, parse_meter

    console = None
    if view if view is not None else sys.stdout.isatty():
        from rich.console import Console

        # log lines print above the view; an explicit --view draws into a pipe too
        console = Console(force_terminal=True if view else None)
    with logging_off_the_worker(console):
        with flag_errors():
            settings = ListenSettings(
                port=port,
                virtual=virtual,
                out_port=out_port,
                out_virtual=out_virtual,
                api=api,
                model=model,
                backend=backend,
                threads=threads,
                outputs=OutputMap(cc_base, cc_class, cc_part, cc_likeness),
                osc=tuple(osc or ()),
                declared=parse_declarations(declare or []),
                channels=parse_channels(channels),
                hop_bars=hop_bars,
                bpm=bpm,
                meter=parse_meter(meter),
                max_note_bars=max_note_bars,
                stats_every=stats,
                verbose=verbose,
            )
        with clean_errors():
            ports = open_ports(settings)
            try:
                daemon = build_daemon(settings, ports)
            except BaseException:
                close_io(ports.midi_in, ports.midi_out)
                raise
        run_until_signal(daemon, ports, ready_line(settings, daemon, ports), console)
