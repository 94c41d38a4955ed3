"""experiments/ood.py: macro-F1 from confusion matrices, the songs' interval, the priors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from tests.train.experiments import load

ood = load("ood")


def test_macro_f1_is_scikit_learns_on_all_windows_and_on_some_classes() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 8, 2000)
    pred = np.where(rng.random(2000) < 0.5, y, rng.integers(0, 8, 2000))
    pred[pred == 7] = 6  # a class never answered
    c = ood.confusion(y, pred)
    assert c.sum() == 2000 and c[3].sum() == (y == 3).sum()
    want = f1_score(y, pred, labels=range(8), average="macro", zero_division=0)
    assert np.isclose(ood.macro_f1(c), want)
    some = [0, 2, 5]
    on = np.isin(y, some)
    want = f1_score(y[on], pred[on], labels=some, average="macro", zero_division=0)
    assert np.isclose(ood.macro_f1(c, some), want)
    assert ood.class_f1(c)[7] == 0.0


def test_the_interval_resamples_songs_whole() -> None:
    rng = np.random.default_rng(1)
    song = np.repeat(np.arange(40), 50)
    y = rng.integers(0, 8, len(song))
    right = ood.song_interval(song, y, y, n=50)
    assert right == (1.0, 1.0)
    pred = np.where(rng.random(len(y)) < 0.6, y, (y + 1) % 8)
    low, high = ood.song_interval(song, y, pred, n=200)
    point = ood.macro_f1(ood.confusion(y, pred))
    assert low < point < high and high - low < 0.2
    # One song: every resampling is that song, so there is nothing to vary.
    one = ood.song_interval(np.zeros(100, int), y[:100], pred[:100], n=20)
    assert one[0] == one[1]


def test_the_oracle_priors_undo_a_prior_shift() -> None:
    rng = np.random.default_rng(2)
    target = np.array([0.5, 0.3, 0.1, 0.05, 0.02, 0.01, 0.01, 0.01])
    y = rng.choice(8, 20000, p=target)
    # Answers of a model that learnt under uniform priors: the right class 2x as likely.
    probs = np.ones((len(y), 8))
    probs[np.arange(len(y)), y] = 2.0
    probs[rng.random(len(y)) < 0.5] = rng.random((1, 8)) + 1  # half the windows: no idea
    probs /= probs.sum(axis=1, keepdims=True)
    source = np.full(8, 1 / 8)
    np.testing.assert_allclose(ood.reweighted(probs, source, source), probs)
    fixed = ood.reweighted(probs, target, source)
    np.testing.assert_allclose(fixed.sum(axis=1), 1.0)
    assert (fixed.argmax(1) == y).mean() > (probs.argmax(1) == y).mean() + 0.1


def test_parts_per_class_counts_each_song_and_part_once() -> None:
    song = np.array([0, 0, 0, 1, 1, 2])
    part = np.array([0, 0, 1, 0, 0, 3])
    y = np.array([2, 2, 2, 2, 2, 5])
    counts = ood.parts_per_class(song, part, y)
    assert counts[2] == 3 and counts[5] == 1 and sum(counts) == 4


def test_a_students_notes_are_read_in_its_own_contract(tmp_path: Path) -> None:
    """A contract-3 student says so, so the experiments read the store's contract-3 view (the
    controllers); a contract-1 student is refused."""
    from live.contracts import V2, V3
    from train import checkpoints
    from train.models import build_part_student, build_student

    for controls, want in [(False, V2), (True, V3)]:
        model = build_part_student("tiny", inputs=(0, 1, 2, 3, 4), state=8, controls=controls)
        torch.save(checkpoints.checkpoint(model, role="student"), tmp_path / "kdic.pt")
        assert ood.part_student(tmp_path / "kdic.pt").contract == want
    torch.save(checkpoints.checkpoint(build_student("tiny"), role="student"), tmp_path / "v1.pt")
    with pytest.raises(SystemExit, match="not a contract-2 or 3 student"):
        ood.part_student(tmp_path / "v1.pt")
