"""experiments/floor.py's fit_pool: a second round of gradient-boosting fits in a pool, after
the parent has fitted and predicted with OpenMP, finishes. Forked workers hung there in libgomp
(the experiments' pools before fit_pool, unless OMP_NUM_THREADS=1 was set)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Two rounds, as floor.py's --train-songs 600 1800 and controllers.py's inputs run them: each a
# pool of two fits, then the parent's own predict (OpenMP threads in the parent).
ROUNDS = textwrap.dedent(
    """
    import numpy as np
    from experiments.floor import fit_pool, predict, timed_fit

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 12)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)
    for round_ in range(2):
        with fit_pool() as pool:
            fits = [pool.submit(timed_fit, x, y, seed) for seed in (0, 1)]
            (model, _), _ = (f.result() for f in fits)
        accuracy = (predict(model, x).argmax(1) == y).mean()
        print(f"round {round_}: {accuracy:.2f}", flush=True)
    """
)


@pytest.mark.slow
def test_fits_after_the_parent_ran_openmp_finish() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, "-c", ROUNDS],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the pool's workers die with it if it hangs
    )
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"the second round of fits hung:\n{out}")
    assert proc.returncode == 0, out
    rounds = [line for line in out.splitlines() if line.startswith("round")]
    assert len(rounds) == 2, out
    assert all(float(line.split(": ")[1]) > 0.9 for line in rounds), out
