"""The one exception family of ``train``: bad input or a missing tool, saying what to do."""

from live.errors import KdliveError


class DataError(KdliveError):
    """Input data that cannot be used (missing folder, unknown layout, nothing usable)."""


class CheckpointError(DataError):
    """A checkpoint or stage file that cannot be loaded safely (it holds a pickled object)."""


class MissingToolError(DataError):
    """An external program or file the pipeline needs (FluidSynth, a soundfont) is missing."""


class ConfigError(KdliveError, ValueError):
    """A setting that is out of range, or an override that names no setting."""
