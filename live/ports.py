"""MIDI ports for the daemon: :func:`open_io` opens its input and output, through the native
JACK client (:mod:`live.jackio`) under JACK and python-rtmidi (raw bytes in a callback, no
parsing there) for ALSA, CoreMIDI and Windows MM.

The API comes from ``--api``, else ``MIDO_BACKEND`` (``mido.backends.rtmidi/UNIX_JACK``), else the
platform's own: CoreMIDI on macOS, Windows MM on Windows, and on Linux ALSA, or JACK when ALSA
cannot start (containers and machines without a sound card have no ALSA sequencer).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from live.errors import PortError
from live.inbox import Inbox
from live.jackio import JackInput, JackOutputClient
from live.portbase import CLIENT_NAME, WatchedInput, find_port

T = TypeVar("T")

API_NAMES = {
    "jack": "UNIX_JACK",
    "alsa": "LINUX_ALSA",
    "coremidi": "MACOSX_CORE",
    "winmm": "WINDOWS_MM",
}


def _rtmidi() -> ModuleType:
    import rtmidi

    return rtmidi


def api_candidates(api: str | None) -> list[int]:
    """rtmidi API constants to try, in order."""
    rtmidi = _rtmidi()
    name = None
    if api is not None:
        if api.lower() not in API_NAMES:
            raise PortError(f"--api must be one of {', '.join(API_NAMES)}")
        name = API_NAMES[api.lower()]
    elif "/" in os.environ.get("MIDO_BACKEND", ""):
        name = os.environ["MIDO_BACKEND"].rsplit("/", 1)[1].upper()
    if name is not None:
        const = getattr(rtmidi, f"API_{name}", None)
        if const is None:
            raise PortError(f"unknown MIDI API {name!r} (MIDO_BACKEND?)")
        if const not in rtmidi.get_compiled_api():
            raise PortError(f"this python-rtmidi was built without {name}")
        return [const]
    if sys.platform.startswith("linux"):
        order = [rtmidi.API_LINUX_ALSA, rtmidi.API_UNIX_JACK]
        return [a for a in order if a in rtmidi.get_compiled_api()]
    return [rtmidi.API_UNSPECIFIED]


def _make(kind: str, apis: list[int], client: str) -> Any:
    rtmidi = _rtmidi()
    errors = []
    for api in apis:
        try:
            port = (rtmidi.MidiIn if kind == "in" else rtmidi.MidiOut)(rtapi=api, name=client)
        except Exception as exc:  # rtmidi raises SystemError or RtMidiError
            errors.append(f"{rtmidi.get_api_display_name(api)}: {exc}")
            continue
        return port
    hint = (
        "start a JACK server (jackd -d dummy works without a sound card) and pass --api jack"
        if sys.platform.startswith("linux")
        else "check the MIDI setup"
    )
    raise PortError(f"cannot open a MIDI client ({'; '.join(errors)}): {hint}")


class InputPort(WatchedInput):
    """The daemon's MIDI input: an existing port (``--port``, re-connected if it disappears
    and comes back) or a virtual one (``--virtual``)."""

    def __init__(
        self,
        callback: Callable,
        *,
        rtapi: int,
        port: str | None = None,
        virtual: str | None = None,
        client: str = CLIENT_NAME,
    ) -> None:
        if (port is None) == (virtual is None):
            raise PortError("give either --port NAME or --virtual NAME")
        if virtual is not None and sys.platform == "win32":
            raise PortError(
                "Windows MIDI has no virtual ports: create one with loopMIDI and "
                "pass --port with its name"
            )
        self.wanted, self.callback, self.connected_name = port, callback, None
        self.midi = _make("in", [rtapi], client)
        # Receive clock and sysex (rtmidi drops them by default); active sensing stays out.
        self.midi.ignore_types(sysex=False, timing=False, active_sense=True)
        self.midi.set_callback(callback)
        if virtual is not None:
            self.midi.open_virtual_port(virtual)
            self.connected_name = virtual
        else:
            self._open()

    def _open(self) -> None:
        names = self.midi.get_ports()
        i = find_port(names, self.wanted or "", "input")
        self.midi.open_port(i, name="in")
        self.connected_name = names[i]

    def _sources(self) -> list[str]:
        return self.midi.get_ports()

    def _is_connected(self) -> bool:
        return True  # an open rtmidi port is its connection

    def _reconnect(self, names: list[str], i: int) -> None:
        self.midi.close_port()
        self.midi.open_port(i, name="in")

    def close(self) -> None:
        """Cancel the callback first (no call into a half-closed object), then close."""
        try:
            self.midi.cancel_callback()
        finally:
            self.midi.close_port()
            del self.midi


def open_output(
    *,
    rtapi: int,
    port: str | None = None,
    virtual: str | None = "kdlive out",
    client: str = CLIENT_NAME,
) -> Any:
    """The CC output (rtmidi): an existing port (``--out-port``) or a virtual one."""
    midi = _make("out", [rtapi], f"{client}-out")
    if port is not None:
        names = midi.get_ports()
        midi.open_port(find_port(names, port, "output"), name="out")
    else:
        if sys.platform == "win32":
            raise PortError(
                "Windows MIDI has no virtual ports: create one with loopMIDI and "
                "pass --out-port with its name"
            )
        midi.open_virtual_port(virtual)
    return midi


def open_io(
    inbox: Inbox,
    *,
    api: str | None = None,
    port: str | None = None,
    virtual: str | None = None,
    out_port: str | None = None,
    out_virtual: str = "kdlive out",
) -> tuple[WatchedInput, Any]:
    """The daemon's input and output: one native JACK client under JACK (see
    :mod:`live.jackio`), rtmidi for ALSA, CoreMIDI and Windows MM. Linux without ``--api``
    tries ALSA, then JACK. The input's callback puts each message in ``inbox``. Returns
    ``(input, output)``: the output has ``send_message``; :func:`close_io` closes both."""
    rtmidi = _rtmidi()

    def open_with(candidate: int) -> tuple[WatchedInput, Any]:
        if candidate == rtmidi.API_UNIX_JACK:
            jack_io = JackInput(
                inbox.enqueue,
                port=port,
                virtual=virtual,
                out_port=out_port,
                out_virtual=out_virtual,
            )
            return jack_io, jack_io.output
        midi_in = InputPort(inbox.rtmidi_callback, rtapi=candidate, port=port, virtual=virtual)
        try:
            return midi_in, open_output(rtapi=candidate, port=out_port, virtual=out_virtual)
        except PortError:
            midi_in.close()
            raise

    return _first_api(api, open_with)


def open_output_port(
    *, api: str | None = None, port: str | None = None, virtual: str = "kdlive out"
) -> Any:
    """The daemon's output alone, named as :func:`open_io` names it (``kdlive learn``): the
    native JACK client's under JACK, else rtmidi's; has ``send_message``, closed with
    :func:`close_output`."""
    rtmidi = _rtmidi()

    def open_with(candidate: int) -> Any:
        if candidate == rtmidi.API_UNIX_JACK:
            return JackOutputClient(out_port=port, out_virtual=virtual)
        return open_output(rtapi=candidate, port=port, virtual=virtual)

    return _first_api(api, open_with)


def _first_api(api: str | None, open_with: Callable[[int], T]) -> T:
    """``open_with(candidate)`` for each MIDI API of ``api`` in turn (:func:`api_candidates`)
    until one opens; a port that no name matches fails at once (another API would not help)."""
    errors = []
    candidates = api_candidates(api)
    for candidate in candidates:
        try:
            return open_with(candidate)
        except PortError as exc:
            if "matches" in str(exc) or len(candidates) == 1:
                raise
            errors.append(str(exc))
    raise PortError("; ".join(errors))


def close_output(midi_out: Any) -> None:
    """Close what :func:`open_output_port` opened."""
    if hasattr(midi_out, "close_port"):
        midi_out.close_port()
    else:
        midi_out.close()


def close_io(midi_in: WatchedInput, midi_out: Any) -> None:
    """Close what :func:`open_io` opened: the input (its callback first, then the port), then
    the output (rtmidi's; JACK's output closed with the input's client)."""
    midi_in.close()
    if hasattr(midi_out, "close_port"):
        midi_out.close_port()
