"""The one summary of a set of latencies that every report of them uses (``--stats``, the
view, ``kdexport bench`` and the benchmarks)."""

from __future__ import annotations

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
