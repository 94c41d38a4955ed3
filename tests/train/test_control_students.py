"""Contract-3 students (``model.contract=3``, :class:`train.students.ControlStudents`): the
settings that take them, the store's view they learn from (the part's controllers in the drums
plane's rows 0-7), and the floor they are measured against, which stays contract 2's."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from live.contracts import V2, V3
from live.testing.songs import Track, melody, write_song
from train import floor
from train.batches import SparseWindows
from train.config import ModelConfig, RunConfig, override, preset_config
from train.data.collection import split_of
from train.data.notes import NotesStore, build_notes
from train.errors import ConfigError
from train.models import PartStudent, describe
from train.pipeline import new_student
from train.students import (
    STUDENTS,
    ControlStudents,
    Data,
    NotesStudents,
    own_features,
    spread,
    students_for,
)


def controlled_song(path: Path, seed: int) -> Path:
    """Eight bars: a piano on the sustain pedal, a guitar that bends and swells, a bass that
    moves no controller, and drums with a hit on key 5 (a controller row in contract 3)."""
    rng = np.random.default_rng(seed)
    pedal = [(float(b), 64, 127 * int(rng.integers(0, 2))) for b in range(0, 32, 2)]
    bends = [(b + 0.5, int(rng.integers(-8192, 8192))) for b in range(0, 32, 3)]
    swells = [(b + 0.25, 11, int(rng.integers(40, 128))) for b in range(0, 32, 4)]
    tracks = [
        Track("Piano", 0, 0, melody(8, low=60, seed=seed), controls=pedal),
        Track("Guitar", 25, 1, melody(8, low=52, step=0.5, seed=seed + 1), swells, bends),
        Track("Bass", 33, 2, melody(8, low=33, step=2.0, seed=seed + 2)),
        Track("Kit", 0, 9, [(5 if i % 3 == 0 else 36, i, 0.1, 100) for i in range(32)]),
    ]
    return write_song(path, tracks, bpm=100 + 5 * (seed % 7))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder whose notes store has songs in every split (two in train)."""
    out = tmp_path_factory.mktemp("control_students")
    found, files, seed = {"train": 0, "validation": 0, "test": 0}, [], 0
    while found["train"] < 2 or min(found.values()) < 1:
        path = controlled_song(out / "midi" / f"song{seed:03d}.mid", seed * 10)
        split = split_of(hashlib.sha1(path.read_bytes()).hexdigest())
        if found[split] >= 2:
            path.unlink()
        else:
            found[split] += 1
            files.append(path)
        seed += 1
    build_notes(files, out / "notes", workers=1)
    return out


def run_config(data_dir: Path, contract: int) -> RunConfig:
    cfg = preset_config("tiny")
    return replace(
        cfg,
        data=replace(cfg.data, out=data_dir),
        model=replace(cfg.model, contract=contract),
        device="cpu",
    )


def no_audio() -> Data:
    """The audio store's part of the run's data: what these tests never read."""
    return Data(store=None, rolls=None, summary={}, fingerprint="")  # type: ignore[arg-type]


def test_contract_3_is_a_setting_wherever_contract_2_is() -> None:
    cfg = override(
        preset_config("tiny"),
        [
            "model.contract=3",
            "model.stats=true",
            "model.attend=true",
            "student.calibrate=true",
            "distill.teacher=floor",
        ],
    )
    assert cfg.model.contract == 3 and cfg.model.stats and cfg.model.attend
    assert preset_config("fast").model.contract == 2  # the default stays contract 2
    with pytest.raises(ConfigError, match="contract 1"):
        override(preset_config("paper"), ["model.contract=3"])  # Table 1's students
    with pytest.raises(ConfigError, match="model.contract=2 or 3"):
        ModelConfig(contract=1, attend=True)
    with pytest.raises(ConfigError, match="model.contract=2 or 3"):
        override(preset_config("paper"), ["student.calibrate=true"])
    with pytest.raises(ConfigError, match="contract is one of 1, 2, 3"):
        ModelConfig(contract=4)
    assert STUDENTS[3] is students_for(3) is ControlStudents
    assert (ControlStudents.contract, ControlStudents.needs_notes) == (V3, True)


def test_a_contract_3_student_reads_contract_3_and_describes_itself_so() -> None:
    """``controls`` is in the recipe of a contract-3 student only: a contract-2 one is
    described (and fingerprinted) as before."""
    three = new_student(override(preset_config("tiny"), ["model.contract=3"]))
    two = new_student(preset_config("tiny"))
    assert isinstance(three, PartStudent) and three.contract == V3 and two.contract == V2
    assert describe(three)["kwargs"]["controls"] is True
    assert "controls" not in describe(two)["kwargs"]
    assert describe(three)["kwargs"] | {"controls": False} != describe(two)["kwargs"]


def test_contract_3_students_learn_from_the_controllers_against_contract_2s_floor(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The windows, scoring, calibration and test inputs of contract-3 students are the
    store's contract-3 view; the floor's statistics are contract 2's, what a contract-2 run's
    floor reads (the fit itself stands in: its answers are the statistics it is asked about,
    so equal answers are equal statistics)."""

    def answers(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, *, seed: int) -> np.ndarray:
        return x_test.copy()

    monkeypatch.setattr(floor, "fit_answers", answers)
    three = ControlStudents(no_audio(), run_config(data_dir, 3))
    two = NotesStudents(no_audio(), run_config(data_dir, 2))
    v3 = NotesStore(data_dir / "notes", contract=V3)
    v2 = NotesStore(data_dir / "notes")
    idx = np.arange(len(v3))
    assert three.notes.contract == V3 and three.floor_notes.contract == V2
    x, y = three.windows.source(idx)
    assert isinstance(x, SparseWindows)
    assert torch.equal(x.dense(), torch.from_numpy(v3.inputs(idx)).float())
    assert torch.equal(y, torch.from_numpy(v3.labels))
    assert not np.array_equal(v3.inputs(idx), v2.inputs(idx))  # the controllers are there
    for name in ("train", "validation", "test"):
        np.testing.assert_array_equal(three.windows.split[name], two.windows.split[name])
    test = three.windows.split["test"]
    floors = three.floor(test, seed=0), two.floor(test, seed=0)
    assert floors[0].keys() == floors[1].keys() == {"window", "running"}
    for key in floors[0]:
        np.testing.assert_array_equal(floors[0][key], floors[1][key])
    taught = three.floor_targets(seed=0), two.floor_targets(seed=0)
    for a, b in zip(*taught, strict=True):
        np.testing.assert_array_equal(a, b)
    # ... and contract 3's statistics would not be: the controllers move the drums' rows.
    assert not np.array_equal(own_features(v3, test), own_features(v2, test))
    want = v3.inputs(spread(v3.split("test"), 8)).astype(np.float32)
    got = ControlStudents.test_inputs(data_dir, 8)
    assert got is not None and np.array_equal(got, want)
    model = ControlStudents.new_model(run_config(data_dir, 3).model)
    device = torch.device("cpu")
    metrics = three.evaluate(model, test, device)
    assert metrics["n"] == len(test) and "running" in metrics
    record = three.calibrate(model, device)
    assert set(record) == {"window", "running"}
