"""`kdlive`: the live side's command line, thin over live's Python API.

``kdlive --help`` must be instant, so this module imports typer and nothing heavy: numpy, mido,
the model and the engine are imported inside the commands that use them (and the port modules
import rtmidi and JACK only when they open a port).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from live.console import clean_errors, fail
from live.errors import LiveError
from live.inbox import Inbox
from live.ports import API_NAMES, open_io
from live.taxonomy import CLASSES

if TYPE_CHECKING:
    from pythonosc.udp_client import SimpleUDPClient

    from live.engine import ClosedWindow
    from live.model import Model
    from live.parts import Answers

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
    from live.inputs import CHANNELS_V2
    from live.parts import RESET_BARS

    info = {
        "contract_versions": list(CONTRACTS),
        "window": asdict(WINDOW),
        "input_shape": {str(v): [None, *c.input_shape] for v, c in CONTRACTS.items()},
        "contract_2_channels": list(CHANNELS_V2),
        "running_answer_resets_after_silent_bars": RESET_BARS,
        "classes": list(CLASSES),
        "mel": asdict(MEL),
    }
    typer.echo(json.dumps(info, indent=1))


# --------------------------------------------------------------------------- shared options


def parse_channels(text: str) -> list[int]:
    """``1-16``, ``1-9,11-16`` or ``1,2,5`` -> channel numbers 1-16."""
    out: set[int] = set()
    try:
        for part in text.split(","):
            a, _, b = part.strip().partition("-")
            lo, hi = int(a), int(b or a)
            if not 1 <= lo <= hi <= 16:
                raise ValueError
            out.update(range(lo, hi + 1))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: channels are 1-16, e.g. 1-16, 1-9,11-16 or 1,2,5"
        ) from None
    return sorted(out)


def parse_declarations(items: list[str]) -> dict[int, str]:
    """``["3=Strings", "1=piano"]`` -> ``{3: "Strings", 1: "Piano"}``."""
    from live.taxonomy import CLASSES

    out: dict[int, str] = {}
    for item in items:
        channel, _, name = item.partition("=")
        match = [c for c in CLASSES if c.lower() == name.strip().lower()]
        if not channel.strip().isdigit() or not 1 <= int(channel) <= 16 or not match:
            raise typer.BadParameter(
                f"--declare {item!r}: write CHANNEL=CLASS, a channel 1-16 and one of "
                f"{', '.join(CLASSES)} (e.g. 3=Strings)"
            )
        out[int(channel)] = match[0]
    return out


def parse_meter(text: str) -> tuple[int, int]:
    try:
        num, den = (int(x) for x in text.split("/"))
        from live.engine import FixedMeter

        FixedMeter(num, den)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: a meter like 4/4, 3/4, 6/8 or 7/8") from None
    return num, den


def _load_model(model: Path | None, backend: str, threads: int = 1) -> Model:
    from live.model import Model

    return Model(model, backend=backend, threads=threads)


ModelOpt = Annotated[
    Path | None,
    typer.Option("--model", help="Model bundle folder (default: the one shipped with kdlive)."),
]
BackendOpt = Annotated[
    str, typer.Option("--backend", help="Inference: auto, tensorrt, cuda or cpu.")
]
HopOpt = Annotated[int, typer.Option("--hop-bars", help="A window every 1 or 2 bars.")]
ChannelsOpt = Annotated[
    str,
    typer.Option(
        "--channels",
        help="MIDI channels to classify (every channel is heard as context). Default: all but "
        "10, General MIDI's drums; 1-16 classifies them too.",
    ),
]


# ----------------------------------------------------------------------------------- replay


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="A Standard MIDI File.")],
    model: ModelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    hop_bars: HopOpt = 1,
    channels: ChannelsOpt = "1-9,11-16",
    backend: BackendOpt = "auto",
) -> None:
    """Classify a MIDI file's parts, window by window, with the daemon's own code (no ports).

    Prints per channel and window: bar, the window's class, the part's running answer (what it
    has sounded like so far) and the window's probabilities (contract order).
    """
    from live.parts import PartTracker
    from live.replay import replay_windows

    chans = parse_channels(channels)
    if hop_bars not in (1, 2):
        raise typer.BadParameter("--hop-bars must be 1 or 2")
    with clean_errors():
        m = _load_model(model, backend)
        classes = list(m.classes)
        batches = replay_windows(file, hop_bars=hop_bars, channels=chans)
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
    channels: ChannelsOpt = "1-9,11-16",
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
    from live.daemon import Daemon, OutputMap
    from live.engine import FixedMeter, WindowEngine
    from live.listen import logging_off_the_worker, run_until_signal
    from live.transport import Transport

    console = None
    if view if view is not None else sys.stdout.isatty():
        from rich.console import Console

        # log lines print above the view; an explicit --view draws into a pipe too
        console = Console(force_terminal=True if view else None)
    with logging_off_the_worker(console):
        log = logging.getLogger("kdlive")
        chans = parse_channels(channels)
        num, den = parse_meter(meter)
        if hop_bars not in (1, 2):
            raise typer.BadParameter("--hop-bars must be 1 or 2")
        if port is None and virtual is None:
            raise typer.BadParameter("give --port NAME (an existing input) or --virtual NAME")
        declared = parse_declarations(declare or [])
        try:
            mapping = OutputMap(cc_base, cc_class, cc_part, cc_likeness)
            engine = WindowEngine(
                FixedMeter(num, den), hop_bars=hop_bars, channels=chans, max_note_bars=max_note_bars
            )
            transport = Transport(engine, bpm=bpm, say=log.info)
        except ValueError as exc:
            fail(str(exc))
        with clean_errors():
            m = _load_model(model, backend, threads)
            osc_clients = [_osc_client(target) for target in osc or []]
            inbox = Inbox()
            midi_in, midi_out = open_io(
                inbox,
                api=api,
                port=port,
                virtual=virtual,
                out_port=out_port,
                out_virtual=out_virtual,
            )
        daemon = Daemon(
            m,
            engine,
            transport,
            inbox=inbox,
            midi_in=midi_in,
            midi_out=midi_out,
            osc=osc_clients,
            outputs=mapping,
            stats_every=stats,
            on_emit=_window_logger(m, log) if verbose else None,
            declared=declared,
        )
        osc_text = "".join(f", OSC {t}" for t in osc or [])
        ready = (
            f"listening on {midi_in.connected_name!r} -> CC {cc_base}-{cc_base + 7} (+{cc_class} "
            f"class, {cc_part} part, {cc_likeness} likeness) on {out_port or out_virtual!r}"
            f"{osc_text}; model "
            f"{m.bundle.dir.name} (contract {m.contract}) on "
            f"{m.backend}; channels {channels}"
        )
        run_until_signal(daemon, midi_in, midi_out, ready, console)


def _window_logger(m: Model, log: logging.Logger) -> Callable[[list[ClosedWindow], Answers], None]:
    """``--verbose``: log each window's class and the part's running class, with confidence."""

    def on_emit(closed: list[ClosedWindow], answers: Answers) -> None:
        for w, p, q in zip(closed, answers.window, answers.part, strict=True):
            best, part = m.classes[int(p.argmax())], m.classes[int(q.argmax())]
            log.info(
                "ch %d bar %d: %s %.2f (part: %s %.2f)",
                w.channel,
                w.bar + 1,
                best,
                float(p.max()),
                part,
                float(q.max()),
            )

    return on_emit


def _osc_client(target: str) -> SimpleUDPClient:
    """``--osc HOST:PORT`` -> an OSC client."""
    from pythonosc.udp_client import SimpleUDPClient

    host, _, port_text = target.rpartition(":")
    try:
        port_num = int(port_text)
        if not host or not 0 < port_num < 65536:
            raise ValueError
    except ValueError:
        raise LiveError(f"--osc {target!r}: give HOST:PORT, e.g. 127.0.0.1:9000") from None
    return SimpleUDPClient(host, port_num)
