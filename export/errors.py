"""Errors of ``export``, importable without torch."""

from live.errors import KdliveError


class ExportError(KdliveError):
    """The exported model is not faithful to the original, or cannot run where it must."""
