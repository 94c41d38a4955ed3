"""What the GPU tests need, said once: they carry the ``gpu``/``tensorrt`` markers and skip
cleanly, saying why, on a machine without TensorRT, cuda-python and an NVIDIA GPU."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T", bound=Callable)


def has_tensorrt() -> bool:
    """TensorRT and cuda-python import, and a GPU answers."""
    try:
        import tensorrt  # noqa: F401

        from live.trt import current_gpu

        current_gpu()
    except Exception:
        return False
    return True


def needs_tensorrt(test: T) -> T:
    """Mark ``test`` ``gpu`` and ``tensorrt``; skip it where :func:`has_tensorrt` is false."""
    marks = (
        pytest.mark.gpu,
        pytest.mark.tensorrt,
        pytest.mark.skipif(
            not has_tensorrt(), reason="needs TensorRT, cuda-python and an NVIDIA GPU"
        ),
    )
    for mark in marks:
        test = mark(test)
    return test
