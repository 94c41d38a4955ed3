"""Fixtures of the integration tests (real transports and programs)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from live.testing.jack import JackServer


@pytest.fixture(scope="module")
def jack(request: pytest.FixtureRequest) -> Iterator[JackServer]:
    """A JACK server (dummy driver) for one test module, made the default server of this
    process's own clients (rtmidi); the test module skips first where none can run."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    server = JackServer(f"kd{module}{os.getpid()}").start()
    saved = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = server.name
    yield server
    server.stop()
    if saved is None:
        os.environ.pop("JACK_DEFAULT_SERVER", None)
    else:
        os.environ["JACK_DEFAULT_SERVER"] = saved
