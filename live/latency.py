"""The one summary of a set of latencies that every report of them uses (``--stats``, the
view, ``kdexport bench`` and the benchmarks), and the one description of the machine they were
measured on."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
import numpy.typing as npt


def summary(ms: npt.ArrayLike, *, mean: bool = False) -> dict[str, float | None]:
    """``p50_ms``, ``p99_ms`` and ``max_ms`` (and ``mean_ms`` if asked) of latencies ``ms``
    (``[n]``, milliseconds), as floats; each None when there are none. Callers add the count
    under the key their report uses (``n``, ``iters``)."""
    a = np.asarray(ms, dtype=np.float64)
    out: dict[str, float | None] = dict.fromkeys(("p50_ms", "p99_ms", "max_ms"))
    if mean:
        out["mean_ms"] = None
    if len(a):
        out["p50_ms"] = float(np.percentile(a, 50))
        out["p99_ms"] = float(np.percentile(a, 99))
        out["max_ms"] = float(a.max())
        if mean:
            out["mean_ms"] = float(a.mean())
    return out


def machine() -> dict:
    """What the figures were measured on: CPU model and cores, platform, versions, load."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": _onnxruntime_version(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _onnxruntime_version() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return str(onnxruntime.__version__)
