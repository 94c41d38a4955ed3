"""Instrument classes: GM programs and Slakh ``inst_class`` names -> the 8 task classes."""

from __future__ import annotations

import pytest

from live.taxonomy import (
    CLASSES,
    N_CLASSES,
    SLAKH_CLASS_OF_PROGRAM,
    class_index,
    class_of_program,
    class_of_slakh,
)

EXPECTED_CLASSES = ("Piano", "Organ", "Guitar", "Bass", "Strings", "Brass", "Reed", "Pipe")


def expected_class(program: int) -> str | None:
    """Independent table from the design doc (0-based GM programs, inclusive ranges)."""
    if 0 <= program <= 7:
        return "Piano"
    if 16 <= program <= 23:
        return "Organ"
    if 24 <= program <= 31:
        return "Guitar"
    if 32 <= program <= 39:
        return "Bass"
    if 40 <= program <= 54:
        return "Strings"
    if 56 <= program <= 63:
        return "Brass"
    if 64 <= program <= 71:
        return "Reed"
    if 72 <= program <= 79:
        return "Pipe"
    return None


def test_classes_are_in_contract_order():
    assert CLASSES == EXPECTED_CLASSES
    assert N_CLASSES == 8


@pytest.mark.parametrize("program", range(128))
def test_every_program_maps_per_gm_family_table(program):
    assert class_of_program(program) == expected_class(program)


def test_program_table_spot_checks():
    # A few well-known GM programs (0-based), in case the range table above had a typo too.
    assert class_of_program(0) == "Piano"  # Acoustic Grand Piano
    assert class_of_program(8) is None  # Celesta: chromatic percussion
    assert class_of_program(15) is None  # Dulcimer
    assert class_of_program(21) == "Organ"  # Accordion
    assert class_of_program(22) == "Organ"  # Harmonica
    assert class_of_program(33) == "Bass"  # Electric Bass (finger)
    assert class_of_program(48) == "Strings"  # String Ensemble 1
    assert class_of_program(52) == "Strings"  # Choir Aahs
    assert class_of_program(55) is None  # Orchestra Hit
    assert class_of_program(56) == "Brass"  # Trumpet
    assert class_of_program(65) == "Reed"  # Alto Sax
    assert class_of_program(73) == "Pipe"  # Flute
    assert class_of_program(80) is None  # Lead 1 (square)
    assert class_of_program(127) is None  # Gunshot


def test_class_sizes():
    counts = {name: 0 for name in CLASSES}
    for program in range(128):
        name = class_of_program(program)
        if name is not None:
            counts[name] += 1
    assert counts == {
        "Piano": 8,
        "Organ": 8,
        "Guitar": 8,
        "Bass": 8,
        "Strings": 15,
        "Brass": 8,
        "Reed": 8,
        "Pipe": 8,
    }


@pytest.mark.parametrize("program", [0, 24, 33, 48, 73, 127])
def test_drums_map_to_none_whatever_the_program(program):
    assert class_of_program(program, is_drum=True) is None


@pytest.mark.parametrize("program", [-1, 128, 255, -128])
def test_out_of_range_program_raises_value_error(program):
    with pytest.raises(ValueError, match="0-127"):
        class_of_program(program)


@pytest.mark.parametrize(
    ("inst_class", "expected"),
    [
        ("Piano", "Piano"),
        ("Organ", "Organ"),
        ("Guitar", "Guitar"),
        ("Bass", "Bass"),
        ("Strings", "Strings"),
        ("Strings (continued)", "Strings"),
        ("Brass", "Brass"),
        ("Reed", "Reed"),
        ("Pipe", "Pipe"),
        ("Drums", None),
        ("Sound Effects", None),
        ("Chromatic Percussion", None),
        ("Synth Lead", None),
        ("Synth Pad", None),
        ("Ethnic", None),
        ("Percussive", None),
        ("", None),
        ("piano", None),  # names are exact
    ],
)
def test_slakh_inst_class(inst_class, expected):
    assert class_of_slakh(inst_class) == expected


@pytest.mark.parametrize("inst_class", ["Piano", "Strings (continued)", "Bass"])
def test_slakh_drum_flag_wins(inst_class):
    assert class_of_slakh(inst_class, is_drum=True) is None


def test_slakh_class_of_program_round_trips_through_class_of_slakh():
    assert set(SLAKH_CLASS_OF_PROGRAM) == {p for p in range(128) if expected_class(p)}
    for program, slakh_name in SLAKH_CLASS_OF_PROGRAM.items():
        assert class_of_slakh(slakh_name) == expected_class(program)
    assert SLAKH_CLASS_OF_PROGRAM[48] == "Strings (continued)"
    assert SLAKH_CLASS_OF_PROGRAM[40] == "Strings"


@pytest.mark.parametrize("index", range(8))
def test_class_index_is_position_in_contract_order(index):
    assert class_index(EXPECTED_CLASSES[index]) == index


@pytest.mark.parametrize("name", ["Drums", "piano", "Strings (continued)", ""])
def test_class_index_of_unknown_name_raises_with_class_list(name):
    with pytest.raises(ValueError, match="Piano, Organ, Guitar"):
        class_index(name)
