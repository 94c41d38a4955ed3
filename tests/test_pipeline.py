"""A tiny end-to-end `kdtrain all` on generated songs rendered with real FluidSynth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import TIMGM, Track, melody, write_song
from live.taxonomy import CLASSES
from train.cli import app as kdtrain
from train.collection import split_of
from train.models import build_student, describe
from train.pipeline import load_model
from train.store import WindowStore

pytestmark = pytest.mark.fluidsynth

FLUIDR3 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")

#: One program per class, each in its own register, so even a tiny model has signal.
PROGRAMS = {"Piano": 0, "Organ": 16, "Guitar": 25, "Bass": 33, "Strings": 48, "Brass": 56,
            "Reed": 65, "Pipe": 73}  # fmt: skip
LOW = {"Piano": 60, "Organ": 55, "Guitar": 52, "Bass": 33, "Strings": 62, "Brass": 58,
       "Reed": 66, "Pipe": 76}  # fmt: skip


def collection(folder: Path, per_split: int = 1) -> Path:
    """Songs with 4 of the 8 classes each, until every split has ``per_split`` songs."""
    import hashlib

    found = {"train": 0, "validation": 0, "test": 0}
    i = 0
    while min(found.values()) < per_split or found["train"] < 3:
        names = [CLASSES[(i + k) % 8] for k in range(0, 8, 2)]
        tracks = [Track(n, PROGRAMS[n], ch, melody(6, low=LOW[n], seed=i * 10 + ch))
                  for ch, n in enumerate(names)]  # fmt: skip
        path = write_song(folder / f"song{i:03d}.mid", tracks, bpm=100 + 7 * (i % 5))
        split = split_of(hashlib.sha1(path.read_bytes()).hexdigest())
        if found[split] >= max(per_split, 3):
            path.unlink()
        else:
            found[split] += 1
        i += 1
    return folder


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, fluidsynth: str) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    midi = collection(root / "midi")
    run = root / "run"
    args = ["all", "--midi", str(midi), "--run", str(run), "--preset", "tiny", "--workers", "2",
            "--device", "cpu", "--soundfont", str(TIMGM)]  # fmt: skip
    result = CliRunner().invoke(kdtrain, args)
    assert result.exit_code == 0, result.output
    return run


def test_report_and_checkpoints(tiny_run: Path) -> None:
    report = json.loads((tiny_run / "report.json").read_text())
    assert set(report["models"]) >= {"AIC", "NIC", "KDIC", "baseline"}
    for name, m in report["models"].items():
        assert 0.0 <= m["macro_f1"] <= 1.0, name
        assert set(m["per_class"]) == set(CLASSES)
    assert report["paper"] == {"AIC": 0.76, "NIC": 0.61, "KDIC": 0.72}
    targets = report["teacher_targets"]  # the teacher's soft targets on the training windows
    assert targets["n"] == sum(report["data"]["windows"]["train"].values())
    assert targets["cross_fitted"] is False
    assert 0 < targets["p_label"] <= 1 and 0 <= targets["entropy"] <= np.log(8) + 1e-9
    for row in targets["off_label"]:  # mean target per true class: a distribution, or None
        assert row is None or abs(sum(row) - 1) < 1e-6
    assert set(targets["alignment"]) == {"NIC", "baseline"}
    md = (tiny_run / "report.md").read_text()
    assert "KDIC" in md and "0.76" in md
    assert (tiny_run / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    for name in ("teacher", "nic", "kdic"):
        blob = torch.load(tiny_run / f"{name}.pt", weights_only=False)
        assert blob["classes"] == list(CLASSES) and blob["contract_version"] == 1
        assert blob["config"]["model"]["preset"] == "tiny"
        model = load_model(tiny_run / f"{name}.pt")  # rebuilt from the file alone
        shape = (2, 1, 128, 64) if name == "teacher" else (2, 1, 128, 16)
        assert model(torch.zeros(shape)).shape == (2, 8)


def test_run_ends_with_a_bundle_that_live_loads(tiny_run: Path) -> None:
    """kdtrain all -> RUN/bundle; live's Model on ONNX Runtime gives the classes PyTorch gives
    on the run's own test windows."""
    import numpy as np

    from live.bundle import read_bundle
    from live.model import Model
    from train.store import WindowStore

    bundle = read_bundle(tiny_run / "bundle")
    report = json.loads((tiny_run / "report.json").read_text())
    assert bundle.manifest["preset"] == "tiny"
    assert bundle.manifest["test_metrics"]["macro_f1"] == report["models"]["KDIC"]["macro_f1"]
    assert bundle.manifest["training_data"]["songs"] == report["data"]["songs"]
    gauntlet = bundle.manifest["export"]["gauntlet"]
    assert gauntlet["passed"] and gauntlet["real_windows"] > 0
    store = WindowStore(Path(report["config"]["data"]["out"]) / "windows")
    rolls = store.rolls[store.split("test")].astype(np.float32)[:, None]
    with torch.no_grad():
        want = load_model(tiny_run / "kdic.pt")(torch.from_numpy(rolls)).argmax(1).numpy()
    assert np.array_equal(Model(tiny_run / "bundle").predict(rolls).argmax(1), want)


def test_second_run_skips_finished_stages(tiny_run: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in tiny_run.glob("*.pt")}
    midi = tiny_run.parent / "midi"
    result = CliRunner().invoke(kdtrain, ["all", "--midi", str(midi), "--run", str(tiny_run),
                                          "--preset", "tiny", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "current" in result.output
    after = {p.name: p.stat().st_mtime_ns for p in tiny_run.glob("*.pt")}
    assert {k: after[k] for k in before} == before


def test_changing_the_distillation_retrains_only_kdic(tiny_run: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in tiny_run.glob("*.pt")}
    midi = tiny_run.parent / "midi"
    result = CliRunner().invoke(kdtrain, ["all", "--midi", str(midi), "--run", str(tiny_run),
                                          "--preset", "tiny", "--device", "cpu",
                                          "--temperature", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    after = {p.name: p.stat().st_mtime_ns for p in tiny_run.glob("*.pt")}
    assert after["teacher.pt"] == before["teacher.pt"] and after["nic.pt"] == before["nic.pt"]
    assert after["kdic.pt"] != before["kdic.pt"]


def test_a_neutral_teacher_retrains_the_teacher_and_kdic_not_nic(tiny_run: Path) -> None:
    """--teacher-timbre neutral: the teacher hears every part re-rendered as a piano (a view
    beside the store), NIC is kept, and the report says what the teacher heard."""
    before = {p.name: p.stat().st_mtime_ns for p in tiny_run.glob("*.pt")}
    midi = tiny_run.parent / "midi"
    args = ["all", "--midi", str(midi), "--run", str(tiny_run), "--preset", "tiny",
            "--device", "cpu", "--temperature", "2", "--soundfont", str(TIMGM)]  # fmt: skip
    result = CliRunner().invoke(kdtrain, [*args, "--teacher-timbre", "neutral",
                                          "--teacher-patience", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    after = {p.name: p.stat().st_mtime_ns for p in tiny_run.glob("*.pt")}
    assert after["nic.pt"] == before["nic.pt"]
    for name in ("teacher.pt", "teacher_outputs.pt", "kdic.pt"):
        assert after[name] != before[name]
    assert (tiny_run / "data" / "windows" / "mel-neutral.json").is_file()
    assert "re-rendered as a piano" in (tiny_run / "report.md").read_text()
    blob = torch.load(tiny_run / "teacher.pt", weights_only=False)
    assert blob["config"]["model"]["teacher_timbre"] == "neutral"
    assert blob["config"]["teacher"]["patience"] == 1
    # The view re-rendered with another soundfont: a new teacher, the same NIC.
    nic = (tiny_run / "nic.pt").stat().st_mtime_ns
    teacher = (tiny_run / "teacher.pt").stat().st_mtime_ns
    other = [a if a != str(TIMGM) else str(FLUIDR3) for a in args]
    result = CliRunner().invoke(kdtrain, [*other, "--teacher-timbre", "neutral",
                                          "--teacher-patience", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tiny_run / "nic.pt").stat().st_mtime_ns == nic
    assert (tiny_run / "teacher.pt").stat().st_mtime_ns != teacher
    meta = json.loads((tiny_run / "data" / "windows" / "mel-neutral.json").read_text())
    assert meta["soundfont"] == FLUIDR3.name
    # Back to the teacher of the paper: retrained on the parts' own sound (not reused).
    result = CliRunner().invoke(kdtrain, args)
    assert result.exit_code == 0, result.output
    blob = torch.load(tiny_run / "teacher.pt", weights_only=False)
    assert blob["config"]["model"]["teacher_timbre"] == "own"


def test_an_unknown_teacher_timbre_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(kdtrain, ["all", "--run", str(tmp_path), "--teacher-timbre",
                                          "violin"])  # fmt: skip
    assert result.exit_code == 2 and "own, neutral" in result.output


def test_another_student_preset_retrains_the_students_not_the_teacher(tiny_run: Path) -> None:
    """--student-preset fast on a tiny run: the teacher and its cached outputs are kept, NIC
    and KDIC are rebuilt as the fast student, and the bundle says so. (Last: it changes the
    run's students.)"""
    before = {p.name: p.stat().st_mtime_ns for p in tiny_run.glob("*.pt")}
    midi = tiny_run.parent / "midi"
    result = CliRunner().invoke(kdtrain, ["all", "--midi", str(midi), "--run", str(tiny_run),
                                          "--preset", "tiny", "--student-preset", "fast",
                                          "--device", "cpu", "--temperature", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    after = {p.name: p.stat().st_mtime_ns for p in tiny_run.glob("*.pt")}
    assert after["teacher.pt"] == before["teacher.pt"]
    assert after["teacher_outputs.pt"] == before["teacher_outputs.pt"]
    for name in ("nic", "kdic"):
        assert after[f"{name}.pt"] != before[f"{name}.pt"]
        blob = torch.load(tiny_run / f"{name}.pt", weights_only=False)
        assert blob["description"] == describe(build_student("fast"))
        assert blob["config"]["model"]["student_preset"] == "fast"
    assert json.loads((tiny_run / "bundle" / "kdlive-model.json").read_text())["preset"] == "fast"


def test_a_train_fraction_trains_every_model_on_a_subset_of_the_songs(
    tiny_run: Path, tmp_path: Path
) -> None:
    """--train-fraction f: the teacher, both students and the baseline learn from the songs
    whose stable share is below f; validation and test are untouched, the report says it."""
    from train.pipeline import song_shares

    store = WindowStore(tiny_run / "data" / "windows")
    train = store.split("train")
    songs = store.index["song"][train]
    shares = dict(zip(songs, song_shares(songs), strict=True))
    assert len(shares) >= 3
    low, high = sorted(shares.values())[:2]
    fraction = round((low + high) / 2, 6)  # keeps exactly one training song
    run = tmp_path / "run"
    args = ["all", "--midi", str(tiny_run.parent / "midi"), "--data", str(tiny_run / "data"),
            "--run", str(run), "--preset", "tiny", "--device", "cpu", "--soundfont", str(TIMGM),
            "--train-fraction", str(fraction)]  # fmt: skip
    result = CliRunner().invoke(kdtrain, args)
    assert result.exit_code == 0, result.output
    report = json.loads((run / "report.json").read_text())
    kept = [s for s, v in shares.items() if v < fraction]
    assert report["data"]["train_songs_used"] == len(kept) == 1
    n_kept = int(np.isin(songs, kept).sum())
    assert 0 < n_kept < len(train)
    assert report["data"]["train_windows_used"] == report["teacher_targets"]["n"] == n_kept
    assert report["config"]["train_fraction"] == fraction
    assert "train_fraction" in (run / "report.md").read_text()
    reference = json.loads((tiny_run / "report.json").read_text())
    assert sum(map(sum, report["models"]["NIC"]["confusion"])) == sum(
        map(sum, reference["models"]["NIC"]["confusion"])
    )  # the same test windows


def test_song_shares_nest_and_keep_songs_whole() -> None:
    from train.pipeline import song_shares

    songs = np.array([f"Track{i:05d}" for i in range(2000) for _ in range(3)])
    shares = song_shares(songs)
    assert np.all((shares >= 0) & (shares < 1))
    assert np.all(shares[0::3] == shares[2::3])  # every window of a song alike
    quarter, half = shares < 0.25, shares < 0.5
    assert np.all(half[quarter]) and 0.2 < quarter.mean() < 0.3 and 0.45 < half.mean() < 0.55


def test_a_train_fraction_outside_0_1_is_a_usage_error(tmp_path: Path) -> None:
    for bad in ("0", "1.5", "-0.1"):
        result = CliRunner().invoke(kdtrain, ["all", "--run", str(tmp_path),
                                              "--train-fraction", bad])  # fmt: skip
        assert result.exit_code == 2 and "(0, 1]" in result.output, bad


def test_student_ema_retrains_the_students_not_the_teacher(tiny_run: Path, tmp_path: Path) -> None:
    """--student-ema: the students' checkpoints record the decay; back to 0, they are other
    stages and retrain, while the teacher and its cached outputs are kept."""
    run = tmp_path / "run"
    args = ["all", "--midi", str(tiny_run.parent / "midi"), "--data", str(tiny_run / "data"),
            "--run", str(run), "--preset", "tiny", "--device", "cpu",
            "--soundfont", str(TIMGM)]  # fmt: skip
    result = CliRunner().invoke(kdtrain, [*args, "--student-ema", "0.9"])
    assert result.exit_code == 0, result.output
    before = {p.name: torch.load(p, weights_only=False) for p in run.glob("*.pt")}
    for name in ("nic.pt", "kdic.pt"):
        assert before[name]["config"]["student"]["ema"] == 0.9
    result = CliRunner().invoke(kdtrain, args)
    assert result.exit_code == 0, result.output
    after = {p.name: torch.load(p, weights_only=False) for p in run.glob("*.pt")}
    for name in ("teacher.pt", "teacher_outputs.pt"):
        assert after[name]["fingerprint"] == before[name]["fingerprint"]
    for name in ("nic.pt", "kdic.pt"):
        assert after[name]["fingerprint"] != before[name]["fingerprint"]
        assert after[name]["config"]["student"]["ema"] == 0.0
    for bad in ("1", "-0.5"):
        result = CliRunner().invoke(kdtrain, ["all", "--run", str(tmp_path), "--student-ema", bad])
        assert result.exit_code == 2 and "[0, 1)" in result.output, bad


def test_teacher_mixup_and_smoothing_retrain_the_teacher_and_kdic_not_nic(
    tiny_run: Path, tmp_path: Path
) -> None:
    """--teacher-mixup and --teacher-label-smoothing reach the teacher's checkpoint; the
    teacher, its cached outputs and KDIC are redone, NIC is kept."""
    run = tmp_path / "run"
    args = ["all", "--midi", str(tiny_run.parent / "midi"), "--data", str(tiny_run / "data"),
            "--run", str(run), "--preset", "tiny", "--device", "cpu",
            "--soundfont", str(TIMGM)]  # fmt: skip
    result = CliRunner().invoke(kdtrain, args)
    assert result.exit_code == 0, result.output
    before = {p.name: torch.load(p, weights_only=False)["fingerprint"] for p in run.glob("*.pt")}
    result = CliRunner().invoke(kdtrain, [*args, "--teacher-mixup", "0.4",
                                          "--teacher-label-smoothing", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    after = {p.name: torch.load(p, weights_only=False) for p in run.glob("*.pt")}
    assert after["nic.pt"]["fingerprint"] == before["nic.pt"]
    for name in ("teacher.pt", "teacher_outputs.pt", "kdic.pt"):
        assert after[name]["fingerprint"] != before[name], name
    teacher = after["teacher.pt"]["config"]["teacher"]
    assert (teacher["mixup"], teacher["label_smoothing"]) == (0.4, 0.0)
    for flag, bad, message in (("--teacher-mixup", "-1", ">= 0"),
                               ("--teacher-label-smoothing", "1", "[0, 1)")):  # fmt: skip
        result = CliRunner().invoke(kdtrain, ["all", "--run", str(tmp_path), flag, bad])
        assert result.exit_code == 2 and message in result.output, flag


def test_two_runs_started_together_on_one_data_folder_build_it_once(tmp_path: Path) -> None:
    """Seeds run side by side with one --data: the second waits for the first's build, then
    finds it done; nobody reads a half-written file, and no stem is stored twice."""
    import subprocess
    import sys

    midi = collection(tmp_path / "midi")
    out = tmp_path / "data"
    cmd = [sys.executable, "-m", "train.cli", "data", "--midi", str(midi), "--out", str(out),
           "--workers", "1", "--soundfont", str(TIMGM)]  # fmt: skip
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]  # fmt: skip
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for proc, text in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, text
    assert sum("another kdtrain is building" in text for text in outputs) == 1, outputs
    store = WindowStore(out / "windows")
    summary = json.loads((out / "summary.json").read_text())
    assert len(store) == sum(sum(c.values()) for c in summary["windows"].values())
    done = (out / "windows" / "done.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in done]
    stems = [r["stem"] for r in records]
    assert len(stems) == len(set(stems))
    assert sum(r["windows"] > 0 for r in records) == summary["stems"]
