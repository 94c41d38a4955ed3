"""Builders for tests and benchmarks (like ``numpy.testing``): :mod:`live.testing.songs` writes
MIDI songs, :mod:`live.testing.jack` runs a JACK server and clients that play into and listen
to ``kdlive listen``, :mod:`live.testing.daemon` drives a daemon through in-memory ports.

Like the rest of ``live``, they need only the base install (mido, numpy, python-rtmidi,
JACK-Client); the Slakh builders, which need the train extra, are in ``train.testing``.
"""
