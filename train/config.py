"""Typed configuration of a training run. CLI options only override these defaults; the
resolved config is written into every run folder and checkpoint."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from train.data import DataConfig

PRESETS = ("fast", "paper", "tiny")
#: Field metadata of an option added after runs existed: at its default it is left out of
#: fingerprints, so runs made before it stay current.
LATER = {"fingerprint": "when-set"}
TIMBRES = ("own", "neutral")


@dataclass
class ModelConfig:
    """Which architecture: ``fast`` (default, CPU-sized), ``paper`` (Table 1), ``tiny`` (tests)."""

    preset: str = "fast"
    #: Mel frames the teacher sees: crop or zero-pad at the end (the paper pads to 528).
    #: 172 frames = 4 s = two bars of 4/4 at 120 BPM; slower windows are cropped (at a random
    #: offset in training), which the fast teacher's pooling over time does not mind.
    teacher_frames: int = 172
    #: The students' architecture, when it differs from ``preset``'s (e.g. the ``paper``
    #: student taught by the ``fast`` teacher on a CPU); None = the same preset.
    student_preset: str | None = None
    #: Average the teacher's mel bins into this many bands (a less timbre-aware teacher, see
    #: ``TeacherCNN``); None = all 128.
    teacher_mel_bands: int | None = None
    #: What the teacher hears: ``own`` (each part in its own instrument, the paper) or
    #: ``neutral`` (every part re-rendered as one instrument: the performance without the
    #: timbre, see ``train.views``).
    teacher_timbre: str = "own"

    @property
    def student(self) -> str:
        """The preset the students (NIC and KDIC) are built from."""
        return self.student_preset or self.preset

    def teacher_part(self) -> tuple:
        """What the teacher depends on: a different student does not retrain the teacher."""
        bands = (self.teacher_mel_bands,) if self.teacher_mel_bands else ()
        timbre = (self.teacher_timbre,) if self.teacher_timbre != "own" else ()
        return (self.preset, self.teacher_frames, *bands, *timbre)


@dataclass
class OptimConfig:
    """One model's training: AdamW, cosine decay, early stopping on validation macro-F1."""

    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 4  # epochs without a better validation macro-F1 before stopping
    #: Windows drawn per epoch (class-balanced, with replacement); 0 = the train split's size.
    samples_per_epoch: int = 0
    label_smoothing: float = 0.0
    mixup: float = 0.0  # Beta(a, a) mixup of inputs and targets; 0 = off
    #: Validate and keep an exponential moving average of the weights with this decay per
    #: step (e.g. 0.99: about the last 100 steps); 0 = off, the raw weights.
    ema: float = field(default=0.0, metadata=LATER)


@dataclass
class DistillConfig:
    """KDIC: the student learns the teacher's soft targets.

    loss = (1 - alpha) * T^2 * KL(teacher_T || student_T) + alpha * CE(student, label)
           + feature_weight * MSE(project(student embedding), teacher embedding)

    alpha = 0 and feature_weight = 0 is the paper's setting (soft targets only).

    ``nckd_weight`` > 0 replaces the KL term by decoupled KD (Zhao et al., CVPR 2022):
    T^2 * (KL of the binary target/rest split + nckd_weight * KL among the non-target classes).
    The classic KL is the same sum with the second term weighted by the teacher's own
    1 - p(label), so a confident teacher passes on almost none of its off-label ranking;
    decoupling gives that ranking a weight of its own.
    """

    temperature: float = 4.0
    alpha: float = 0.5
    feature_weight: float = 0.0
    nckd_weight: float = 0.0  # decoupled KD's weight of the non-target KL; 0 = classic KD
    #: Cross-fit the teacher's outputs over K song folds, so the student never learns from a
    #: teacher that saw the window; 0 or 1 = one teacher on all training songs.
    teacher_folds: int = 0


@dataclass
class RunConfig:
    """Everything ``kdtrain all`` needs; ``RUN/config.json`` is this, resolved."""

    run: Path = Path("runs/demo")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            epochs=5, lr=2e-3, samples_per_epoch=12_800, patience=3, label_smoothing=0.1
        )
    )
    #: The students keep a moving average of their weights (about the last 200 steps): on
    #: the 592-song corpus the raw weights' validation F1 moves by a std of 0.014 from epoch
    #: to epoch, the average's by 0.003-0.005, so early stopping picks a model, not a lucky
    #: epoch.
    student: OptimConfig = field(
        default_factory=lambda: OptimConfig(epochs=10, lr=3e-3, samples_per_epoch=16_384, ema=0.995)
    )
    distill: DistillConfig = field(default_factory=DistillConfig)
    seed: int = 0
    #: Train every model on this share of the train split's songs (chosen by a stable hash of
    #: the song, so a smaller share is a subset of a larger one), for learning curves: how
    #: much NIC and KDIC gain from more songs. Validation and test stay whole. 1 = all.
    train_fraction: float = 1.0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_workers: int = 0  # DataLoader workers


def to_json(config: Any) -> dict:
    """A dataclass (nested) as plain JSON types."""
    return json.loads(json.dumps(asdict(config), default=str))


def fingerprint(*parts: Any) -> str:
    """Stable short hash of config pieces: a stage is current when its inputs' hash matches."""
    blob = json.dumps([_fingerprint_json(p) if is_dataclass(p) else p for p in parts],
                      sort_keys=True, default=str)  # fmt: skip
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def _fingerprint_json(config: Any) -> dict:
    """:func:`to_json`, less the :data:`LATER` fields that are at their default."""
    out = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if f.metadata.get("fingerprint") == "when-set" and value == f.default:
            continue
        out[f.name] = _fingerprint_json(value) if is_dataclass(value) else value
    return json.loads(json.dumps(out, default=str))


def from_json(cls: type, data: dict) -> Any:
    """Rebuild a (nested) config dataclass from :func:`to_json` output."""
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        sub = f.type if isinstance(f.type, type) else _resolve(f.type)
        if sub is not None and is_dataclass(sub) and isinstance(value, dict):
            value = from_json(sub, value)
        elif f.name in ("run", "out", "slakh") and value is not None:
            value = Path(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _resolve(name: Any) -> type | None:
    return {"DataConfig": DataConfig, "ModelConfig": ModelConfig, "OptimConfig": OptimConfig,
            "DistillConfig": DistillConfig}.get(str(name))  # fmt: skip


def preset_config(preset: str, student_preset: str | None = None) -> RunConfig:
    """Defaults for a preset. ``fast``: sized so that ``kdtrain all`` on the demo corpus
    finishes on 2 CPU cores. ``paper``: Table 1's models (a GPU is advisable for the teacher).
    ``tiny``: seconds, for tests.

    ``student_preset`` swaps in another preset's student (its learning rate and batch size
    come with it; epochs, windows per epoch and patience stay ``preset``'s, so a ``fast`` run
    with the ``paper`` student keeps its CPU-sized schedule)."""
    for name in (preset, student_preset or preset):
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    cfg = _preset_config(preset)
    if student_preset and student_preset != preset:
        other = _preset_config(student_preset).student
        cfg.model.student_preset = student_preset
        cfg.student.lr, cfg.student.batch_size = other.lr, other.batch_size
    return cfg


def _preset_config(preset: str) -> RunConfig:
    cfg = RunConfig(model=ModelConfig(preset=preset))
    if preset == "paper":
        cfg.model.teacher_frames = 528
        cfg.teacher = OptimConfig(epochs=10, batch_size=32, lr=3e-4, label_smoothing=0.1)
        cfg.student = OptimConfig(epochs=20, batch_size=128, lr=1e-3)
    elif preset == "tiny":
        cfg.model.teacher_frames = 64
        cfg.teacher = OptimConfig(epochs=2, batch_size=16, lr=3e-3, samples_per_epoch=64)
        cfg.student = OptimConfig(epochs=2, batch_size=16, lr=3e-3, samples_per_epoch=64)
    return cfg
