"""Errors of ``export``, importable without torch."""


class ExportError(Exception):
    """The exported model is not faithful to the original, or cannot run where it must."""
