"""What a malicious checkpoint carries, for the tests that show it is refused."""

from __future__ import annotations

import os
from pathlib import Path


class RunsCode:
    """What a malicious checkpoint carries: unpickling it would call ``os.system``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))
