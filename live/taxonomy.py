"""The 8 instrument classes of the task, in contract order, and how labels map onto them.

General MIDI program families (0-based programs):

====== ======= ===================================================
class  program  notes
====== ======= ===================================================
Piano   0-7
Organ   16-23   includes accordion and harmonica, as GM does
Guitar  24-31
Bass    32-39
Strings 40-54   strings, ensembles, choir (55, orchestra hit, is out)
Brass   56-63
Reed    64-71
Pipe    72-79
====== ======= ===================================================

Drums (channel 10, ``is_drum``) and every other program are not in the task: they map to None.
"""

from __future__ import annotations

CLASSES: tuple[str, ...] = ("Piano", "Organ", "Guitar", "Bass", "Strings", "Brass", "Reed", "Pipe")
N_CLASSES = len(CLASSES)

_PROGRAM_RANGES: tuple[tuple[int, int, str], ...] = (
    (0, 7, "Piano"),
    (16, 23, "Organ"),
    (24, 31, "Guitar"),
    (32, 39, "Bass"),
    (40, 54, "Strings"),
    (56, 63, "Brass"),
    (64, 71, "Reed"),
    (72, 79, "Pipe"),
)

_PROGRAM_TO_CLASS: dict[int, str] = {
    program: name for lo, hi, name in _PROGRAM_RANGES for program in range(lo, hi + 1)
}

#: Slakh2100 ``inst_class`` values that are in the task. Slakh splits GM's strings family in two.
_SLAKH_TO_CLASS: dict[str, str] = {name: name for name in CLASSES} | {
    "Strings (continued)": "Strings"
}

#: Slakh's own ``inst_class`` name for each GM program we keep (used when we write Slakh layout).
SLAKH_CLASS_OF_PROGRAM: dict[int, str] = {
    program: ("Strings (continued)" if 48 <= program <= 55 else name)
    for program, name in _PROGRAM_TO_CLASS.items()
}


def class_of_program(program: int, *, is_drum: bool = False) -> str | None:
    """Class name of a General MIDI program (0-127), or None when it is not in the task."""
    if is_drum:
        return None
    if not 0 <= program <= 127:
        raise ValueError(f"MIDI program must be 0-127, got {program}")
    return _PROGRAM_TO_CLASS.get(program)


def class_of_slakh(inst_class: str, *, is_drum: bool = False) -> str | None:
    """Class name for a Slakh2100 ``inst_class`` (``"Strings (continued)"`` -> ``"Strings"``)."""
    if is_drum:
        return None
    return _SLAKH_TO_CLASS.get(inst_class)


def class_index(name: str) -> int:
    """Position of a class name in contract order (the model's output index)."""
    try:
        return CLASSES.index(name)
    except ValueError:
        raise ValueError(f"unknown class {name!r}; the classes are {', '.join(CLASSES)}") from None
