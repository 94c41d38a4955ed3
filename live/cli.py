"""`kdlive`: the live side's command line. Imports nothing heavy at start-up (no torch)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from live.console import clean_errors, fail
from live.errors import LiveError

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
    """Print the input contract: window, grid, classes and audio features."""
    import json
    from dataclasses import asdict

    from live.contract import CONTRACT_VERSION, MEL, WINDOW
    from live.taxonomy import CLASSES

    info = {
        "contract_version": CONTRACT_VERSION,
        "window": asdict(WINDOW),
        "input_shape": [None, *WINDOW.input_shape],
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


def parse_meter(text: str) -> tuple[int, int]:
    try:
        num, den = (int(x) for x in text.split("/"))
        from live.engine import FixedMeter

        FixedMeter(num, den)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: a meter like 4/4, 3/4, 6/8 or 7/8") from None
    return num, den


def _load_model(model: Optional[Path], backend: str, threads: int = 1):  # noqa: ANN202, UP045
    from live.model import Model

    return Model(model, backend=backend, threads=threads)


ModelOpt = Annotated[
    Optional[Path],  # noqa: UP045 (typer needs Optional)
    typer.Option("--model", help="Model bundle folder (default: the one shipped with kdlive)."),
]
BackendOpt = Annotated[
    str, typer.Option("--backend", help="Inference: auto, tensorrt, cuda or cpu.")
]
HopOpt = Annotated[int, typer.Option("--hop-bars", help="A window every 1 or 2 bars.")]
ChannelsOpt = Annotated[str, typer.Option("--channels", help="MIDI channels to follow.")]


# ----------------------------------------------------------------------------------- replay


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="A Standard MIDI File.")],
    model: ModelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    hop_bars: HopOpt = 1,
    channels: ChannelsOpt = "1-16",
    backend: BackendOpt = "auto",
) -> None:
    """Classify a MIDI file's parts, window by window, with the daemon's own code (no ports).

    Prints per channel and window: bar, class, probabilities (contract order).
    """
    from live.replay import replay_windows

    chans = parse_channels(channels)
    if hop_bars not in (1, 2):
        raise typer.BadParameter("--hop-bars must be 1 or 2")
    with clean_errors():
        m = _load_model(model, backend)
        classes = list(m.classes)
        batches = replay_windows(file, hop_bars=hop_bars, channels=chans)
        if not as_json:
            typer.echo(
                f"{'ch':>2} {'bar':>4}  {'class':<8} " + " ".join(f"{c[:6]:>6}" for c in classes)
            )
        for batch in batches:
            rolls = np.stack([w.roll for w in batch])[:, None].astype(np.float32)
            probs = m.predict(rolls)
            for w, p in zip(batch, probs, strict=True):
                best = classes[int(p.argmax())]
                if as_json:
                    typer.echo(
                        json.dumps(
                            {
                                "channel": w.channel,
                                "bar": w.bar + 1,
                                "class": best,
                                "probs": [round(float(x), 6) for x in p],
                            }
                        )
                    )
                else:
                    typer.echo(
                        f"{w.channel:>2} {w.bar + 1:>4}  {best:<8} "
                        + " ".join(f"{x:6.3f}" for x in p)
                    )


# ----------------------------------------------------------------------------------- listen


@app.command()
def listen(
    port: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--port", help="Input port to read (case-insensitive substring, e.g. IAC)."),
    ] = None,
    virtual: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--virtual", help="Create a virtual input port with this name instead."),
    ] = None,
    model: ModelOpt = None,
    out_port: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--out-port", help="Send CC to this existing output port."),
    ] = None,
    out_virtual: Annotated[
        str, typer.Option("--out-virtual", help="Else create a virtual output port.")
    ] = "kdlive out",
    osc: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--osc", help="Send OSC to HOST:PORT (repeatable)."),
    ] = None,
    cc_base: Annotated[
        int, typer.Option("--cc-base", help="CCs base..base+7: probabilities.")
    ] = 20,
    cc_class: Annotated[int, typer.Option("--cc-class", help="CC carrying the class index.")] = 28,
    channels: ChannelsOpt = "1-16",
    hop_bars: HopOpt = 1,
    bpm: Annotated[float, typer.Option("--bpm", help="Tempo when no MIDI clock arrives.")] = 120.0,
    meter: Annotated[str, typer.Option("--meter", help="Meter (MIDI clock has none).")] = "4/4",
    api: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--api", help="MIDI API: jack, alsa, coremidi or winmm."),
    ] = None,
    backend: BackendOpt = "auto",
    threads: Annotated[int, typer.Option("--threads", help="ONNX Runtime CPU threads.")] = 1,
    stats: Annotated[
        float, typer.Option("--stats", help="Print latency percentiles and counters every N s.")
    ] = 0.0,
    max_note_bars: Annotated[
        int, typer.Option("--max-note-bars", help="End notes held longer (lost note-offs).")
    ] = 8,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every window.")] = False,
) -> None:
    """Listen to a MIDI port; per channel and 2-bar window, send the instrument as CC and OSC."""
    from live.daemon import Daemon, OutputMap
    from live.engine import FixedMeter, WindowEngine
    from live.ports import open_io
    from live.transport import Transport

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s kdlive: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    log = logging.getLogger("kdlive")
    chans = parse_channels(channels)
    num, den = parse_meter(meter)
    if hop_bars not in (1, 2):
        raise typer.BadParameter("--hop-bars must be 1 or 2")
    if port is None and virtual is None:
        raise typer.BadParameter("give --port NAME (an existing input) or --virtual NAME")
    try:
        mapping = OutputMap(cc_base, cc_class)
        engine = WindowEngine(
            FixedMeter(num, den), hop_bars=hop_bars, channels=chans, max_note_bars=max_note_bars
        )
        transport = Transport(engine, bpm=bpm, say=log.info)
    except ValueError as exc:
        fail(str(exc))
    with clean_errors():
        m = _load_model(model, backend, threads)
        osc_clients = [_osc_client(target) for target in osc or []]

    def on_emit(closed, probs) -> None:  # noqa: ANN001
        if verbose:
            for w, p in zip(closed, probs, strict=True):
                log.info(
                    "ch %d bar %d: %s %.2f",
                    w.channel,
                    w.bar + 1,
                    m.classes[int(p.argmax())],
                    float(p.max()),
                )

    daemon = Daemon(
        m,
        engine,
        transport,
        midi_out=None,
        osc=osc_clients,
        outputs=mapping,
        stats_every=stats,
        on_emit=on_emit,
    )
    with clean_errors():
        midi_in, midi_out = open_io(daemon.callback, daemon.enqueue, api=api, port=port,
                                    virtual=virtual, out_port=out_port,
                                    out_virtual=out_virtual)  # fmt: skip
    daemon.midi_out = midi_out
    daemon.port_check = midi_in.check
    daemon.port_counters = midi_in.counters
    if hasattr(midi_in, "now_ns"):
        daemon.clock = midi_in.now_ns
    stop = {"signal": None}

    def on_signal(signum, frame) -> None:  # noqa: ANN001
        stop["signal"] = signum
        daemon.stop_event.set()
        daemon.queue.put((0, []))

    # The input callback (under JACK: the audio thread) waits for the GIL while the worker
    # holds it: hand it over every 0.2 ms instead of every 5 ms.
    sys.setswitchinterval(0.0002)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    log.info(
        "listening on %r -> CC %d-%d (+%d class) on %r%s; model %s on %s; channels %s",
        midi_in.connected_name,
        cc_base,
        cc_base + 7,
        cc_class,
        out_port or out_virtual,
        "".join(f", OSC {t}" for t in osc or []),
        m.bundle.dir.name,
        m.backend,
        channels,
    )
    daemon.start()
    try:
        while daemon.thread is not None and daemon.thread.is_alive():
            daemon.thread.join(0.2)
    finally:
        daemon.stop()
        # Close the ports (callback first, then the ports), but never hang on the way out: a
        # JACK server in synchronous mode waits for every client's cycle before letting one go.
        closer = threading.Thread(target=_close_ports, args=(midi_in, midi_out), daemon=True)
        closer.start()
        closer.join(3.0)
        if closer.is_alive():
            log.warning("the MIDI ports did not close within 3 s; exiting anyway")
        if stats:
            daemon.print_stats()
        log.info("stopped (%s)", signal.Signals(stop["signal"]).name if stop["signal"] else "")


def _close_ports(midi_in, midi_out) -> None:  # noqa: ANN001
    midi_in.close()
    if hasattr(midi_out, "close_port"):
        midi_out.close_port()


def _osc_client(target: str):  # noqa: ANN202
    from pythonosc.udp_client import SimpleUDPClient

    host, _, port_text = target.rpartition(":")
    try:
        port_num = int(port_text)
        if not host or not 0 < port_num < 65536:
            raise ValueError
    except ValueError:
        raise LiveError(f"--osc {target!r}: give HOST:PORT, e.g. 127.0.0.1:9000") from None
    return SimpleUDPClient(host, port_num)
