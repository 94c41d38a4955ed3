"""Each channel's running answer (live.parts): when it accumulates and when it starts afresh."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from live.contracts import V1, V2
from live.parts import RESET_BARS, PartTracker


@dataclass
class W:
    channel: int
    bar: int
    inputs: np.ndarray = field(default_factory=lambda: np.zeros((5, 128, 16), np.uint8))


class MeanModel:
    """No state: window answers that spell the window's bar."""

    contract, state_size, input_shape, history_share = V1, 0, (1, 128, 16), 1.0

    def __init__(self) -> None:
        self.next: list[np.ndarray] = []

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.stack(self.next[: len(x)])


class CountingStateModel:
    """A state that counts the windows it has heard: step adds 1."""

    contract, state_size, input_shape, history_share = V2, 3, (5, 128, 16), 1.0

    def predict(self, x: np.ndarray) -> np.ndarray:
        raise AssertionError("a model with a state is stepped")

    def step(self, x: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert x.shape[1:] == (5, 128, 16)
        probs = np.full((len(x), 8), 1 / 8, np.float32)
        return probs, probs, h + 1


def onehot(k: int) -> np.ndarray:
    p = np.zeros(8, np.float32)
    p[k] = 1
    return p


def test_without_a_state_the_running_answer_is_the_mean_since_the_part_came() -> None:
    model = MeanModel()
    tracker = PartTracker(model)
    means = []
    for bar, k in enumerate([0, 0, 3, 3]):
        model.next = [onehot(k)]
        answers = tracker.compute([W(1, bar)], epoch=0)
        tracker.commit(answers)
        means.append(answers.part[0])
    assert means[-1] == pytest.approx([0.5, 0, 0, 0.5, 0, 0, 0, 0])
    assert means[1] == pytest.approx(onehot(0))


class MixedModel:
    """A state that counts; the history always answers Piano, each window what ``next`` says;
    the running answer a quarter the history's."""

    contract, state_size, input_shape, history_share = V2, 2, (5, 128, 16), 0.25

    def __init__(self) -> None:
        self.next = onehot(0)

    def step(self, x: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.stack([self.next] * len(x)), np.stack([onehot(0)] * len(x)), h + 1


def test_a_history_share_mixes_the_history_with_the_mean_of_the_window_answers() -> None:
    model = MixedModel()
    tracker = PartTracker(model)

    def hear(bar: int, k: int, epoch: int = 0) -> np.ndarray:
        model.next = onehot(k)
        answers = tracker.compute([W(1, bar)], epoch=epoch)
        tracker.commit(answers)
        return answers.part[0]

    assert hear(0, 3) == pytest.approx(0.25 * onehot(0) + 0.75 * onehot(3))
    assert hear(1, 5) == pytest.approx(0.25 * onehot(0) + 0.375 * (onehot(3) + onehot(5)))
    assert tracker.state[1, :2].tolist() == [2, 2]  # the model's own state goes on beside
    assert hear(2 + RESET_BARS, 6) == pytest.approx(0.25 * onehot(0) + 0.75 * onehot(6))
    assert tracker.state[1, :2].tolist() == [1, 1]  # after a long silence: both afresh
    assert hear(3 + RESET_BARS, 6, epoch=1) == pytest.approx(0.25 * onehot(0) + 0.75 * onehot(6))


def test_computing_ahead_keeps_nothing_until_commit() -> None:
    model = MeanModel()
    tracker = PartTracker(model)
    model.next = [onehot(2)]
    tracker.commit(tracker.compute([W(1, 0)], epoch=0))
    model.next = [onehot(5)]
    tracker.compute([W(1, 1)], epoch=0)  # computed ahead, then the window changed
    model.next = [onehot(2)]
    answers = tracker.compute([W(1, 1)], epoch=0)
    assert answers.part[0] == pytest.approx(onehot(2))


def test_a_state_carries_and_starts_afresh_on_a_jump_or_a_long_silence() -> None:
    tracker = PartTracker(CountingStateModel())

    def hear(channel: int, bar: int, epoch: int = 0) -> float:
        answers = tracker.compute([W(channel, bar)], epoch=epoch)
        tracker.commit(answers)
        return float(answers.state[0, 0])

    assert [hear(1, b) for b in range(3)] == [1, 2, 3]
    assert hear(2, 2) == 1  # channels are apart
    assert hear(1, 2 + RESET_BARS) == 4  # silent RESET_BARS - 1 bars: still the same part
    assert hear(1, 3 + 2 * RESET_BARS) == 1  # silent longer: afresh
    assert hear(1, 4 + 2 * RESET_BARS, epoch=1) == 1  # Start, Stop, Song Position Pointer
    assert hear(1, 5 + 2 * RESET_BARS, epoch=1) == 2


def test_bar_lines_that_close_together_are_answered_in_turn() -> None:
    """Time jumping past two bar lines (a file's last event, a gap in the clock) closes 2 x 16
    windows at once: each part's second window carries the state of its first, exactly as
    when the bar lines come one by one, and every window is answered."""
    together, apart = PartTracker(CountingStateModel()), PartTracker(CountingStateModel())
    first = [W(ch, 4) for ch in range(1, 17)]
    second = [W(ch, 5) for ch in range(1, 17)]
    answers = together.compute(first + second, epoch=0)
    together.commit(answers)
    one = apart.compute(first, epoch=0)
    apart.commit(one)
    two = apart.compute(second, epoch=0)
    apart.commit(two)
    assert answers.state[:, 0].tolist() == [1.0] * 16 + [2.0] * 16
    assert np.array_equal(answers.state, np.concatenate([one.state, two.state]))
    assert np.array_equal(together.state, apart.state)
    assert np.array_equal(together.last_bar, apart.last_bar)
    assert float(together.compute([W(3, 6)], epoch=0).state[0, 0]) == 3.0


def test_answers_computed_for_several_bar_lines_keep_nothing_until_commit() -> None:
    tracker = PartTracker(CountingStateModel())
    tracker.compute([W(1, 0), W(1, 1), W(1, 2)], epoch=0)
    assert float(tracker.compute([W(1, 0)], epoch=0).state[0, 0]) == 1.0


class BatchModel:
    """Answers that depend on the whole batch (as a student whose channels attend to each
    other): every row gets the batch's size, in its first class; the state counts."""

    contract, input_shape = V2, (5, 128, 16)

    def __init__(self, state_size: int, history_share: float = 1.0) -> None:
        self.state_size, self.history_share = state_size, history_share

    def _probs(self, x: np.ndarray) -> np.ndarray:
        probs = np.zeros((len(x), 8), np.float32)
        probs[:, 0] = len(x)
        return probs

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._probs(x)

    def step(self, x: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._probs(x), self._probs(x), h + 1


@pytest.mark.parametrize(("state_size", "share"), [(0, 1.0), (3, 1.0), (3, 0.25)])
def test_the_drums_are_answered_apart_so_the_others_answers_stay_the_same(
    state_size: int, share: float
) -> None:
    pitched = [W(c, 0) for c in (1, 2, 5)]
    alone = PartTracker(BatchModel(state_size, share)).compute(pitched, epoch=0)
    answers = PartTracker(BatchModel(state_size, share)).compute([*pitched, W(10, 0)], epoch=0)
    assert answers.window[:3, 0].tolist() == alone.window[:, 0].tolist() == [3, 3, 3]
    assert answers.window[3, 0] == 1  # the drums in a call of their own
    np.testing.assert_array_equal(answers.part[:3], alone.part)
    np.testing.assert_array_equal(answers.state[:3], alone.state)
    drums_only = PartTracker(BatchModel(state_size)).compute([W(10, 0)], epoch=0)
    assert drums_only.window[0, 0] == 1
