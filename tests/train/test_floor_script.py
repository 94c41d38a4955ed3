"""experiments/floor.py's helpers: the student and the floor blended; fit_pool, where a second
round of gradient-boosting fits, after the parent has fitted and predicted with OpenMP,
finishes (forked workers hung there in libgomp: the experiments' pools before fit_pool, unless
OMP_NUM_THREADS=1 was set)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.train.experiments import load
from train.history import RESET_BARS

floor_script = load("floor")
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


def test_blends_weigh_the_student_by_its_share() -> None:
    rng = np.random.default_rng(0)
    student = rng.dirichlet(np.ones(8), size=(2, 5)).astype(np.float32)
    floor = {"window": rng.dirichlet(np.ones(8), 5), "running": rng.dirichlet(np.ones(8), 5)}
    (w0, none), (w1, half), (w2, alone) = floor_script.blends(*student, floor, [0.0, 0.5, 1.0])
    assert (w0, w1, w2) == (0.0, 0.5, 1.0)
    np.testing.assert_allclose(none["window"], floor["window"])
    np.testing.assert_allclose(alone["running"], student[1])
    np.testing.assert_allclose(half["window"], (student[0] + floor["window"]) / 2)
    np.testing.assert_allclose(half["running"].sum(1), 1, rtol=1e-6)


class Store:
    """The index of a notes store, and inputs that name their window (its row in the cell
    [0, 0, 0])."""

    def __init__(self, song: list[int], part: list[int], bar: list[int]) -> None:
        self.index = {
            "song": np.array(song, np.int32),
            "part": np.array(part, np.int16),
            "bar": np.array(bar, np.int32),
        }

    def inputs(self, rows: np.ndarray) -> np.ndarray:
        x = np.zeros((len(rows), 5, 128, 16), np.uint8)
        x[:, 0, 0, 0] = rows
        return x


class Recorder:
    """A bundle with a state that counts the windows its part has heard; records each batch."""

    state_size = 1

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def step(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, ...]:
        self.batches.append(x[:, 0, 0, 0].astype(int).tolist())
        state = state + 1
        window = np.zeros((len(x), 8), np.float32)
        window[:, 0] = x[:, 0, 0, 0]
        running = np.zeros_like(window)
        running[:, 0] = state[:, 0]
        return window, running, state


@pytest.mark.parametrize("lines", [1, 2, 1024])
def test_student_answers_step_one_bar_line_at_a_time(lines: int) -> None:
    """Each batch is one song's windows at one bar (the daemon's bar line: a student whose
    channels attend to each other answers them together); a part's state goes on from bar to
    bar and starts again after a long silence; answers come back in the given order."""
    gap = RESET_BARS + 1
    song = [0, 0, 0, 0, 0, 1, 1, 0]
    part = [0, 1, 0, 1, 0, 0, 1, 2]
    bar = [0, 0, 1, 1, 1 + gap, 0, 0, 1]
    store = Store(song, part, bar)
    idx = np.array([7, 0, 1, 2, 3, 4, 5, 6])  # any order
    model = Recorder()
    window, running = floor_script.student_answers(model, store, idx, lines=lines)
    assert sorted(map(sorted, model.batches)) == sorted([[0, 1], [2, 3, 7], [4], [5, 6]])
    np.testing.assert_array_equal(window[:, 0], idx)
    heard = {0: 1, 1: 1, 2: 2, 3: 2, 4: 1, 5: 1, 6: 1, 7: 1}
    np.testing.assert_array_equal(running[:, 0], [heard[i] for i in idx])
