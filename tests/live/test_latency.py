"""The one latency summary (:mod:`live.latency`) that ``--stats``, the view, ``kdexport bench``
and the benchmarks report."""

from __future__ import annotations

import numpy as np

from live.latency import summary


def test_summary_is_p50_p99_max_in_ms_and_none_without_samples() -> None:
    ms = np.arange(1, 101, dtype=np.float64)  # 1..100 ms
    assert summary(ms) == {"p50_ms": 50.5, "p99_ms": 99.01, "max_ms": 100.0}
    assert summary(list(ms), mean=True)["mean_ms"] == 50.5
    assert list(summary(ms, mean=True)) == ["p50_ms", "p99_ms", "max_ms", "mean_ms"]
    assert summary([]) == {"p50_ms": None, "p99_ms": None, "max_ms": None}
    assert all(type(v) is float for v in summary(ms).values())  # JSON-ready
