"""kdlive's runtime: the input contract, MIDI-file reading and the live daemon.

This package is torch-free on purpose (numpy, mido and ONNX Runtime) so that the daemon starts
fast and installs light. ``train`` imports the contract from here (:mod:`live.contract`,
:mod:`live.taxonomy`, :mod:`live.windows`), so training windows and live windows are made by
the same functions. Import what you need from its modules; this file imports nothing, so
``kdlive --help`` does not pay for numpy.
"""
