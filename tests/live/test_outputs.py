"""The CC and OSC messages of a batch of windows (:mod:`live.outputs`), without a daemon."""

from __future__ import annotations

import numpy as np
import pytest

from live.errors import SettingError
from live.outputs import Encoder, OutputMap
from live.taxonomy import CLASSES

WINDOW = np.array(
    [[0.1, 0.0, 0.6, 0.1, 0.1, 0.0, 0.1, 0.0], [0.0, 0.05, 0.0, 0.9, 0.0, 0.0, 0.05, 0.0]],
    np.float32,
)
PART = np.array(
    [[0.5, 0.0, 0.4, 0.1, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]],
    np.float32,
)


def test_every_windows_class_goes_first_then_parts_likeness_and_probabilities() -> None:
    encoder = Encoder(OutputMap(), CLASSES)
    ccs = encoder.cc([3, 16], WINDOW, PART, [None, ("Bass", 0.9)])
    assert ccs[:5] == [[0xB2, 28, 2], [0xBF, 28, 3], [0xB2, 30, 0], [0xBF, 30, 3], [0xBF, 29, 114]]
    assert ccs[5:13] == [[0xB2, 20 + i, int(round(p * 127))] for i, p in enumerate(WINDOW[0])]
    assert ccs[13:] == [[0xBF, 20 + i, int(round(p * 127))] for i, p in enumerate(WINDOW[1])]
    assert all(isinstance(b, int) for m in ccs for b in m)  # plain ints: any MIDI API takes them


def test_custom_cc_numbers_move_every_message() -> None:
    ccs = Encoder(OutputMap(cc_base=70, cc_class=80, cc_part=81), CLASSES).cc(
        [1], WINDOW[:1], PART[:1], [None]
    )
    assert [m[1] for m in ccs] == [80, 81, *range(70, 78)]


def test_osc_is_one_group_per_window_with_likeness_only_where_declared() -> None:
    groups = Encoder(OutputMap(), CLASSES).osc([3, 16], WINDOW, PART, [None, ("Bass", 0.9)])
    assert [[address for address, _ in g] for g in groups] == [
        ["/kdlive/3/probs", "/kdlive/3/class", "/kdlive/3/part"],
        ["/kdlive/16/probs", "/kdlive/16/class", "/kdlive/16/part", "/kdlive/16/likeness"],
    ]
    probs, (name, conf), part, likeness = (args for _, args in groups[1])
    assert probs == pytest.approx(list(WINDOW[1])) and part == pytest.approx(list(PART[1]))
    assert (name, conf) == ("Bass", pytest.approx(0.9)) and likeness == ["Bass", 0.9]
    assert all(type(x) is float for x in probs)  # python-osc encodes float, not numpy


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({"cc_base": 121}, "cc_base 121: CC numbers are 0-127 (it and the 7 after it)"),
        ({"cc_part": 128}, "cc_part 128: CC numbers are 0-127"),
        ({"cc_class": 23}, "cc_class 23 collides with the probability CCs 20-27"),
        ({"cc_class": 40, "cc_part": 40}, "cc_class and cc_part are both 40: pick two CCs"),
        ({"cc_likeness": 28}, "cc_class and cc_likeness are both 28: pick two CCs"),
    ],
)
def test_a_bad_map_names_its_fields(outputs: dict, message: str) -> None:
    """The error names the fields; a command line renames them to its flags (``named``)."""
    with pytest.raises(SettingError) as info:
        OutputMap(**outputs)
    assert str(info.value) == message
    flags = {
        f: "--" + f.replace("_", "-") for f in ("cc_base", "cc_class", "cc_part", "cc_likeness")
    }
    assert info.value.named(flags) == message.replace("cc_", "--cc-")
