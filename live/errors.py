"""The one exception family of ``live``: bad input, with a message that says what to do."""


class LiveError(Exception):
    """Base class for every error ``live`` raises about its input."""


class ContractError(LiveError, ValueError):
    """Input that breaks the window contract (e.g. a pitch outside 0-127)."""


class MidiFileError(LiveError):
    """A MIDI file that cannot be read (corrupt, truncated, empty or not MIDI at all)."""
