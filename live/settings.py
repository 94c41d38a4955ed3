"""What `kdlive listen` runs with: one object, checked when it is made.

A value that cannot work raises :class:`live.errors.SettingError` naming the field
(``hop_bars must be ...``); the command line says it with its flag instead. Each check is the
one its core class makes (:func:`live.engine.check_hop_bars`, :func:`live.transport.check_bpm`,
:class:`live.outputs.OutputMap`, :class:`live.engine.FixedMeter`), made here before any port
opens or any model loads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from live.channels import PITCHED, check_channels
from live.engine import FixedMeter, check_hop_bars
from live.errors import SettingError
from live.outputs import OutputMap
from live.taxonomy import CLASSES
from live.transport import check_bpm


@dataclass(frozen=True)
class ListenSettings:
    """`kdlive listen`'s settings (``docs/live.md`` says what each does).

    Attributes:
        port / virtual: the input: an existing port (case-insensitive substring) or a new
            virtual one; exactly one.
        out_port / out_virtual: the CC output: an existing port, else a new virtual one.
        api: MIDI API (``jack``, ``alsa``, ``coremidi``, ``winmm``); None: the platform's.
        model: model bundle folder; None: the shipped one.
        backend: ``auto``, ``tensorrt``, ``cuda`` or ``cpu``; threads: ONNX Runtime CPU threads.
        outputs: the CC numbers.
        osc: ``HOST:PORT`` of each OSC receiver.
        declared: channel (1-16) -> the class it is written for.
        channels: the channels classified (all are heard as context).
        hop_bars: 1 (a window at every bar line) or 2.
        bpm: the internal clock's tempo, when no MIDI clock comes.
        meter: (numerator, denominator); MIDI clock carries none.
        max_note_bars: notes held longer are ended (a lost note-off).
        stats_every: seconds between ``--stats`` lines; 0: none.
        verbose: log every window.
    """

    port: str | None = None
    virtual: str | None = None
    out_port: str | None = None
    out_virtual: str = "kdlive out"
    api: str | None = None
    model: Path | None = None
    backend: str = "auto"
    threads: int = 1
    outputs: OutputMap = field(default_factory=OutputMap)
    osc: tuple[str, ...] = ()
    declared: dict[int, str] = field(default_factory=dict)
    channels: tuple[int, ...] = PITCHED
    hop_bars: int = 1
    bpm: float = 120.0
    meter: tuple[int, int] = (4, 4)
    max_note_bars: int = 8
    stats_every: float = 0.0
    verbose: bool = False

    def __post_init__(self) -> None:
        if (self.port is None) == (self.virtual is None):
            raise SettingError(
                "give {port} NAME (an existing input) or {virtual} NAME (a new one)",
                "port",
                "virtual",
            )
        check_hop_bars(self.hop_bars)
        check_bpm(self.bpm)
        self.fixed_meter()
        for target in self.osc:
            osc_address(target)
        check_channels(self.channels)
        for channel, name in self.declared.items():
            if not 1 <= channel <= 16 or name not in CLASSES:
                raise SettingError(f"{{declared}} {channel}={name}: {_DECLARE_HOW}", "declared")
        for name, least in (("threads", 1), ("max_note_bars", 0), ("stats_every", 0)):
            if getattr(self, name) < least:
                raise SettingError(f"{{{name}}} must be at least {least}", name)

    def fixed_meter(self) -> FixedMeter:
        """The live bar grid of :attr:`meter`."""
        try:
            return FixedMeter(*self.meter)
        except ValueError:
            num, den = self.meter
            raise SettingError(f"{{meter}} {num}/{den}: {_METER_HOW}", "meter") from None


_METER_HOW = "give a meter like 4/4, 3/4, 6/8 or 7/8"
_DECLARE_HOW = (
    f"write CHANNEL=CLASS, a channel 1-16 and one of {', '.join(CLASSES)} (e.g. 3=Strings)"
)


def parse_meter(text: str) -> tuple[int, int]:
    """``4/4`` -> ``(4, 4)`` (checked by :class:`ListenSettings`)."""
    try:
        num, den = (int(x) for x in text.split("/"))
    except ValueError:
        raise SettingError(f"{{meter}} {text!r}: {_METER_HOW}", "meter") from None
    return num, den


def parse_declarations(items: Iterable[str]) -> dict[int, str]:
    """``["3=Strings", "1=piano"]`` -> ``{3: "Strings", 1: "Piano"}``."""
    out: dict[int, str] = {}
    for item in items:
        channel, _, name = item.partition("=")
        match = [c for c in CLASSES if c.lower() == name.strip().lower()]
        if not channel.strip().isdigit() or not 1 <= int(channel) <= 16 or not match:
            raise SettingError(f"{{declared}} {item!r}: {_DECLARE_HOW}", "declared")
        out[int(channel)] = match[0]
    return out


def osc_address(target: str) -> tuple[str, int]:
    """``HOST:PORT`` -> ``(host, port)``."""
    host, _, port_text = target.rpartition(":")
    try:
        port = int(port_text)
        if not host or not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise SettingError(
            f"{{osc}} {target!r}: give HOST:PORT, e.g. 127.0.0.1:9000", "osc"
        ) from None
    return host, port
