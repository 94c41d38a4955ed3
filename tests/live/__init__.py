"""Tests of ``live``: they need only the base install and the dev extra
(``pip install '.[dev]'``; ``.ci/run`` proves it in a venv of its own)."""
