"""Issue 26's levers on the student's training: a wider encoder, students that read the
store's cells, the five-class score, and config fields that leave earlier runs' fingerprints
alone."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from live.inputs import VELOCITY
from live.testing.songs import write_song
from tests.train import experiments
from train.batches import NotesSource, SparseWindows
from train.config import (
    ConfigError,
    RunConfig,
    fingerprint,
    override,
    preset_config,
    to_json,
)
from train.data.notes import NotesStore, build_notes
from train.models import build_part_student, count_params, describe
from train.pipeline import new_student

REPO = Path(__file__).resolve().parents[2]


def test_a_scaled_encoder_is_wider_and_describes_itself() -> None:
    one = build_part_student("fast", inputs=(0, 1, 2, 3, 4), state=64, encoder="steps")
    two = build_part_student("fast", inputs=(0, 1, 2, 3, 4), state=64, encoder="steps", scale=2)
    assert two.window.kwargs["width"] == 2 * one.window.kwargs["width"]
    assert two.window.kwargs["channels"] == [2 * c for c in one.window.kwargs["channels"]]
    assert two.window.kwargs["hidden"] == 2 * one.window.kwargs["hidden"]
    assert count_params(two) > 2 * count_params(one)
    assert two(torch.zeros(2, 5, 128, 16)).shape == (2, 8)
    cnn = build_part_student("fast", encoder="cnn", scale=2)
    assert cnn.window.kwargs["channels"] == [32, 64, 64]
    # the default scale records no more than before the option existed (same fingerprint)
    assert "width" not in describe(one)["kwargs"] and "scale" not in describe(one)["kwargs"]


@pytest.mark.parametrize(("encoder", "name"), [("steps", "channels"), ("stream", "temporal")])
def test_a_deeper_encoder_stacks_convolutions_over_the_steps(encoder: str, name: str) -> None:
    one = build_part_student("fast", inputs=(0, 1, 2, 3, 4), encoder=encoder)
    three = build_part_student("fast", inputs=(0, 1, 2, 3, 4), encoder=encoder, depth=3)
    assert three.window.kwargs[name] == one.window.kwargs[name] * 3
    assert three(torch.zeros(2, 5, 128, 16)).shape == (2, 8)
    with pytest.raises(ValueError, match="has none"):
        build_part_student("fast", encoder="cnn", depth=2)
    with pytest.raises(ConfigError, match="model.depth"):
        RunConfig(model=replace(RunConfig().model, depth=2, encoder="cnn"))


def _without(plain: dict, names: tuple[str, ...]) -> dict:
    return {
        k: _without(v, names) if isinstance(v, dict) else v
        for k, v in plain.items()
        if k not in names
    }


def test_new_fields_at_their_default_leave_the_fingerprint_alone() -> None:
    cfg = RunConfig()
    new = tuple(
        f.name
        for group in (cfg.student, cfg.model, cfg.distill, cfg)
        for f in dataclasses.fields(group)
        if f.metadata.get("omit_default")
    )
    assert {"scale", "stats", "depth"} <= set(new)
    for part in (cfg.student, cfg.teacher, cfg.model, cfg.distill):
        assert fingerprint(part) == fingerprint(_without(to_json(part), new))
    assert fingerprint(cfg.model) != fingerprint(replace(cfg.model, stats=True))
    assert fingerprint(cfg.model) != fingerprint(replace(cfg.model, scale=2))
    assert fingerprint(cfg.model) != fingerprint(replace(cfg.model, depth=2))
    assert all(f.name in to_json(cfg.student) for f in dataclasses.fields(cfg.student))


def test_five_class_accuracy_chooses_among_dongs_classes_only() -> None:
    from live.taxonomy import CLASSES
    from train.evaluate import five_class_accuracy

    y = np.array([CLASSES.index(c) for c in ("Piano", "Bass", "Organ", "Brass")])
    probs = np.zeros((4, 8))
    probs[0, CLASSES.index("Organ")] = 0.9  # Organ is not among the five: Piano is next
    probs[0, CLASSES.index("Piano")] = 0.1
    probs[1, CLASSES.index("Guitar")] = 1.0  # wrong
    probs[3, CLASSES.index("Brass")] = 1.0
    out = five_class_accuracy(y, probs)
    assert out == {"accuracy": 2 / 3, "n": 3}  # the Organ window is not scored
    assert five_class_accuracy(y[2:3], probs[2:3]) == {"accuracy": None, "n": 0}


def _random_store_windows(n: int = 24, seed: int = 0) -> torch.Tensor:
    """Sparse contract-2 inputs like the store's: 0/1 channels, velocities 1-127."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 5, 128, 16, generator=g) < 0.03).float()
    x[:, VELOCITY] *= torch.randint(1, 128, (n, 128, 16), generator=g).float()
    return x


def _cells_of(x: torch.Tensor) -> SparseWindows:
    flat = x.reshape(len(x), -1)
    rows, cells = flat.nonzero(as_tuple=True)
    return SparseWindows(rows, cells, flat[rows, cells], len(x))


@pytest.mark.parametrize("inputs", [(0, 1, 2, 3, 4), (0, 2, 4), (0,)])
def test_a_student_reads_cells_as_it_reads_dense_inputs(inputs: tuple[int, ...]) -> None:
    x = _random_store_windows()
    cells = _cells_of(x)
    assert torch.equal(cells.dense(), x)
    for encoder in ("steps", "cnn", "stream"):
        model = build_part_student("fast", inputs=inputs, state=8, encoder=encoder).eval()
        with torch.no_grad():
            dense, sparse = model.embed(x), model.embed(cells)
        torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-5)
    # and the gradients agree: training on cells trains the same function
    model = build_part_student("fast", inputs=inputs, encoder="steps")
    grads = []
    for batch in (x, cells):
        model.zero_grad()
        torch.manual_seed(0)  # the same dropout
        model(batch).square().sum().backward()
        grads.append(model.window.features[1].weight.grad.clone())
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-5)


def _overlapping_windows(n: int = 12) -> torch.Tensor:
    """Windows that hop one bar through a part (each shares 8 steps with the next), a riff
    of 4 steps played again, silent steps."""
    bars = _random_store_windows(n + 1, seed=3)[..., :8]
    bars[1::3, ..., 4:] = bars[1::3, ..., :4]  # the riff again
    bars[2::3, ..., 6:] = 0  # rests
    return torch.cat([bars[:-1], bars[1:]], dim=3)


def test_distinct_steps_are_the_windows_steps_each_once() -> None:
    x = _overlapping_windows()
    steps, which = _cells_of(x).distinct_steps()
    columns = x.permute(0, 3, 1, 2).reshape(-1, 5, 128)
    assert torch.equal(steps[which, ..., 0], columns)  # every window's steps, exactly
    assert len(steps) == len(torch.unique(columns.reshape(len(columns), -1), dim=0))
    assert len(steps) < len(columns) / 2


def test_a_frozen_streaming_encoder_reads_each_distinct_step_once() -> None:
    """Scoring and the history phase read cells through the distinct steps; the answer is
    the whole window's, and training the history is unchanged."""
    x = _overlapping_windows()
    model = build_part_student("fast", state=8, encoder="stream")
    model.freeze_window()  # the history phase: the encoder's batch norm on running statistics
    calls = []
    model.window.step_features.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    dense, sparse = model.embed(x), model.embed(_cells_of(x))
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-5)
    distinct = len(_cells_of(x).distinct_steps()[0])
    assert calls[0] == len(x)  # whole windows, then the distinct steps, 16 to a row
    assert calls[1] == -(-distinct // 16) and distinct < len(x) * 16 / 2
    model = build_part_student("fast", encoder="stream").train()  # learning: whole windows
    model.window.step_features.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    calls.clear()
    model.embed(_cells_of(x))
    assert calls == [len(x)]


def test_the_notes_source_gives_the_store_inputs_as_cells(tmp_path: Path) -> None:
    from tests.train.test_notes import BAND

    write_song(tmp_path / "band.mid", BAND)
    build_notes([tmp_path / "band.mid"], tmp_path / "notes", workers=1)
    store = NotesStore(tmp_path / "notes")
    idx = np.arange(min(len(store), 40))[::-1].copy()
    x, y = NotesSource(store, cells=True)(idx)
    dense, y2 = NotesSource(store)(idx)
    assert torch.equal(x.dense(), dense) and torch.equal(y, y2)


#: The levers (``experiments/levers.py``) the shipped bundle was trained with, on contract 3.
SHIPPED_LEVERS = "budget+patient6+decay+floorkd+calibrated+stream+attend"


def test_the_shipped_preset_is_the_levers_recipe_the_bundle_came_from() -> None:
    levers = experiments.load("levers")
    settings = [s for v in SHIPPED_LEVERS.split("+") for s in levers.VARIANTS[v]]
    recipe = override(preset_config("fast"), [*settings, "model.contract=3"])
    assert preset_config("shipped") == recipe
    assert preset_config("shipped") != preset_config("fast")


def test_the_shipped_preset_builds_the_shipped_bundles_student() -> None:
    manifest = json.loads((REPO / "live/assets/bundle/kdlive-model.json").read_text())
    cfg = preset_config("shipped")
    assert describe(new_student(cfg)) == manifest["model"]["description"]
    assert to_json(cfg.distill) == manifest["model"]["distill"]
    assert cfg.model.preset == manifest["preset"]


def test_run_presets_are_not_architectures() -> None:
    with pytest.raises(ConfigError, match="unknown model preset 'shipped'"):
        override(preset_config("fast"), ["model.preset=shipped"])
