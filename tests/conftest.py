"""Fixtures every folder may use, built from ``live.testing``. This file imports nothing beyond
the base install and the dev extra, so that ``tests/live`` collects without the train extra;
a fixture that one folder alone uses is in that folder's ``conftest.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from live.testing.songs import demo_midi_files


@pytest.fixture(scope="session")
def demo_files() -> list[Path]:
    """The Debian demo corpus's MIDI files; CI must have it, elsewhere skip saying how."""
    files = demo_midi_files()
    if not files:
        if os.environ.get("CI"):
            pytest.fail("CI must install the demo corpus (scripts/setup.sh)")
        pytest.skip("demo corpus not installed (scripts/setup.sh)")
    return files
