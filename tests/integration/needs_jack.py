"""What every integration module over JACK carries: the ``integration`` marker, and a skip
saying why where no JACK server can run (in CI, where one must, a failure instead)."""

from __future__ import annotations

import os

import pytest

from live.testing.jack import JackServer

_why = JackServer.available()
if _why and os.environ.get("CI"):
    pytest.fail(f"CI must run the JACK tests: {_why}", pytrace=False)
JACK_MARKS = [
    pytest.mark.integration,
    pytest.mark.skipif(_why is not None, reason=f"no JACK server here: {_why}"),
]
