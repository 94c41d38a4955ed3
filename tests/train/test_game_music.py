"""experiments/game_music.py: the other set's windows are added whole, repeated to about the
share asked, and at least once."""

from __future__ import annotations

import numpy as np

from tests.train.experiments import load

game_music = load("game_music")


def test_the_game_set_makes_the_share_asked_of_the_rows() -> None:
    x, y = np.zeros((9000, 3), np.float32), np.zeros(9000, np.int64)
    gx = np.arange(3000, dtype=np.float32).reshape(1000, 3)
    gy = np.arange(1000) % 8
    mx, my = game_music.mixed(x, y, gx, gy, 0.5)
    assert len(my) == 18000 and (mx[:9000] == 0).all()
    np.testing.assert_array_equal(mx[9000:10000], gx)  # whole, in order, then again
    np.testing.assert_array_equal(my[9000:], np.tile(gy, 9))
    mx, my = game_music.mixed(x, y, gx, gy, 0.01)  # less than one copy: still every window once
    assert len(my) == 10000
    np.testing.assert_array_equal(mx[9000:], gx)
