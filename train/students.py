"""What the students learn from and how they are scored: one object per input contract.

The teacher always learns from the audio store's windows (:class:`Data`). The students learn
from the windows of their input contract (:mod:`live.contracts`), and everything that differs
between contracts is a method of one class here:

- :class:`RollStudents` (contract 1, the paper): the audio store's rolls, the teacher's own
  windows;
- :class:`NotesStudents` (contract 2): the notes-only store (``train.data.notes``), where they
  see onsets, velocity, the ensemble and the drums, carry a state from window to window
  (``train.history``, a second training phase) and are distilled where the teacher has heard
  the window;
- :class:`ControlStudents` (contract 3): the same, and the part's controllers in the drums
  plane's rows 0-7 (``live.controls``), the store's contract-3 view; their floor stays contract
  2's, so the two contracts' students are measured against the same floor.

Each owns its store, its windows (source, labels, split with the ``train_fraction`` share),
the teacher's logits on them, the validation subset, its floor (gradient boosting on hand
statistics of the contract's inputs: what a learned student must beat), the rolls the leakage
keys are made of, test evaluation, and the songs of windows. ``train.pipeline.Run``
asks :func:`students_for` once and never which contract it holds: another contract is one
more class here and an entry in :data:`STUDENTS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import torch

from live.contracts import V1, V2, V3, Contract
from train import calibrate, ensemble, floor, history
from train.baseline import note_features
from train.batches import NotesSource
from train.config import ModelConfig, RunConfig
from train.data.notes import NotesStore, audio_twins
from train.data.store import WindowStore
from train.errors import ConfigError, DataError
from train.evaluate import evaluate, five_class_accuracy
from train.models import KdModel, PartStudent, build_part_student, build_student
from train.splits import (
    roll_keys,
    song_hashes,
    sparse_roll_keys,
    split_windows,
    train_share,
    window_keys,
)
from train.steps import Index, LossFn, PredictFn, Source, StepFn, predictor

#: Notes students are validated on the windows of at most this many validation songs.
VALIDATION_SONGS = 200
#: The floor fits on at most this many training windows (gradient boosting is slow).
FLOOR_MAX_TRAIN = 200_000
#: ``distill.teacher=floor``: the floor answers for at most this many training windows it was
#: not fitted on (their features take about a quarter of a millisecond each to compute).
FLOOR_TEACHER_WINDOWS = 1_200_000
#: Probabilities ``[n, 8]`` by window.
Probs = npt.NDArray[np.float32]


class StoredAnswers:
    """A model's answers kept for some windows (the floor's, on the test windows): called
    with window indices, the window answers ``[len(idx), 8]``; :meth:`running`, the running
    answers, where the model has its own (:attr:`has_running`)."""

    def __init__(
        self, name: str, windows: Index, window: Probs, running: Probs | None = None
    ) -> None:
        self.name, self.windows, self.window, self._running = name, windows, window, running
        self._order = np.argsort(windows)

    def _rows(self, idx: Index) -> Index:
        order, windows = self._order, self.windows
        at = order[np.clip(np.searchsorted(windows[order], idx), 0, max(len(windows) - 1, 0))]
        if len(idx) and (len(windows) == 0 or np.any(windows[at] != idx)):
            raise DataError(
                f"the {self.name}'s answers are kept for the test windows only: fit it again "
                "to score other windows"
            )
        return at

    def __call__(self, idx: Index) -> Probs:
        return self.window[self._rows(idx)]

    @property
    def has_running(self) -> bool:
        return self._running is not None

    def running(self, idx: Index) -> Probs:
        """The running answers of the windows ``idx``."""
        if self._running is None:
            raise DataError(f"the {self.name} has no running answer of its own")
        return self._running[self._rows(idx)]


#: Something that scores windows: a model, stored answers, or a function of window indices
#: -> probabilities.
Scorer = KdModel | StoredAnswers | Callable[[Index], Probs]


@dataclass
class Windows:
    """A set of windows models learn from: their source, labels, and each split's indices."""

    source: Source
    labels: npt.NDArray[np.int64]
    split: dict[str, npt.NDArray[np.int64]]


@dataclass
class Data:
    """The run's audio store: the teacher's windows, and contract 1's students'."""

    store: WindowStore
    rolls: Windows  # the audio store's windows as rolls (source: RollSource)
    summary: dict  # what ``kdtrain data`` wrote (summary.json)
    fingerprint: str


@dataclass(frozen=True)
class Phase:
    """A further training phase of a student, after its window answer: its steps, how it is
    validated, and how many successive windows one example holds."""

    name: str
    step: StepFn
    predict: PredictFn
    windows_per_example: int


class Students(ABC):
    """The students' windows of one input contract, over a run's :class:`Data`."""

    #: The live contract a student of this kind reads.
    contract: ClassVar[Contract]
    #: Whether ``kdtrain data`` must build the notes-only store for it.
    needs_notes: ClassVar[bool] = False
    #: What the floor reads (the report's "input" column; in the floor's fingerprint).
    floor_input: ClassVar[str]

    def __init__(self, data: Data, cfg: RunConfig) -> None:
        self.data, self.cfg = data, cfg
        self.windows = self._windows()
        for name, hint in (
            ("train", "use more songs or a larger train_fraction"),
            ("validation", "use more songs"),
            ("test", "use more songs"),
        ):
            if len(self.windows.split[name]) == 0:
                raise DataError(f"the {name} split has no windows: {hint}")

    @staticmethod
    @abstractmethod
    def new_model(m: ModelConfig) -> KdModel:
        """An untrained student of this contract as the model config ``m`` describes it."""

    @abstractmethod
    def _windows(self) -> Windows:
        """The windows, split as ``cfg.split`` says, with a share ``cfg.train_fraction`` of
        the training songs."""

    @abstractmethod
    def teacher_targets(
        self, logits: npt.NDArray[np.float32], heard: npt.NDArray[np.bool_]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        """The teacher's logits ``[N_audio, 8]`` on the audio store's windows it has heard
        (``heard [N_audio]``), as ``(logits [N, 8], heard [N])`` by student window."""

    def validation(self) -> Index:
        """The windows a student is validated on."""
        return self.windows.split["validation"]

    @abstractmethod
    def floor(self, test: Index, *, seed: int) -> dict[str, Probs]:
        """The floor fitted on the training windows (at most :data:`FLOOR_MAX_TRAIN`), and its
        answers on the windows ``test``: ``{"window": [n, 8]}``, with ``"running": [n, 8]``
        where it gives a running answer of its own. Deterministic in ``seed``."""

    def roll_keys(self, idx: Index) -> npt.NDArray[np.uint64]:
        """The key of each window's own roll (:func:`train.splits.roll_keys`)."""
        out = np.zeros(len(idx), np.uint64)
        for s in range(0, len(idx), 65536):
            part = idx[s : s + 65536]
            out[s : s + len(part)] = self._roll_keys(part)
        return out

    @abstractmethod
    def _roll_keys(self, idx: Index) -> npt.NDArray[np.uint64]: ...

    @abstractmethod
    def evaluate(self, model: Scorer, idx: Index, device: torch.device) -> dict:
        """Metrics of a student (or any scorer of windows) on the windows ``idx``."""

    @abstractmethod
    def songs(self, idx: Index) -> np.ndarray:
        """The song of each window ``idx``."""

    def window_phase(self, model: KdModel, loss: LossFn, device: torch.device) -> Phase | None:
        """How a student learns its window answer with ``loss``, where it is not from windows
        drawn one by one (``train.steps.window_step``); None where it is."""
        return None

    def start_history(
        self, model: KdModel, device: torch.device, progress: ensemble.Progress | None = None
    ) -> Phase | None:
        """The phase that teaches a student its history, or None when it has none; a student
        that has one gets its window answer frozen for it. ``progress(done, total)`` hears
        about any long preparation."""
        return None

    def calibrate(self, model: KdModel, device: torch.device) -> dict:
        """Fit per-class offsets to the student's answers on validation (contracts 2 and 3)."""
        raise ConfigError(
            "student.calibrate is for contract-2 and 3 students (model.contract=2 or 3)"
        )

    def floor_targets(self, *, seed: int) -> tuple[Index, npt.NDArray[np.float32]]:
        """The floor's answers as a teacher's (contracts 2 and 3)."""
        raise ConfigError(
            "distill.teacher=floor is for contract-2 and 3 students (model.contract=2 or 3)"
        )

    @classmethod
    @abstractmethod
    def test_inputs(cls, data_dir: Path, limit: int) -> npt.NDArray[np.float32] | None:
        """At most ``limit`` test windows of the data folder ``data_dir`` (evenly spaced) as
        model inputs ``float32 [n, *contract.input_shape]``, or None if it has none."""


class RollStudents(Students):
    """Contract 1, the paper's: the audio store's rolls, the teacher's windows."""

    contract = V1
    floor_input = "note statistics of the roll"

    @staticmethod
    def new_model(m: ModelConfig) -> KdModel:
        return build_student(m.preset)

    def _windows(self) -> Windows:
        return self.data.rolls

    def teacher_targets(
        self, logits: npt.NDArray[np.float32], heard: npt.NDArray[np.bool_]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        return logits, heard

    def floor(self, test: Index, *, seed: int) -> dict[str, Probs]:
        """Contract 1's floor: :func:`train.baseline.note_features` of the roll (all the
        paper's contract has), on a random sample of the training windows; a window answer."""
        train = floor.sample(self.windows.split["train"], FLOOR_MAX_TRAIN, seed=seed)
        x = self._features(train)
        return {
            "window": floor.fit_answers(
                x, self.windows.labels[train], self._features(test), seed=seed
            )
        }

    def _features(self, idx: Index) -> npt.NDArray[np.float32]:
        """Note features of the windows ``idx``, in that order."""
        out = np.empty((len(idx), len(floor.ROLL_NAMES)), np.float32)
        store = self.data.store
        for s in range(0, len(idx), 65536):
            part = idx[s : s + 65536]
            order = np.argsort(part)
            rolls = store.rolls[part[order]]
            out[s : s + len(part)][order] = note_features(
                rolls, store.index["valid_steps"][part[order]]
            )
        return out

    def _roll_keys(self, idx: Index) -> npt.NDArray[np.uint64]:
        return roll_keys(self.data.store.rolls[idx])

    def evaluate(self, model: Scorer, idx: Index, device: torch.device) -> dict:
        labels = self.windows.labels[idx]
        if isinstance(model, torch.nn.Module):
            return evaluate(labels, predictor(self.windows.source, device)(model, idx))
        return evaluate(labels, model(idx))

    def songs(self, idx: Index) -> np.ndarray:
        return self.data.store.index["song"][idx]

    @classmethod
    def test_inputs(cls, data_dir: Path, limit: int) -> npt.NDArray[np.float32] | None:
        if not (data_dir / "windows" / "index.csv").exists():
            return None
        store = WindowStore(data_dir / "windows")
        test = spread(store.split("test"), limit)
        return store.rolls[test].astype(np.float32)[:, None] if len(test) else None


class NotesStudents(Students):
    """Contract 2: the notes-only store, with a history. Everything a student reads comes
    through :attr:`notes`, the store's view of this class's contract; the floor reads
    :attr:`floor_notes`, its contract-2 view (:class:`ControlStudents`)."""

    contract = V2
    needs_notes = True
    floor_input = "hand statistics of the inputs, running means"

    @classmethod
    def new_model(cls, m: ModelConfig) -> KdModel:
        return build_part_student(
            m.preset,
            inputs=m.inputs,
            state=m.state,
            encoder=m.encoder,
            scale=m.scale,
            depth=m.depth,
            stats=m.stats,
            attend=m.attend,
            controls=cls.contract.controls,
        )

    def __init__(self, data: Data, cfg: RunConfig) -> None:
        self.notes = NotesStore(Path(cfg.data.out) / "notes", contract=self.contract)
        #: The floor's view: the hand statistics are defined on contract 2's inputs.
        self.floor_notes = self.notes.view(V2)
        super().__init__(data, cfg)

    def _windows(self) -> Windows:
        notes, cfg = self.notes, self.cfg
        song = notes.index["song"]
        sha1 = np.array([s["sha1"] for s in notes.songs])[song]
        split = split_windows(
            cfg.split,
            notes.song_split[song],
            notes.song_key[song],  # versions of a song count as one
            window_keys(sha1, notes.index["part"], notes.index["bar"]),
            duplicates=cfg.split_duplicates,
        )
        split = train_share(split, sha1, cfg.train_fraction)
        return Windows(NotesSource(notes, cells=True), notes.labels, split)

    def teacher_targets(
        self, logits: npt.NDArray[np.float32], heard: npt.NDArray[np.bool_]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        """The teacher's logits where the notes window's twin in the audio store
        (:func:`train.data.notes.audio_twins`) is one it has heard, and never on a validation
        or test window."""
        twin = audio_twins(self.notes, self.data.store, self.cfg.data.slakh_root)
        heard_notes = (twin >= 0) & heard[np.maximum(twin, 0)]
        heard_notes[self.windows.split["validation"]] = False
        heard_notes[self.windows.split["test"]] = False
        return logits[np.maximum(twin, 0)] * heard_notes[:, None], heard_notes

    def validation(self) -> Index:
        """The validation windows of at most :data:`VALIDATION_SONGS` songs (whole songs, so
        whole parts: their running answers are causal)."""
        val = self.windows.split["validation"]
        songs = self.notes.index["song"][val]
        keep = np.unique(songs)
        keep = keep[np.argsort(song_hashes(keep))][:VALIDATION_SONGS]
        return val[np.isin(songs, keep)]

    def floor(self, test: Index, *, seed: int) -> dict[str, Probs]:
        """Contract 2's floor (:mod:`train.floor`): the window answer from the window's own
        hand statistics, the running answer from those and their running means over the part
        so far (over every training window before it), fitted on at most
        :data:`FLOOR_MAX_TRAIN` training windows drawn at random (:func:`train.floor.sample`)."""
        notes, every = self.floor_notes, self.windows.split["train"]
        train = floor.sample(every, FLOOR_MAX_TRAIN, seed=seed)
        x, x_test = floor_features(notes, every, train), floor_features(notes, test)
        y, own = self.windows.labels[train], len(floor.FEATURE_NAMES)
        return {
            "window": floor.fit_answers(x[:, :own], y, x_test[:, :own], seed=seed),
            "running": floor.fit_answers(x, y, x_test, seed=seed),
        }

    def floor_targets(self, *, seed: int) -> tuple[Index, npt.NDArray[np.float32]]:
        """The floor as a teacher (``distill.teacher=floor``): its window answer, fitted on
        at most :data:`FLOOR_MAX_TRAIN` training windows and at most half of them (with more
        than twice that many, the very fit of :meth:`floor`: the same windows and seed), on at
        most :data:`FLOOR_TEACHER_WINDOWS` other training windows, drawn at random (seed + 1).
        Returns ``(windows, log-probabilities [n, 8])``; never a window it was fitted on, nor
        a validation or test window."""
        notes, every = self.floor_notes, self.windows.split["train"]
        fitted = floor.sample(every, min(FLOOR_MAX_TRAIN, len(every) // 2), seed=seed)
        taught = floor.sample(np.setdiff1d(every, fitted), FLOOR_TEACHER_WINDOWS, seed=seed + 1)
        y = self.windows.labels[fitted]
        x, x_taught = own_features(notes, fitted), own_features(notes, taught)
        probs = floor.fit_answers(x, y, x_taught, seed=seed)
        return taught, np.log(np.clip(probs, 1e-6, 1.0))

    def _roll_keys(self, idx: Index) -> npt.NDArray[np.uint64]:
        rows, cells = self.notes.part_cells(idx)
        return sparse_roll_keys(rows, cells, len(idx))

    def evaluate(self, model: Scorer, idx: Index, device: torch.device) -> dict:
        return evaluate_windows(model, self.notes, idx, device)

    def songs(self, idx: Index) -> np.ndarray:
        return self.notes.index["song"][idx]

    def window_phase(self, model: KdModel, loss: LossFn, device: torch.device) -> Phase | None:
        """A student whose window embeddings attend to each other (``model.attend``) learns
        from whole groups (the parts of a song at one bar; :mod:`train.ensemble`): each
        class-balanced draw brings its group, every window of it scored, weighed so the
        classes count alike; validated on whole songs."""
        if not (isinstance(model, PartStudent) and model.context is not None):
            return None
        train, source, notes = self.windows.split["train"], self.windows.source, self.notes
        groups = ensemble.Groups(notes, train)
        weight, size = ensemble.class_weights(groups, train, notes.labels, seed=self.cfg.seed)
        step = ensemble.group_step(source, loss, groups, weight, device)

        def predict(model: torch.nn.Module, idx: Index) -> npt.NDArray[np.float32]:
            assert isinstance(model, PartStudent)
            return history.running_answers(model, source, notes, idx, device)[0]

        # A batch and an epoch still count windows: a draw brings ``size`` on average.
        return Phase("groups", step, predict, max(1, round(size)))

    def start_history(
        self, model: KdModel, device: torch.device, progress: ensemble.Progress | None = None
    ) -> Phase | None:
        """A student with a state learns its history after its window answer: the recurrent
        head over the frozen window embeddings, on chunks of a part's successive windows.
        Where they attend to each other, the embeddings of every training window are
        computed once, with their groups, and the history reads those."""
        if not (isinstance(model, PartStudent) and model.state_dim):
            return None
        model.freeze_window()
        source, notes, chunk = self.windows.source, self.notes, self.cfg.student.sequence

        def predict(model: torch.nn.Module, idx: Index) -> npt.NDArray[np.float32]:
            """The running answers (what the daemon's part answer says), for validation."""
            assert isinstance(model, PartStudent)
            return history.running_answers(model, source, notes, idx, device)[1]

        nxt = history.successors(notes)
        if model.context is None:
            step = history.history_step(source, nxt, chunk, device)
        else:
            train = self.windows.split["train"]
            cache = ensemble.attended_embeddings(
                model, source, notes, train, device, progress=progress
            ).cpu()
            row = np.full(len(notes), -1, np.int64)
            row[train] = np.arange(len(train))
            step = history.cached_history_step(cache, row, notes.labels, nxt, chunk, device)
        return Phase("history", step, predict, chunk)

    def calibrate(self, model: KdModel, device: torch.device) -> dict:
        """Fit and apply per-class offsets to the student's window and running answers
        (:mod:`train.calibrate`) on every validation window (whole parts, so the running
        answers are causal); returns, per answer, the offsets and validation macro-F1 before
        and after."""
        assert isinstance(model, PartStudent)
        idx = self.windows.split["validation"]
        if len(idx) == 0:
            raise DataError("student.calibrate needs validation windows; this split has none")
        window, running = history.running_answers(
            model, self.windows.source, self.notes, idx, device
        )
        y = self.windows.labels[idx]
        layers = {"window": model.window.classifier}
        answers = {"window": window}
        if model.state_dim:
            layers["running"], answers["running"] = model.part_head, running
        record = {}
        for answer, probs in answers.items():
            logp = np.log(np.clip(probs, 1e-12, 1.0))
            offsets = calibrate.fit_offsets(y, logp)
            calibrate.apply_offsets(layers[answer], offsets)
            record[answer] = {
                "offsets": [round(float(v), 3) for v in offsets],
                "before": calibrate.macro_f1(y, logp.argmax(1)),
                "after": calibrate.macro_f1(y, (logp + offsets).argmax(1)),
                "windows": len(idx),
            }
        return record

    @classmethod
    def test_inputs(cls, data_dir: Path, limit: int) -> npt.NDArray[np.float32] | None:
        if not (data_dir / "notes" / "meta.json").exists():
            return None
        notes = NotesStore(data_dir / "notes", contract=cls.contract)
        test = spread(notes.split("test"), limit)
        return notes.inputs(test).astype(np.float32) if len(test) else None


class ControlStudents(NotesStudents):
    """Contract 3: contract 2 and the part's controllers (``live.controls``), which the
    store's contract-3 view puts in the drums plane's rows 0-7. The floor is contract 2's
    (:attr:`NotesStudents.floor_notes`): its statistics know nothing of controllers, so a
    contract-3 student is measured against the same floor as a contract-2 one."""

    contract = V3
    floor_input = "hand statistics of the contract-2 inputs, running means"


#: The students of each input contract, by version.
STUDENTS: dict[int, type[Students]] = {
    cls.contract.version: cls for cls in (RollStudents, NotesStudents, ControlStudents)
}


def students_for(version: int) -> type[Students]:
    """The students of contract ``version`` (a config's ``model.contract``)."""
    if version not in STUDENTS:
        raise ConfigError(
            f"no students for input contract {version!r}: model.contract is one of "
            f"{', '.join(map(str, STUDENTS))}"
        )
    return STUDENTS[version]


def own_features(notes: NotesStore, idx: Index, block: int = 50_000) -> npt.NDArray[np.float32]:
    """The floor's statistics of each window ``idx`` alone (:data:`train.floor.FEATURE_NAMES`,
    no running means), in ``idx``'s order, ``block`` windows at a time."""
    out = np.empty((len(idx), len(floor.FEATURE_NAMES)), np.float32)
    for s in range(0, len(idx), block):
        part = idx[s : s + block]
        out[s : s + len(part)] = floor.input_features(
            notes.inputs(part), notes.index["valid_steps"][part]
        )
    return out


def floor_features(
    notes: NotesStore, idx: Index, keep: Index | None = None, block: int = 131072
) -> npt.NDArray[np.float32]:
    """The floor's features (:data:`train.floor.RUNNING_NAMES`: the window's own statistics,
    their running means, the windows heard) of the windows ``keep`` (default: all of ``idx``),
    in ``keep``'s order, the running means over the windows ``idx`` (whole parts; ``keep`` a
    subset of them). Computed a block of whole songs at a time (about ``block`` windows), so
    memory follows ``keep``, not ``idx``."""
    idx = np.sort(idx)
    keep = idx if keep is None else np.asarray(keep)
    out = np.empty((len(keep), len(floor.RUNNING_NAMES)), np.float32)
    song = notes.index["song"][idx]
    starts = np.r_[0, np.flatnonzero(song[1:] != song[:-1]) + 1]  # each song's first window
    at = starts[np.searchsorted(starts, np.arange(0, len(idx), block), side="right") - 1]
    bounds = np.unique(np.r_[at, len(idx)]).tolist()  # blocks of whole songs
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        part = idx[lo:hi]
        want = np.flatnonzero(np.isin(keep, part))
        if len(want):
            own = np.concatenate(
                [
                    floor.input_features(notes.inputs(w), notes.index["valid_steps"][w])
                    for w in np.array_split(part, max(1, len(part) // 8192))
                ]
            )
            song_, bar_, part_ = (notes.index[k][part] for k in ("song", "bar", "part"))
            feats = floor.running_means(own, song_, part_, bar_)
            out[want] = feats[np.searchsorted(part, keep[want])]
    return out


def spread(idx: Index, limit: int) -> Index:
    """At most ``limit`` of ``idx``, evenly spaced, sorted."""
    if len(idx) == 0:
        return idx
    return np.sort(idx[np.linspace(0, len(idx) - 1, min(limit, len(idx))).astype(np.int64)])


# ----------------------------------------------------------------------------- evaluation


def evaluate_windows(model: Scorer, notes: NotesStore, idx: Index, device: torch.device) -> dict:
    """Metrics of a contract-2 or 3 student (or any scorer of windows) on the windows ``idx`` of
    a notes store (whole parts; the store's view is the student's contract): the window
    answer's (:func:`train.evaluate.evaluate`), the running answer's (``"running"``) and each
    part's after 2, 4, 8 and 16 bars (``"parts"``; without a state, the running answer is the
    mean of the window answers). A student with a state, or stored answers with a running
    answer of their own (the floor's), is also scored as if it had none (``"mean"``: its window
    answers averaged), which measures what the history adds over averaging."""
    source = NotesSource(notes, cells=True)
    mean = None
    if isinstance(model, PartStudent):
        window, running = history.running_answers(model, source, notes, idx, device)
        if model.state_dim:
            mean = history.running_mean(notes, idx, window)
    elif isinstance(model, StoredAnswers) and model.has_running:
        window, running = model(idx), model.running(idx)
        mean = history.running_mean(notes, idx, window)
    else:
        if isinstance(model, torch.nn.Module):
            window = predictor(source, device)(model, idx)
        else:
            window = model(idx)
        running = history.running_mean(notes, idx, window)
    y = notes.labels[idx]
    result = evaluate(y, window)
    result.update(_running(notes, idx, y, running))
    if mean is not None:
        result["mean"] = _running(notes, idx, y, mean)
    return result


def _running(
    notes: NotesStore, idx: Index, y: npt.NDArray[np.int64], running: npt.NDArray[np.float32]
) -> dict:
    """The running answer's metrics, and each part's after :data:`history.BARS_HEARD` bars."""
    result: dict = {"running": _brief(evaluate(y, running)), "parts": {}}
    result["running"]["five_classes"] = five_class_accuracy(y, running)
    for bars in history.BARS_HEARD:
        labels, probs = history.answers_after(notes, idx, running, bars)
        if len(labels):
            result["parts"][str(bars)] = _brief(evaluate(labels, probs))
    return result


def _brief(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("macro_f1", "accuracy", "per_class", "n")}
