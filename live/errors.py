"""Errors about input, each with a message that says what to do.

:class:`KdliveError` is the root of every package's errors (``train.errors``, ``export.errors``
derive from it), so the three command lines turn any of them into one red line
(:func:`live.console.clean_errors`). ``live`` itself raises the subclasses below.
"""


class KdliveError(Exception):
    """Bad input or a missing piece, with a message that says what to do."""


class LiveError(KdliveError):
    """Base class for every error ``live`` raises about its input."""


class ContractError(LiveError, ValueError):
    """Input that breaks the window contract (e.g. a pitch outside 0-127)."""


class MidiFileError(LiveError):
    """A MIDI file that cannot be read (corrupt, truncated, empty or not MIDI at all)."""


class BundleError(LiveError):
    """A model bundle that is missing, corrupt, or made for another version of kdlive."""


class BackendError(LiveError):
    """A forced inference backend that cannot run on this machine."""


class PortError(LiveError):
    """A MIDI port that cannot be found or opened."""
