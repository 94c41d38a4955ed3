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


class SettingError(LiveError, ValueError):
    """A setting with a value that cannot work. The message names the settings it is about by
    their field names (``hop_bars must be 1 or 2``); a command line shows its own names for them
    instead (``--hop-bars must be 1 or 2``) with :meth:`named`.

    Args:
        template: the message, with each setting written ``{field}``.
        fields: the fields the template names.
    """

    def __init__(self, template: str, *fields: str) -> None:
        self.template, self.fields = template, fields
        super().__init__(self.named({}))

    def named(self, names: dict[str, str]) -> str:
        """The message with each field called by ``names`` (a field not in it keeps its own)."""
        return self.template.format(**{f: names.get(f, f) for f in self.fields})
