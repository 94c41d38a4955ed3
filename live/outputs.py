"""What the daemon sends for the windows that close together: MIDI CC and OSC messages.

For each window, on the window's own channel: CC ``cc_class`` = the index of the window's most
likely class, CC ``cc_part`` = the running answer's, CC ``cc_likeness`` = the window's
probability of the declared class (0-127; only for a channel that declares one), and CC
``cc_base + i`` = the window's probability of class i (0-127). The class CCs of every window
go first, then the part CCs, the likeness CCs and the probabilities: at small JACK periods a
buffer holds about 28 events, and the class is what most mappings use.

OSC, per window: ``/kdlive/<channel>/probs`` (8 floats, contract order),
``/kdlive/<channel>/class`` (name, confidence), ``/kdlive/<channel>/part`` (the running
answer's 8 floats) and, for a declaring channel, ``/kdlive/<channel>/likeness`` (class name,
probability).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from live.errors import SettingError

#: A window's declared class and its probability, or None (the channel declares nothing).
Likeness = tuple[str, float] | None
#: An OSC message: address and arguments.
OscMessage = tuple[str, Any]


@dataclass(frozen=True)
class OutputMap:
    """The CC numbers the answers go out on (see the module docstring)."""

    cc_base: int = 20
    cc_class: int = 28
    cc_part: int = 30
    cc_likeness: int = 29

    def __post_init__(self) -> None:
        for f in fields(self):
            cc = getattr(self, f.name)
            top = cc + 7 if f.name == "cc_base" else cc
            if not 0 <= cc <= top <= 127:
                reach = " (it and the 7 after it)" if f.name == "cc_base" else ""
                raise SettingError(f"{{{f.name}}} {cc}: CC numbers are 0-127{reach}", f.name)
        single = {"cc_class": self.cc_class, "cc_part": self.cc_part}
        single["cc_likeness"] = self.cc_likeness
        for name, cc in single.items():
            if self.cc_base <= cc <= self.cc_base + 7:
                raise SettingError(
                    f"{{{name}}} {cc} collides with the probability CCs "
                    f"{self.cc_base}-{self.cc_base + 7}",
                    name,
                )
        for (a, x), (b, y) in itertools.combinations(single.items(), 2):
            if x == y:
                raise SettingError(f"{{{a}}} and {{{b}}} are both {x}: pick two CCs", a, b)


class Encoder:
    """The CC and OSC messages for the windows that close together (one batch).

    Each method takes the batch's ``channels`` (1-16, one per window), ``window`` and ``part``
    (``[B, 8]`` probabilities: each window's own answer and its channel's running answer) and
    ``likeness`` (one :data:`Likeness` per window).
    """

    def __init__(self, outputs: OutputMap, classes: Sequence[str]) -> None:
        self.map, self.classes = outputs, list(classes)

    def cc(
        self,
        channels: Sequence[int],
        window: npt.NDArray[np.float32],
        part: npt.NDArray[np.float32],
        likeness: Sequence[Likeness],
    ) -> list[list[int]]:
        """The batch's CC messages (3 bytes each), in sending order."""
        m = self.map
        status = [0xB0 | (c - 1) for c in channels]
        out = [
            [st, m.cc_class, k]
            for st, k in zip(status, window.argmax(axis=1).tolist(), strict=True)
        ]
        out += [
            [st, m.cc_part, k] for st, k in zip(status, part.argmax(axis=1).tolist(), strict=True)
        ]
        out += [
            [st, m.cc_likeness, int(round(like[1] * 127))]
            for st, like in zip(status, likeness, strict=True)
            if like is not None
        ]
        values = np.rint(window * 127).astype(np.int64).tolist()
        for st, vals in zip(status, values, strict=True):
            out += [[st, m.cc_base + i, v] for i, v in enumerate(vals)]
        return out

    def osc(
        self,
        channels: Sequence[int],
        window: npt.NDArray[np.float32],
        part: npt.NDArray[np.float32],
        likeness: Sequence[Likeness],
    ) -> list[list[OscMessage]]:
        """The batch's OSC messages, one list per window (sent together: a failed send skips
        the rest of its window)."""
        out = []
        for c, p, q, like in zip(channels, window, part, likeness, strict=True):
            k = int(p.argmax())
            msgs: list[OscMessage] = [
                (f"/kdlive/{c}/probs", [float(x) for x in p]),
                (f"/kdlive/{c}/class", [self.classes[k], float(p[k])]),
                (f"/kdlive/{c}/part", [float(x) for x in q]),
            ]
            if like is not None:
                msgs.append((f"/kdlive/{c}/likeness", list(like)))
            out.append(msgs)
        return out
