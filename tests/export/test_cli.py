"""``kdexport``'s command line, as the console script."""

from __future__ import annotations

import subprocess


def test_kdexport_exists() -> None:
    assert subprocess.run(["kdexport", "--help"], capture_output=True).returncode == 0
