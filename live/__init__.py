"""kdlive's runtime: the input contract, MIDI-file reading and (later) the live daemon.

This package is torch-free on purpose (numpy and mido only) so that the daemon starts fast and
installs light. ``train`` imports the contract from here, so training windows and live windows
are made by the same functions.
"""

from live.contract import CONTRACT_VERSION, MEL, WINDOW, MelSpec, WindowSpec, quantize
from live.errors import ContractError, LiveError, MidiFileError
from live.taxonomy import CLASSES, N_CLASSES, class_of_program, class_of_slakh

__all__ = [
    "CLASSES",
    "CONTRACT_VERSION",
    "ContractError",
    "LiveError",
    "MEL",
    "MelSpec",
    "MidiFileError",
    "N_CLASSES",
    "WINDOW",
    "WindowSpec",
    "class_of_program",
    "class_of_slakh",
    "quantize",
]
