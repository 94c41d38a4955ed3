"""The tools keep the code honest: ruff (lint, unused noqa, formatting) and mypy are clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *cmd], cwd=REPO, capture_output=True, text=True)


def test_ruff_finds_nothing() -> None:
    lint = run("ruff", "check", ".")
    assert lint.returncode == 0, lint.stdout[-4000:]
    formatted = run("ruff", "format", "--check", ".")
    assert formatted.returncode == 0, formatted.stdout[-4000:]


@pytest.mark.slow
def test_mypy_finds_nothing() -> None:
    result = run("mypy", "live", "train", "export")
    assert result.returncode == 0, result.stdout[-4000:]
