"""Typed configuration: the one source of truth for every setting of a run.

A preset (:data:`PRESETS`: ``fast``, ``shipped``, ``paper``, ``tiny``) is a complete
:class:`RunConfig`; the command line picks one, fills in where the data is, and changes any
other field by name (``--set student.epochs=20``, see :func:`override`). Every dataclass checks
its own values, so a bad setting fails at once, whichever way it came in. The resolved config
is written into the run folder (``RUN/config.json``) and into every checkpoint.

``RunConfig()`` itself is the ``fast`` preset: the recipe behind the README's figures.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import typing
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from live.contracts import CONTRACTS
from train.data.workers import cluster_problem
from train.errors import ConfigError

#: Part of every stage's fingerprint: bumped when a stage's meaning changes, so runs made
#: before retrain that stage instead of being trusted.
FINGERPRINT_VERSION = 2
DEVICES = ("auto", "cpu", "cuda")
SPLITS = ("song", "window", "slakh-orig")  # train.splits.KINDS, without importing numpy here
#: The presets that size the architectures (``model.preset``; :mod:`train.models`).
ARCHITECTURES = ("fast", "paper", "tiny")


def since(default: Any) -> Any:
    """A field added after runs were made: left out of :func:`fingerprint` while it holds its
    ``default``, so the runs made before it stay current (their stages are what the default
    would have trained)."""
    return field(default=default, metadata={"omit_default": True})


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass(frozen=True)
class DataConfig:
    """What ``kdtrain data`` builds, and from what; saved as ``OUT/config.json``."""

    out: Path = Path("data")
    midi: list[Path] = field(default_factory=list)  # folders of General MIDI files
    slakh: Path | None = None  # a Slakh2100-layout folder, instead of ``midi``
    #: More MIDI folders for the notes-only store (contracts 2 and 3) alone: songs the students
    #: learn from without audio (thousands, where rendering affords hundreds).
    notes_midi: list[Path] = field(default_factory=list)
    soundfonts: list[Path] = field(default_factory=list)  # default: every GM bank found
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    #: Where the songs are rendered and cut: None, ``workers`` processes here; ``local:N``, a
    #: local Dask cluster of N processes; or a running Dask scheduler's address
    #: (``tcp://host:8786``; :mod:`train.data.workers`). Not part of any fingerprint: where
    #: the build ran does not change what it built.
    cluster: str | None = None
    limit_songs: int | None = None
    train_hop_bars: int = 1  # training windows start every bar (they overlap by one)...
    eval_hop_bars: int = 2  # ...validation and test windows every other bar (no overlap)
    #: A window whose audio RMS is below this (dBFS) is dropped: its label would be noise.
    silence_db: float = -60.0

    @property
    def slakh_root(self) -> Path:
        """The Slakh-layout folder of the audio store: Slakh2100's, or the rendered collection's
        (``out/slakh``)."""
        return Path(self.slakh or Path(self.out) / "slakh")

    def __post_init__(self) -> None:
        _check(
            not (self.slakh is not None and self.midi), "pass either --slakh or --midi, not both"
        )
        _check(self.workers >= 1, f"workers must be >= 1, got {self.workers}")
        _check(cluster_problem(self.cluster) is None, str(cluster_problem(self.cluster)))
        _check(
            self.limit_songs is None or self.limit_songs >= 1,
            f"limit_songs must be >= 1, got {self.limit_songs}",
        )
        _check(min(self.train_hop_bars, self.eval_hop_bars) >= 1, "hop bars must be >= 1")


@dataclass(frozen=True)
class ModelConfig:
    """Which architectures (see :mod:`train.models`), what the teacher hears and what the
    students see."""

    #: The architectures' sizes (:data:`ARCHITECTURES`; the ``shipped`` run preset uses
    #: ``fast``'s).
    preset: str = "fast"
    #: Mel frames the teacher sees: crop or pad at the end (the paper pads to 528). 172 frames
    #: = 4 s = two bars of 4/4 at 120 BPM; slower windows are cropped (at a random offset in
    #: training), which the fast teacher's pooling over time does not mind.
    teacher_frames: int = 172
    #: The input contract of the students: 1, the paper's roll of the part alone; 2, what a
    #: DAW sends (``live.inputs``: onsets, velocity, the ensemble, the drums) and a history;
    #: 3, contract 2 and the part's controllers (``live.controls``: pedal, bends, modulation,
    #: expression as eight rows of the drums plane; the notes store's contract-3 view). The
    #: settings below marked "Contract 2" hold for contract 3 alike.
    contract: int = 2
    #: Contract 2: the channels the students use (``live.inputs.CHANNELS_V2`` order).
    inputs: tuple[int, ...] = (0, 1, 2, 3, 4)
    #: Contract 2: the size of the state a student carries from window to window; 0 = none.
    state: int = 64
    #: Contract 2: the window encoder, ``steps`` (a dense embedding of each step, then
    #: convolutions over time; see train.models.StepCNN), ``stream`` (a pitch CNN on each
    #: step, then convolutions over time: train.models.StreamCNN, which the daemon runs step
    #: by step, live.stream) or ``cnn`` (the roll CNN over the channels). ``steps`` and
    #: ``stream`` meet the live budget of a bar line of 16 channels on one CPU thread, where
    #: ``cnn`` misses it (docs/results.md).
    encoder: str = "steps"
    #: Contract 2: the window encoder's widths (step embedding, convolutions, embedding) times
    #: this; 1 = the preset's.
    scale: int = since(1)
    #: Contract 2: how many convolutions over the steps (k=3 each) the ``steps`` or
    #: ``stream`` encoder stacks before pooling over time: ``d`` of them hear ``2 d + 1``
    #: steps (a rhythm over that span); 1 = the preset's.
    depth: int = since(1)
    #: Contract 2: give the student the floor's hand statistics of each window beside its
    #: embedding (train.stats; the window answer and the history read both). Off by default;
    #: a model with it off is described, and fingerprinted, as before the option existed.
    stats: bool = since(False)
    #: Contract 2: the ensemble as structure: each part's window embedding attends to those
    #: of the parts heard in the same window (train.models.ChannelAttention; the song's other
    #: channels at a bar line), before the window answer and the history read it.
    attend: bool = since(False)

    def __post_init__(self) -> None:
        _check(
            self.preset in ARCHITECTURES,
            f"unknown model preset {self.preset!r}: choose one of {', '.join(ARCHITECTURES)}",
        )
        _check(
            self.teacher_frames >= 32, f"teacher_frames must be >= 32, got {self.teacher_frames}"
        )
        _check(
            self.contract in CONTRACTS,
            f"contract is one of {', '.join(map(str, CONTRACTS))}, got {self.contract}",
        )
        _check(
            self.contract == 1 or self.preset != "paper",
            "the paper's students are Table 1's: contract 1 (model.contract=1)",
        )
        _check(
            len(self.inputs) > 0 and self.inputs[0] == 0 and set(self.inputs) <= set(range(5)),
            "inputs are contract-2 channels among 0-4, the first 0 (the part's own notes)",
        )
        _check(self.state >= 0, f"state must be >= 0, got {self.state}")
        _check(
            self.encoder in ("cnn", "steps", "stream"),
            f"encoder is cnn, steps or stream, got {self.encoder!r}",
        )
        _check(1 <= self.scale <= 8, f"scale must be 1 to 8, got {self.scale}")
        _check(1 <= self.depth <= 4, f"depth must be 1 to 4, got {self.depth}")
        _check(
            self.depth == 1 or self.encoder in ("steps", "stream"),
            "model.depth stacks convolutions over the steps: it needs model.encoder=steps or "
            "stream",
        )
        _check(
            not self.stats or self.contract != 1,
            "model.stats reads the contract-2 channels: it needs model.contract=2 or 3",
        )
        _check(
            not self.attend or self.contract != 1,
            "model.attend relates the parts of a song: it needs model.contract=2 or 3",
        )


@dataclass(frozen=True)
class OptimConfig:
    """One model's training: AdamW, one-cycle schedule, class-balanced epochs, early stopping
    on validation macro-F1 (see :mod:`train.loop`)."""

    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 4  # epochs without a better validation macro-F1 before stopping
    #: Windows drawn per epoch (class-balanced, with replacement); 0 = the train split's size.
    samples_per_epoch: int = 0
    label_smoothing: float = 0.0
    #: Validate and keep an exponential moving average of the weights with this decay per
    #: step (0.995: about the last 200 steps); 0 = the raw weights.
    ema: float = 0.0
    #: Students with a state learn on chunks of this many successive windows of a part
    #: (``batch_size`` and ``samples_per_epoch`` still count windows).
    sequence: int = 8
    #: After training, fit per-class offsets on the logits for validation macro-F1 and add
    #: them to the answer layers' biases (:mod:`train.calibrate`; contract-2 and 3 students).
    calibrate: bool = since(False)

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _check(self.patience >= 1, f"patience must be >= 1, got {self.patience}")
        _check(self.samples_per_epoch >= 0, "samples_per_epoch must be >= 0 (0: the split's size)")
        _check(0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)")
        _check(0 <= self.ema < 1, "ema is a decay per step, in [0, 1) (0: off)")
        _check(self.sequence >= 1, f"sequence must be >= 1, got {self.sequence}")


@dataclass(frozen=True)
class DistillConfig:
    """KDIC: ``loss = (1 - alpha) * T^2 * KL(teacher_T || student_T) + alpha * CE``.

    ``alpha = 0`` is the paper's setting (soft targets only), and the best measured here (with
    T = 2; docs/results.md).
    """

    temperature: float = 2.0
    alpha: float = 0.0
    #: Whom KDIC learns from: ``audio``, the paper's teacher (a CNN on the part's rendered
    #: audio), or ``floor``, the floor's gradient boosting on hand statistics of the same
    #: notes, answering for training windows it was not fitted on (contracts 2 and 3).
    teacher: str = since("audio")

    def __post_init__(self) -> None:
        _check(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        _check(
            self.teacher in ("audio", "floor"),
            f"distill.teacher is audio or floor, got {self.teacher!r}",
        )
        _check(0 <= self.alpha <= 1, f"alpha must be in [0, 1], got {self.alpha}")


def _fast_teacher() -> OptimConfig:
    return OptimConfig(epochs=6, lr=2e-3, samples_per_epoch=12_800, patience=3, label_smoothing=0.1)


def _fast_student() -> OptimConfig:
    # The moving average of the weights: the raw weights' validation F1 moves from epoch to
    # epoch several times more than the average's, so early stopping picks a model, not a
    # lucky epoch (docs/results.md).
    return OptimConfig(epochs=20, lr=3e-3, samples_per_epoch=16_384, patience=6, ema=0.995)


@dataclass(frozen=True)
class RunConfig:
    """Everything ``kdtrain all`` needs; ``RUN/config.json`` is this, resolved. The defaults
    are the ``fast`` preset."""

    run: Path = Path("runs/demo")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: OptimConfig = field(default_factory=_fast_teacher)
    student: OptimConfig = field(default_factory=_fast_student)
    distill: DistillConfig = field(default_factory=DistillConfig)
    seed: int = 0
    #: Train every model on this share of the train split's songs (a stable hash of the song
    #: picks them, so a smaller share is a subset of a larger one): a learning curve.
    #: Validation and test stay whole. 1 = all.
    train_fraction: float = 1.0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    #: How windows are split (``train.splits``): song (honest), window (each window at
    #: random) or slakh-orig (Slakh2100's split with its duplicates; emulated on a collection).
    split: str = "song"
    #: ``slakh-orig`` on a collection: the share of the test songs that is also in train.
    split_duplicates: float = 0.25

    def __post_init__(self) -> None:
        _check(0 < self.train_fraction <= 1, "train_fraction is a share of the songs, in (0, 1]")
        _check(
            self.split in SPLITS,
            f"split is one of {', '.join(SPLITS)}, got {self.split!r}",
        )
        _check(0 <= self.split_duplicates <= 1, "split_duplicates is a share, in [0, 1]")
        _check(not self.teacher.calibrate, "calibrate is for the students (student.calibrate)")
        _check(
            self.distill.teacher == "audio" or self.model.contract != 1,
            "distill.teacher=floor teaches from contract-2 statistics: it needs model.contract=2 "
            "or 3",
        )
        _check(
            not self.student.calibrate or self.model.contract != 1,
            "student.calibrate fits the answers of contract-2 and 3 students: it needs "
            "model.contract=2 or 3",
        )
        _check(
            self.device.split(":")[0] in DEVICES,
            f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )


def _paper() -> RunConfig:
    """Table 1's models; the paper gives no schedule, so these are ours (a GPU is advisable
    for the teacher). Soft targets only, as the paper distils."""
    return RunConfig(
        model=ModelConfig(preset="paper", teacher_frames=528, contract=1),
        teacher=OptimConfig(epochs=10, batch_size=32, lr=3e-4, label_smoothing=0.1),
        student=OptimConfig(epochs=20, batch_size=128, lr=1e-3),
    )


def _shipped() -> RunConfig:
    """The recipe of the bundle kdlive ships (docs/training.md, docs/results.md): the fast
    preset's models, contract 3, the stream encoder attending over the channels, a schedule of
    about one pass over the training windows with weight decay, KDIC taught by the floor, the
    answers calibrated. Sized for the notes of a large corpus (``data.notes_midi``): hours on 2
    CPU cores, not the demo corpus's minutes."""
    fast = RunConfig()
    student = replace(
        fast.student,
        epochs=30,
        samples_per_epoch=131_072,
        patience=6,
        weight_decay=0.05,
        calibrate=True,
    )
    return replace(
        fast,
        model=replace(fast.model, contract=3, encoder="stream", attend=True),
        student=student,
        distill=replace(fast.distill, teacher="floor"),
    )


def _tiny() -> RunConfig:
    """Seconds on a CPU, for tests."""
    quick = OptimConfig(epochs=2, batch_size=16, lr=3e-3, samples_per_epoch=64, sequence=4)
    model = ModelConfig(preset="tiny", teacher_frames=64, state=8)
    return RunConfig(model=model, teacher=quick, student=quick)


#: ``fast`` (default): sized so that ``kdtrain all`` on the demo corpus finishes in about ten
#: minutes on 2 CPU cores. ``shipped``: the shipped bundle's recipe. ``paper``: Table 1.
#: ``tiny``: tests.
PRESETS: dict[str, Callable[[], RunConfig]] = {
    "fast": RunConfig,
    "shipped": _shipped,
    "paper": _paper,
    "tiny": _tiny,
}


def preset_config(name: str) -> RunConfig:
    """The preset ``name``, or :class:`ConfigError` naming the ones there are."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()


# ------------------------------------------------------------------------------ overrides


def override(config: RunConfig, assignments: Sequence[str]) -> RunConfig:
    """``config`` with each ``KEY=VALUE`` applied in order (``student.epochs=20``,
    ``distill.temperature=4``, ``data.midi=a,b``, ``data.limit_songs=none``). Keys are checked
    against the dataclasses (a typo names the closest keys), values are parsed by the field's
    type and checked by the dataclass."""
    for text in assignments:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {text!r}: write KEY=VALUE, e.g. student.epochs=20")
        try:
            config = _assign(config, key.split("."), value.strip(), key)
        except ConfigError as exc:
            raise ConfigError(f"--set {text}: {exc}") from None
    return config


def keys(config: Any, prefix: str = "") -> list[str]:
    """Every settable key of ``config``, dotted (``student.epochs``)."""
    out: list[str] = []
    for f in fields(config):
        value = getattr(config, f.name)
        name = prefix + f.name
        out += keys(value, name + ".") if is_dataclass(value) else [name]
    return out


def _assign(obj: Any, path: list[str], text: str, key: str) -> Any:
    names = {f.name for f in fields(obj)}
    name = path[0]
    if name not in names:
        prefix = key[: len(key) - len(".".join(path))]
        close = difflib.get_close_matches(key, keys(obj, prefix))
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"no setting {key!r}{hint}; `kdtrain config` lists them")
    current = getattr(obj, name)
    if is_dataclass(current):
        if len(path) == 1:
            raise ConfigError(
                f"{key!r} is a group: set one of {', '.join(keys(current, key + '.'))}"
            )
        value = _assign(current, path[1:], text, key)
    elif len(path) > 1:
        raise ConfigError(f"no setting {key!r}: {'.'.join(path[:1])} has no fields")
    else:
        value = _parse(text, typing.get_type_hints(type(obj))[name])
    return replace(obj, **{name: value})


def _parse(text: str, kind: Any) -> Any:
    """``text`` as a value of the annotation ``kind`` (int, float, str, bool, Path, their
    optional forms, and lists of them, comma-separated)."""
    args = typing.get_args(kind)
    if type(None) in args:
        if text.lower() in ("none", "null", ""):
            return None
        kind = next(a for a in args if a is not type(None))
    if typing.get_origin(kind) in (list, tuple):
        items = [_parse(part.strip(), args[0] if args else str) for part in text.split(",") if part]
        return items if typing.get_origin(kind) is list else tuple(items)
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"{text!r} is not true or false")
        return text.lower() in ("true", "1", "yes")
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not a valid {kind.__name__}") from None


# ---------------------------------------------------------------------- serialising, hashing


def _fingerprinted(config: Any) -> dict:
    """:func:`to_json` of ``config`` without the :func:`since` fields at their default."""
    out = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if f.metadata.get("omit_default") and value == f.default:
            continue
        out[f.name] = _fingerprinted(value) if is_dataclass(value) else value
    return json.loads(json.dumps(out, default=str))


def to_json(config: Any) -> dict:
    """A (nested) config dataclass as plain JSON types."""
    return json.loads(json.dumps(asdict(config), default=str))


def fingerprint(*parts: Any) -> str:
    """Stable short hash of what a stage is made from (config pieces, other fingerprints): a
    stage is current when the hash it was saved with matches. Fields made with :func:`since`
    count only when they differ from their default."""
    plain = [_fingerprinted(p) if dataclasses.is_dataclass(p) else p for p in parts]
    blob = json.dumps([FINGERPRINT_VERSION, *plain], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]
