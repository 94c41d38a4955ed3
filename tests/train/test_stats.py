"""The floor's hand statistics in torch (train.stats) against train.floor's numpy, and the
student that reads them beside its embedding (PartStudent(stats=True), model.stats)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from live.controls import N_ROWS
from live.inputs import DRUMS, Sources, window_inputs
from train.config import ModelConfig, override, preset_config
from train.errors import ConfigError
from train.floor import FEATURE_NAMES, input_features
from train.models import PartStudent, build_part_student, describe, model_from_description
from train.pipeline import new_student
from train.stats import StatsInput, WindowStats

STEP = 120  # ticks per eighth-note step
#: Statistics per valid step: over all 16 steps in the graph, which a 3/4 window has 12 of.
PER_STEP = {
    "onsets_per_step",
    "density",
    "cells_per_step",
    "onset_step_share",
    "ensemble_density",
    "ensemble_cells_per_step",
    "drum_onsets_per_step",
}


def song_sources(rng: np.random.Generator) -> Sources:
    """A random song's notes around one window of 16 steps: 2-4 pitched parts (sustained
    notes, chords, repeated notes; some double part 0 one or two octaves away) and maybe a
    drum kit; notes start before the window too, so some are carried in."""
    n_parts = int(rng.integers(2, 5))
    notes: list[tuple[np.ndarray, ...]] = []  # per source: pitches, starts, ends, velocities
    for part in range(n_parts + 1):
        n = int(rng.integers(0, 30))
        pitch = int(rng.integers(24, 100)) + rng.integers(-7, 8, n)
        start = rng.integers(-4, 16, n) * STEP + rng.integers(0, STEP, n) * (rng.random() < 0.3)
        end = start + rng.choice([0, 1, 2, 4, 8, 16], n) * STEP + rng.integers(0, 40, n)
        velocity = np.full(n, 90) if rng.random() < 0.3 else rng.integers(1, 128, n)
        if part and rng.random() < 0.5:  # doubles part 0 an octave or two away
            first = notes[0]
            shift = int(rng.choice([-24, -12, 12, 24]))
            pitch = np.concatenate([first[0] + shift, pitch])
            start, end = np.concatenate([first[1], start]), np.concatenate([first[2], end])
            velocity = np.concatenate([first[3], velocity])
        notes.append((np.clip(pitch, 0, 127), start, end, velocity))
    drum = np.zeros(n_parts + 1, bool)
    drum[-1] = rng.random() < 0.7
    source = np.concatenate([np.full(len(p[0]), k) for k, p in enumerate(notes)])
    pitches, starts, ends, velocities = (
        np.concatenate([p[k] for p in notes]).astype(np.int64) for k in range(4)
    )
    return Sources(source.astype(np.int64), pitches, starts, ends, velocities, drum)


def windows(n_songs: int, *, seed: int, steps: int = 16) -> np.ndarray:
    """Every part's contract-2 input of one window of ``steps`` steps, of ``n_songs`` random
    songs (as :func:`live.inputs.window_inputs` makes them for training and live)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_songs):
        inputs, valid = window_inputs(song_sources(rng), 0, steps * STEP, STEP)
        assert valid == steps
        out.append(inputs)
    return np.concatenate(out)


def torch_stats(x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return WindowStats()(torch.from_numpy(x.astype(np.float32))).numpy()


def assert_features_close(got: np.ndarray, want: np.ndarray) -> None:
    """Column by column, within float32 rounding; the message names the statistic."""
    assert got.shape == want.shape == (len(want), len(FEATURE_NAMES))
    for k, name in enumerate(FEATURE_NAMES):
        np.testing.assert_allclose(got[:, k], want[:, k], rtol=1e-5, atol=1e-4, err_msg=name)


def test_windows_of_4_4_give_the_floors_statistics() -> None:
    x = windows(150, seed=0)
    assert len(x) > 300 and x[:, 0].any(axis=(1, 2)).mean() > 0.8  # mostly parts that play
    want = input_features(x, np.full(len(x), 16))
    for k in ("octave_share", "carried_in", "restruck_share", "velocity_std", "drums_present"):
        assert (want[:, FEATURE_NAMES.index(k)] > 0).any(), f"no window exercises {k}"
    assert_features_close(torch_stats(x), want)


def test_an_empty_window_is_zeros_and_a_lone_note_is_exact() -> None:
    x = np.zeros((2, 5, 128, 16), np.uint8)
    x[1, 0, 60, 3:7] = 1  # C4 held 4 steps from step 3, velocity 77; nothing else sounds
    x[1, 1, 60, 3], x[1, 2, 60, 3] = 1, 77
    got = torch_stats(x)
    assert (got[0] == 0).all()
    assert_features_close(got, input_features(x, np.array([16, 16])))
    named = dict(zip(FEATURE_NAMES, got[1].tolist(), strict=True))
    assert named["velocity_std"] == 0.0 and named["velocity_min"] == named["velocity_max"] == 77
    assert named["run_length_max"] == 4 and named["pitch_std"] == 0.0


def test_a_3_4_window_differs_only_in_its_per_step_statistics() -> None:
    """The graph knows no valid_steps: the statistics per step divide by 16, not by 12."""
    x = windows(40, seed=1, steps=12)
    want = input_features(x, np.full(len(x), 12))
    got = torch_stats(x)
    scale = np.array([12 / 16 if name in PER_STEP else 1.0 for name in FEATURE_NAMES])
    assert_features_close(got, want * scale)


def test_bad_input_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\[B, 5, 128, 16\]"):
        WindowStats()(torch.zeros(2, 1, 128, 16))


def test_scaled_statistics_are_finite_and_normalised() -> None:
    scaled = StatsInput().train()(torch.from_numpy(windows(30, seed=2).astype(np.float32)))
    assert scaled.shape[1] == len(FEATURE_NAMES) and torch.isfinite(scaled).all()
    assert scaled.mean(0).abs().max() < 1e-3  # batch norm in training mode


def test_contract_3_statistics_count_drum_hits_not_controller_states() -> None:
    """A contract-3 input carries the part's controllers in the drums plane's rows 0-7: the
    statistics of a student that reads it leave them out, as if they were not there."""
    x = torch.from_numpy(windows(20, seed=4).astype(np.float32))
    plain = x.clone()
    plain[:, DRUMS, :N_ROWS] = 0
    with_controls = plain.clone()
    with_controls[:, DRUMS, :N_ROWS] = torch.from_numpy(
        np.random.default_rng(0).integers(0, 2, (len(x), N_ROWS, 16)).astype(np.float32)
    )
    c3, c2 = StatsInput(controls=True).eval(), StatsInput().eval()
    with torch.no_grad():
        assert torch.equal(c3(with_controls), c2(plain))
        assert not torch.equal(c2(with_controls), c2(plain))  # read as drum hits otherwise
    for controls in (False, True):
        student = build_part_student(inputs=range(5), state=8, stats=True, controls=controls)
        assert student.statistics is not None and student.statistics.controls == controls


# --------------------------------------------------------------------- the student


def test_a_student_without_statistics_is_described_as_before() -> None:
    """stats=False (the default) adds nothing: no key in the description, no weights."""
    plain = build_part_student("tiny", inputs=(0, 1, 2, 3, 4), state=8, encoder="steps")
    off = build_part_student("tiny", inputs=(0, 1, 2, 3, 4), state=8, encoder="steps", stats=False)
    assert "stats" not in describe(plain)["kwargs"] and describe(off) == describe(plain)
    assert plain.state_dict().keys() == off.state_dict().keys()
    assert not any("statistics" in k for k in plain.state_dict())
    assert describe(new_student(preset_config("fast")))["kwargs"].keys() == {
        "inputs",
        "state",
        "encoder",
        "n_classes",
    }


def test_the_statistics_reach_the_window_answer_and_the_history() -> None:
    cfg = override(preset_config("tiny"), ["model.stats=true"])
    model = new_student(cfg)
    assert isinstance(model, PartStudent) and model.statistics is not None
    plain = new_student(preset_config("tiny"))
    assert model.embedding_dim == plain.embedding_dim + len(FEATURE_NAMES)
    assert model.history.x_gates.in_features == model.embedding_dim
    rebuilt = model_from_description(describe(model))
    assert describe(rebuilt) == describe(model) and describe(model)["kwargs"]["stats"] is True
    rebuilt.load_state_dict(model.state_dict())
    x = torch.from_numpy(windows(8, seed=3).astype(np.float32))
    h0 = torch.zeros(len(x), model.state_dim)
    model.eval(), rebuilt.eval()
    with torch.no_grad():
        logits, part, h = model.step(x, h0)
        torch.testing.assert_close(rebuilt(x), logits)
        assert logits.shape == part.shape == (len(x), 8) and h.shape == (len(x), model.state_dim)
        # Both answers read the statistics: move their scaling, and both move.
        assert model.statistics is not None
        model.statistics.norm.bias.add_(1.0)
        moved, moved_part, _ = model.step(x, h0)
    assert not torch.allclose(moved, logits) and not torch.allclose(moved_part, part)


def test_a_frozen_window_freezes_the_statistics_too() -> None:
    model = build_part_student("tiny", inputs=(0, 1, 2, 3, 4), state=8, stats=True)
    model.freeze_window()
    model.train()
    assert model.statistics is not None and not model.statistics.training
    assert not any(p.requires_grad for p in model.statistics.parameters())
    assert all(p.requires_grad for p in model.history.parameters())


def test_statistics_need_contract_2() -> None:
    with pytest.raises(ConfigError, match="model.contract=2"):
        ModelConfig(contract=1, stats=True)
