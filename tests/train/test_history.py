"""Training's history of a part follows the rule ``live.parts`` follows."""

from __future__ import annotations

from live.parts import RESET_BARS
from train.history import RESET_BARS as TRAINING


def test_the_reset_rule_is_the_one_training_uses() -> None:
    assert RESET_BARS == TRAINING
