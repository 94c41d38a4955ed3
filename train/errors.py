"""The one exception family of ``train``: bad input or a missing tool, saying what to do."""


class DataError(Exception):
    """Input data that cannot be used (missing folder, unknown layout, nothing usable)."""


class MissingToolError(DataError):
    """An external program or file the pipeline needs (FluidSynth, a soundfont) is missing."""
