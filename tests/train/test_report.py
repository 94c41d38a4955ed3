"""Metrics (train.evaluate) and the run report (train.report) on hand-made results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from live.taxonomy import CLASSES, N_CLASSES
from train.evaluate import evaluate, soft_targets
from train.report import distillation_effect, write_report

PIANO, ORGAN, GUITAR, BASS, STRINGS, BRASS, REED, PIPE = range(N_CLASSES)


def one_hot(predicted: list[int]) -> np.ndarray:
    """Scores whose argmax is ``predicted`` (softmax-like rows)."""
    probs = np.full((len(predicted), N_CLASSES), 0.02)
    probs[np.arange(len(predicted)), predicted] = 0.86
    return probs


# Pipe never occurs in y_true; Reed is predicted once (for a Brass window) but never true either.
Y_TRUE = [PIANO] * 4 + [ORGAN] * 2 + [GUITAR] * 3 + [BASS] * 3 + [STRINGS] * 2 + [BRASS] * 2
Y_PRED = (
    [PIANO, PIANO, PIANO, ORGAN]
    + [ORGAN, PIANO]
    + [GUITAR, GUITAR, GUITAR]
    + [BASS, BASS, GUITAR]
    + [STRINGS, PIPE]
    + [BRASS, REED]
)


# ---------------------------------------------------------------------------- evaluate


def test_evaluate_confusion_and_accuracy() -> None:
    result = evaluate(np.array(Y_TRUE), one_hot(Y_PRED))
    confusion = np.array(result["confusion"])
    assert confusion.shape == (8, 8)
    assert confusion[PIANO].tolist() == [3, 1, 0, 0, 0, 0, 0, 0]
    assert confusion[ORGAN].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    assert confusion[BASS, GUITAR] == 1
    assert confusion[STRINGS, PIPE] == 1
    assert confusion[BRASS, REED] == 1
    assert confusion[PIPE].sum() == 0 and confusion[REED].sum() == 0
    assert confusion.sum() == len(Y_TRUE) == result["n"]
    assert result["accuracy"] == pytest.approx(11 / 16)  # 3 + 1 + 3 + 2 + 1 + 1 right
    assert result["support"] == {
        "Piano": 4,
        "Organ": 2,
        "Guitar": 3,
        "Bass": 3,
        "Strings": 2,
        "Brass": 2,
        "Reed": 0,
        "Pipe": 0,
    }


def test_evaluate_macro_f1_over_present_classes() -> None:
    result = evaluate(np.array(Y_TRUE), one_hot(Y_PRED))
    present = [PIANO, ORGAN, GUITAR, BASS, STRINGS, BRASS]
    expected = f1_score(Y_TRUE, Y_PRED, labels=present, average="macro", zero_division=0)
    assert result["macro_f1"] == pytest.approx(expected)
    # by hand: Piano 3/4, Organ 1/2, Guitar 6/7, Bass 4/5, Strings 2/3, Brass 2/3
    assert result["macro_f1"] == pytest.approx((3 / 4 + 1 / 2 + 6 / 7 + 4 / 5 + 2 / 3 + 2 / 3) / 6)
    # counting the absent classes as 0 would be lower
    all_eight = f1_score(Y_TRUE, Y_PRED, labels=range(8), average="macro", zero_division=0)
    assert result["macro_f1"] > all_eight
    assert result["classes_in_test"] == ["Piano", "Organ", "Guitar", "Bass", "Strings", "Brass"]


def test_evaluate_per_class() -> None:
    result = evaluate(np.array(Y_TRUE), one_hot(Y_PRED))
    assert list(result["per_class"]) == list(CLASSES)
    assert result["per_class"]["Pipe"] is None
    assert result["per_class"]["Reed"] is None
    assert result["per_class"]["Piano"] == pytest.approx(0.75)
    assert result["per_class"]["Guitar"] == pytest.approx(6 / 7)
    json.dumps(result)  # plain JSON types only


def test_evaluate_perfect_and_logits() -> None:
    y = np.array([0, 3, 3, 7])
    logits = np.full((4, 8), -5.0)
    logits[np.arange(4), y] = 3.0
    result = evaluate(y, logits)
    assert result["macro_f1"] == 1.0 and result["accuracy"] == 1.0


@pytest.mark.parametrize(
    ("y", "probs"),
    [
        (np.array([], dtype=int), np.zeros((0, 8))),
        (np.array([0, 1]), np.zeros((2, 7))),
        (np.array([0, 8]), np.zeros((2, 8))),
        (np.array([0.0, 1.0]), np.zeros((2, 8))),
        (np.array([0, 1]), np.full((2, 8), np.nan)),
    ],
)
def test_evaluate_rejects_bad_input(y: np.ndarray, probs: np.ndarray) -> None:
    with pytest.raises(ValueError):
        evaluate(y, probs)


# ---------------------------------------------------------------------------- summarize_seeds


def run(macro: float, accuracy: float, piano: float | None, pipe: float | None) -> dict:
    """A fake evaluate() result."""
    per_class = dict.fromkeys(CLASSES, 0.5) | {"Piano": piano, "Pipe": pipe}
    return {
        "macro_f1": macro,
        "accuracy": accuracy,
        "per_class": per_class,
        "confusion": np.eye(8, dtype=int).tolist(),
        "n": 8,
        "support": dict.fromkeys(CLASSES, 1),
    }


def teacher_logits(y: np.ndarray, second: np.ndarray, *, margin: float = 4.0) -> np.ndarray:
    """Logits with the label first and class ``second[label]`` a clear runner-up."""
    logits = np.zeros((y.size, N_CLASSES))
    logits[np.arange(y.size), y] = margin
    logits[np.arange(y.size), second[y]] = margin / 2
    return logits


def test_soft_targets_probability_and_entropy() -> None:
    y = np.array([0, 1, 2, 3])
    logits = np.zeros((4, N_CLASSES))
    logits[np.arange(4), y] = np.log(7.0)  # p(label) = 7 / (7 + 7) = 0.5, the rest 1/14
    out = soft_targets(logits, y, temperature=1.0)
    assert out["p_label"] == pytest.approx(0.5)
    assert out["entropy"] == pytest.approx(-(0.5 * np.log(0.5) + 7 / 14 * np.log(1 / 14)))
    assert out["accuracy"] == 1.0 and out["n"] == 4
    # T = 2 halves the logits: p(label) = sqrt(7) / (sqrt(7) + 7)
    assert soft_targets(logits, y, 2.0)["p_label"] == pytest.approx(7**0.5 / (7**0.5 + 7))
    assert out["off_label"][0][0] == pytest.approx(0.5)
    assert out["off_label"][4] is None  # no window of class 4


def test_soft_targets_alignment_with_confusions() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, N_CLASSES, 4000)
    second = (np.arange(N_CLASSES) + 4) % N_CLASSES  # the teacher's runner-up per class
    confused_alike = np.eye(N_CLASSES) * 50
    confused_alike[np.arange(N_CLASSES), second] = 20
    confused_elsewhere = np.eye(N_CLASSES) * 50
    confused_elsewhere[np.arange(N_CLASSES), (np.arange(N_CLASSES) + 1) % N_CLASSES] = 20
    out = soft_targets(
        teacher_logits(y, second),
        y,
        2.0,
        {
            "alike": confused_alike,
            "elsewhere": confused_elsewhere,
            "perfect": np.eye(N_CLASSES) * 9,
        },
    )
    assert out["alignment"]["alike"] > 0.95
    assert out["alignment"]["elsewhere"] < 0.1
    assert out["alignment"]["perfect"] is None  # nothing off the diagonal to compare
    with pytest.raises(ValueError, match="shape"):
        soft_targets(np.zeros((3, N_CLASSES)), np.zeros(4, int), 2.0)
    with pytest.raises(ValueError, match="temperature"):
        soft_targets(np.zeros((4, N_CLASSES)), np.zeros(4, int), 0.0)


def test_report_shows_what_the_soft_targets_carry(tmp_path: Path) -> None:
    y = np.arange(800) % N_CLASSES
    second = (np.arange(N_CLASSES) + 3) % N_CLASSES
    nic = np.eye(N_CLASSES) * 30
    nic[np.arange(N_CLASSES), second] = 10
    targets = soft_targets(teacher_logits(y, second), y, 2.0, {"NIC": nic})
    write_report(tmp_path, models=fake_models(), data={}, config={}, teacher_targets=targets)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["teacher_targets"]["alignment"]["NIC"] == pytest.approx(1.0)
    md = (tmp_path / "report.md").read_text()
    assert "## What the teacher's soft targets carry" in md
    assert "on the 800 training windows." in md
    assert f"| mean target probability of the label | {targets['p_label']:.3f} |" in md
    assert "vs NIC's test confusions (Pearson r) | 1.00 |" in md


# ---------------------------------------------------------------------------- write_report

MACRO = {"AIC": 0.80, "NIC": 0.60, "KDIC": 0.70, "floor": 0.45}


def fake_models() -> dict[str, dict]:
    """evaluate() results of four models on a random test split where Pipe is absent."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, N_CLASSES - 1, size=200)  # never Pipe
    models = {}
    for name, hit_rate in (("AIC", 0.8), ("NIC", 0.55), ("KDIC", 0.7), ("floor", 0.4)):
        predicted = np.where(rng.random(200) < hit_rate, y, rng.integers(0, N_CLASSES, 200))
        models[name] = evaluate(y, one_hot(predicted.tolist()))
        models[name]["macro_f1"] = MACRO[name]  # round numbers for the gap arithmetic
    return models


def fake_history(epochs: int, start: float) -> list[dict]:
    """Per-epoch records; the last one has no train_loss."""
    records = [
        {"epoch": e, "train_loss": 2.0 / e, "val_macro_f1": start + 0.03 * e, "lr": 1e-3}
        for e in range(1, epochs + 1)
    ]
    del records[-1]["train_loss"]
    return records


DATA = {
    "songs": 12,
    "stems": 40,
    "skipped": 3,
    "windows": {
        "train": dict.fromkeys(CLASSES, 100),
        "validation": dict.fromkeys(CLASSES, 10),
        "test": dict.fromkeys(CLASSES, 25) | {"Pipe": 0},
    },
}
CONFIG = {"seed": 0, "run": "runs/demo", "student": {"epochs": 12, "lr": 0.002}}


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000


@pytest.fixture()
def report_dir(tmp_path: Path) -> Path:
    histories = {"AIC": fake_history(6, 0.5), "NIC": fake_history(5, 0.3), "KDIC": []}
    write_report(
        tmp_path / "run",
        models=fake_models(),
        data=DATA,
        config=CONFIG,
        histories=histories,
    )
    return tmp_path / "run"


def test_report_json_structure(report_dir: Path) -> None:
    report = json.loads((report_dir / "report.json").read_text())
    assert set(report) == {"models", "data", "config", "paper"}
    assert list(report["models"]) == ["AIC", "NIC", "KDIC", "floor"]
    for name, entry in report["models"].items():
        assert entry["macro_f1"] == MACRO[name]
        assert 0 <= entry["accuracy"] <= 1
        assert list(entry["per_class"]) == list(CLASSES)
        assert entry["per_class"]["Pipe"] is None
    assert report["paper"] == {"AIC": 0.76, "NIC": 0.61, "KDIC": 0.72}
    assert report["data"] == json.loads(json.dumps(DATA))
    assert report["config"] == CONFIG


def test_report_md_tables(report_dir: Path) -> None:
    md = (report_dir / "report.md").read_text()
    assert md.startswith("# ")
    assert "| AIC | audio | hard | 0.800 |" in md
    assert "| NIC | notes | hard | 0.600 |" in md
    assert "| KDIC | notes | soft (from AIC) | 0.700 |" in md
    assert "| floor | hand statistics | hard | 0.450 |" in md
    for paper in ("| 0.76 |", "| 0.61 |", "| 0.72 |"):
        assert paper in md
    # the gap closed, computed from the models given: (0.70 - 0.60) / (0.80 - 0.60) = 50%;
    # the paper's from its Table 2: (0.72 - 0.61) / (0.76 - 0.61) = 73.3%
    assert "| ours | +0.200 | +0.100 | 50.0% |" in md
    assert "| paper | +0.150 | +0.110 | 73.3% |" in md
    assert "| Pipe | — | — | — | — | 0 |" in md  # per-class: absent from the test split
    assert "| Piano | 100 | 10 | 25 | 135 |" in md  # data: windows per split
    assert "| **total** | 800 | 80 | 175 | 1,055 |" in md
    assert "- songs: 12" in md and "- stems: 40" in md
    assert "<details>" in md and '"epochs": 12' in md


def test_report_figures(report_dir: Path) -> None:
    md = (report_dir / "report.md").read_text()
    for name in ("AIC", "NIC", "KDIC", "floor"):
        assert is_png(report_dir / f"confusion_{name}.png")
        assert f"(confusion_{name}.png)" in md
    assert is_png(report_dir / "training_curves.png")
    assert "(training_curves.png)" in md
    assert not list(report_dir.glob(".*tmp"))  # no temporary files left behind


def test_report_without_histories_and_with_another_model(tmp_path: Path) -> None:
    """A model the report does not know by name (e.g. a lookup table) says what it sees."""
    models = fake_models()
    models["lookup"] = models["floor"] | {"input": "exact roll", "targets": "majority"}
    write_report(tmp_path, models=models, data={}, config={}, histories=None)
    md = (tmp_path / "report.md").read_text()
    assert not (tmp_path / "training_curves.png").exists()
    assert "No training histories." in md
    assert is_png(tmp_path / "confusion_lookup.png")
    assert "| lookup | exact roll | majority | 0.450 |" in md


def part_answers(window: float, running: float, after8: float) -> dict:
    """The part-level figures :func:`train.students.evaluate_windows` adds to a model's."""
    parts = {b: {"macro_f1": after8 - 0.01 * (8 - int(b)), "n": 40} for b in ("2", "4", "8")}
    return {"macro_f1": window, "running": {"macro_f1": running}, "parts": parts}


def test_the_floor_stands_beside_the_students_with_its_part_level_answers(
    tmp_path: Path,
) -> None:
    """Contract 2: the floor's window, running and after-8 figures in the part-level table,
    with its window answers averaged, and each student minus the floor."""
    models = fake_models()
    models["NIC"] |= part_answers(0.60, 0.64, 0.62)
    models["KDIC"] |= part_answers(0.70, 0.71, 0.69)
    floor = part_answers(0.45, 0.52, 0.50) | {"input": "hand statistics of the inputs"}
    models["floor"] |= floor | {"mean": part_answers(0.45, 0.47, 0.46)}
    write_report(tmp_path, models=models, data={}, config={})
    md = (tmp_path / "report.md").read_text()
    assert "| floor | 0.450 | 0.520 | 0.440 | 0.460 | 0.500 |" in md
    assert "| floor, window answers averaged | 0.450 | 0.470 |" in md
    assert "## Against the floor" in md and "hand statistics of the inputs" in md
    assert "| NIC | +0.150 | +0.120 | +0.120 |" in md
    assert "| KDIC | +0.250 | +0.190 | +0.190 |" in md
    assert "| floor | hand statistics of the inputs | hard | 0.450 |" in md


def test_against_the_floor_without_part_level_answers_shows_the_window_alone(
    tmp_path: Path,
) -> None:
    """Contract 1: no running answers; the window's difference, dashes for the rest."""
    write_report(tmp_path, models=fake_models(), data={}, config={})
    md = (tmp_path / "report.md").read_text()
    assert "| NIC | +0.150 | — | — |" in md and "| KDIC | +0.250 | — | — |" in md


def test_a_teacher_no_better_than_the_student_closes_no_share_of_the_gap(tmp_path: Path) -> None:
    models = fake_models()
    models["AIC"]["macro_f1"] = 0.55  # below NIC's 0.60
    write_report(
        tmp_path,
        models=models,
        data={"songs": 2},
        config={},
        histories={"NIC": [{"epoch": 1, "val_macro_f1": 0.4}], "AIC": []},
    )
    md = (tmp_path / "report.md").read_text()
    assert is_png(tmp_path / "training_curves.png")
    assert "| ours | -0.050 | +0.100 | — (AIC ≤ NIC) |" in md


def test_distillation_effect() -> None:
    gain, share = distillation_effect(0.76, 0.61, 0.72)
    assert gain == pytest.approx(0.11) and share == pytest.approx(0.7333, abs=1e-4)
    assert distillation_effect(0.6, 0.6, 0.7)[1] is None


def test_importing_report_is_light() -> None:
    code = "import sys, train.report, train.evaluate; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_report_says_which_preset_the_run_used(tmp_path: Path) -> None:
    write_report(tmp_path, models=fake_models(), data={}, config={"model": {"preset": "paper"}})
    assert "Models: the `paper` preset." in (tmp_path / "report.md").read_text()
