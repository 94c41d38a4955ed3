"""experiments/ensemble.py (students averaged): the answers averaged, and the figures kept."""

from __future__ import annotations

import numpy as np

from tests.train.experiments import load

ensemble = load("ensemble")


def test_the_mean_of_students_is_a_probability_per_window() -> None:
    rng = np.random.default_rng(0)
    answers = []
    for _ in range(3):
        w, r = rng.random((10, 8)), rng.random((10, 8))
        answers.append((w / w.sum(1, keepdims=True), r / r.sum(1, keepdims=True)))
    window, running = ensemble.mean_answers(answers)
    np.testing.assert_allclose(window.sum(axis=1), 1.0)
    np.testing.assert_allclose(running, (answers[0][1] + answers[1][1] + answers[2][1]) / 3)
    same = ensemble.mean_answers([answers[0], answers[0]])
    np.testing.assert_allclose(same[0], answers[0][0])


def test_brief_keeps_the_levers_figures() -> None:
    result = {
        "macro_f1": 0.5,
        "running": {"macro_f1": 0.55, "five_classes": 0.7},
        "parts": {"8": {"macro_f1": 0.49}},
    }
    assert ensemble.brief(result) == {"window": 0.5, "running": 0.55, "after_8": 0.49, "five": 0.7}
    assert ensemble.brief({**result, "parts": {}})["after_8"] is None
