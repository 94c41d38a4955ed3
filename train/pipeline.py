"""`kdtrain all`: data -> teacher (AIC) -> teacher outputs -> NIC -> KDIC -> floor ->
evaluation -> report.

Every stage saves one file into the run folder, stamped with the fingerprint of what it was
made from, and is skipped when that file is current: run the same command again and finished
stages are kept, an interrupted one resumes from its checkpoint, and a changed setting redoes
only the stages that depend on it. :func:`fingerprints` states that dependency graph in one
place. (``kdtrain all`` then exports KDIC as a bundle for ``kdlive``: ``export`` does that, on
top of this module; see ``kdapp.kdtrain``.)

The teacher always learns from the audio store. The students learn from the windows of their
input contract, and everything that differs between contracts (their store, windows and
split, the teacher's logits on them, validation, evaluation, a history phase, the floor) is
asked of one object, :mod:`train.students`: ``Run`` never asks which contract it holds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist

from live.contract import CONTRACT_VERSION
from live.taxonomy import CLASSES
from train import checkpoints
from train.batches import MelSource, RollSource, labels_of
from train.config import RunConfig, fingerprint, to_json
from train.data import slakh
from train.data.build import build
from train.data.store import WindowStore
from train.errors import CheckpointError, DataError
from train.evaluate import evaluate, soft_targets
from train.files import atomic_write
from train.loop import LoopState, Task, fit
from train.models import KdModel, build_teacher, describe
from train.progress import Reporter, Silent
from train.splits import LookupTable, leakage, split_windows, train_share, window_keys
from train.steps import Index, LossFn, PredictFn, StepFn, ce_loss, kd_loss, predictor, window_step
from train.students import (
    FLOOR_TEACHER_WINDOWS,
    Data,
    Phase,
    Scorer,
    StoredAnswers,
    Students,
    Windows,
    students_for,
)

Answers = Callable[[Index], npt.NDArray[np.float32]]
#: Bumped when the floor's features or fit change: its stage file is then refitted.
FLOOR_VERSION = 2


def fingerprints(cfg: RunConfig, data_fp: str) -> dict[str, str]:
    """Each stage's file and what it depends on. The architecture's recipe is in it, so a
    changed model class retrains; NIC does not depend on the teacher, so another teacher keeps
    it; KDIC depends on both."""
    teacher = fingerprint(
        "teacher",
        data_fp,
        cfg.model.preset,
        cfg.model.teacher_frames,
        describe(new_teacher(cfg)),
        cfg.teacher,
        cfg.seed,
    )
    nic = fingerprint("nic", data_fp, describe(new_student(cfg)), cfg.student, cfg.seed)
    floor = fingerprint(
        "floor",
        data_fp,
        cfg.model.contract,
        students_for(cfg.model.contract).floor_input,
        FLOOR_VERSION,
        cfg.seed,
    )
    floor_outputs = fingerprint("floor outputs", floor, FLOOR_TEACHER_WINDOWS)
    taught_by = floor_outputs if cfg.distill.teacher == "floor" else teacher
    return {
        "teacher.pt": teacher,
        "teacher_outputs.pt": fingerprint("teacher outputs", teacher),
        "nic.pt": nic,
        "kdic.pt": fingerprint("kdic", nic, taught_by, cfg.distill),
        "floor.pt": floor,
        "floor_outputs.pt": floor_outputs,
    }


def new_teacher(cfg: RunConfig) -> KdModel:
    """An untrained teacher as the config describes it, its weights drawn from the run's seed."""
    with _seeded(cfg.seed):
        return build_teacher(cfg.model.preset, frames=cfg.model.teacher_frames)


def new_student(cfg: RunConfig) -> KdModel:
    """An untrained student as the config describes it, its weights drawn from the run's seed."""
    with _seeded(cfg.seed):
        return students_for(cfg.model.contract).new_model(cfg.model)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """torch's random numbers drawn from ``seed`` inside, the global generator untouched: a
    model's first weights are a function of the seed alone, not of whatever drew random
    numbers before in the process (the first model of a process used to start from torch's
    unseeded generator, so two runs of one command trained different teachers)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def run_all(cfg: RunConfig, report: Reporter | None = None) -> dict:
    """The whole pipeline; returns ``report.json``'s content (empty on ranks other than 0)."""
    from train.report import write_report

    _init_distributed()
    run = Run(cfg, report or Silent())
    teacher = run.teacher()
    if cfg.distill.teacher == "floor":  # KDIC learns from the floor; the teacher is scored
        logits, taught = run.floor_logits()
    else:
        logits, taught = run.teacher_logits(teacher)
    nic = run.student("nic", ce_loss(cfg.student))
    kdic = run.student("kdic", kd_loss(logits, cfg.distill, run.device, taught))
    floor = run.floor()
    if run.rank != 0:
        return {}
    leak, lookup = run.leakage_and_lookup()
    students = run.students.windows
    audio_test, test = run.data.rolls.split["test"], students.split["test"]
    run.report.say("evaluate", f"{len(test)} test windows")
    mels = predictor(run.mels(train=False), run.device)
    models = {
        "AIC": evaluate(run.data.rolls.labels[audio_test], mels(teacher, audio_test)),
        "NIC": run.evaluate(nic),
        "KDIC": run.evaluate(kdic),
        "floor": run.evaluate(floor) | {"input": run.students.floor_input},
        "lookup": run.evaluate(lookup),
    }
    train = students.split["train"]
    train = train[taught[train]]  # the windows the teacher has heard
    confusions = {name: models[name]["confusion"] for name in ("NIC", "floor")}
    targets = None
    if len(train):
        targets = soft_targets(
            logits[train], students.labels[train], cfg.distill.temperature, confusions
        )
    write_report(
        run.dir,
        models=models,
        data=run.data.summary | run.used() | {"split": run.split_info(leak)},
        config=to_json(cfg),
        histories=run.histories,
        teacher_targets=targets,
    )
    return json.loads((run.dir / "report.json").read_text())


class Run:
    """The stages of one ``kdtrain all``, over its data, config and run folder. ``data``:
    the run's :class:`Data` when the caller has it (experiments that train students from the
    notes store alone), else built or opened as the config says (:func:`load_data`)."""

    def __init__(self, cfg: RunConfig, report: Reporter, data: Data | None = None) -> None:
        self.cfg, self.report = cfg, report
        self.dir = Path(cfg.run)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.device = _device(cfg.device)
        self.rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if self.rank == 0:
            atomic_write(self.dir / "config.json", json.dumps(to_json(cfg), indent=1) + "\n")
        self.data = data if data is not None else load_data(cfg, report, self.rank)
        self.students: Students = students_for(cfg.model.contract)(self.data, cfg)
        self.fingerprints = fingerprints(cfg, self.data.fingerprint)
        self.histories: dict[str, list[dict]] = {}

    def mels(self, *, train: bool) -> MelSource:
        frames = self.cfg.model.teacher_frames
        store, labels = self.data.store, self.data.rolls.labels
        return MelSource(store, labels, frames=frames, random_crop=train)

    def current_or_build(self, name: str, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The stage file ``name`` if it exists and is current, else ``build()``'s result,
        saved (atomically, by rank 0) with its fingerprint. A stage file that cannot be loaded
        safely (an older kdlive's baseline.pt held a pickled model) is rebuilt."""
        path, fp = self.dir / name, self.fingerprints[name]
        if path.exists():
            try:
                blob = checkpoints.load(path)
            except CheckpointError:
                self.report.say(path.stem, f"{path} holds a pickled object: rebuilding it")
                blob = {}
            if blob.get("fingerprint") == fp:
                self.report.say(path.stem, f"current: {path}")
                return blob
        blob = build() | {"fingerprint": fp}
        if self.rank == 0:
            checkpoints.save(blob, path)
        _barrier()
        return blob

    # ------------------------------------------------------------------------- models

    def teacher(self) -> KdModel:
        """AIC: the teacher on log-mel, cross-entropy (label smoothing from the config)."""
        audio = Windows(self.mels(train=True), self.data.rolls.labels, self.data.rolls.split)
        step = window_step(audio.source, ce_loss(self.cfg.teacher), self.device)
        predict = predictor(self.mels(train=False), self.device)

        def train() -> dict[str, Any]:
            model, state = self._fit(new_teacher(self.cfg), "teacher", audio, step, predict)
            self._unlink_checkpoints("teacher")
            return checkpoints.checkpoint(
                model,
                role="teacher",
                config=to_json(self.cfg),
                history=state.history,
                best_val_macro_f1=state.best_f1,
            )

        return self._model("teacher", self.current_or_build("teacher.pt", train))

    def teacher_logits(
        self, teacher: KdModel
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        """The teacher's logits on the students' training windows that it has heard, computed
        once: ``(logits [N, 8], heard [N])`` by student window
        (:meth:`train.students.Students.teacher_targets`)."""

        def infer() -> dict[str, Any]:
            self.report.say("teacher outputs", "on every training window")
            train = self.data.rolls.split["train"]
            logits = np.zeros((len(self.data.store), len(CLASSES)), np.float32)
            source = self.mels(train=False)
            with torch.no_grad():
                for s in range(0, len(train), 256):
                    x, _ = source(train[s : s + 256])
                    logits[train[s : s + 256]] = teacher(x.to(self.device)).float().cpu().numpy()
            return {"logits": logits}

        logits = self.current_or_build("teacher_outputs.pt", infer)["logits"]
        heard = np.zeros(len(self.data.store), bool)
        heard[self.data.rolls.split["train"]] = True
        return self.students.teacher_targets(logits, heard)

    def floor_logits(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        """The floor as a teacher (``distill.teacher=floor``): its log-probabilities on the
        training windows it answers for, computed once, as ``(logits [N, 8], taught [N])`` by
        student window (:meth:`train.students.Students.floor_targets`)."""

        def infer() -> dict[str, Any]:
            self.report.say("floor outputs", "the floor's answers on training windows")
            taught, logp = self.students.floor_targets(seed=self.cfg.seed)
            return {"windows": taught, "logits": logp}

        blob = self.current_or_build("floor_outputs.pt", infer)
        n = len(self.students.windows.labels)
        logits = np.zeros((n, len(CLASSES)), np.float32)
        taught = np.zeros(n, bool)
        logits[blob["windows"]], taught[blob["windows"]] = blob["logits"], True
        return logits, taught

    def student(self, name: str, loss: LossFn) -> KdModel:
        """NIC (cross-entropy) or KDIC (distillation): the student on its contract's windows.
        Its window answer first; then, for a student with a history, the phase that teaches it
        (:meth:`train.students.Students.start_history`)."""
        windows, device = self.students.windows, self.device

        def train() -> dict[str, Any]:
            model = new_student(self.cfg)
            first = self.students.window_phase(model, loss, device)
            if first is None:
                step = window_step(windows.source, loss, device)
                predict = predictor(windows.source, device)
                model, state = self._fit(model, name, windows, step, predict)
            else:
                model, state = self._fit(
                    model, name, windows, first.step, first.predict, phase=first
                )
            histories = state.history
            phase = self.students.start_history(
                model,
                device,
                lambda done, total: self.report.progress(
                    f"{name.upper()} history embeddings", done, total
                ),
            )
            if phase is not None:
                model, state = self._fit(
                    model, name, windows, phase.step, phase.predict, phase=phase
                )
                histories = histories + [r | {"phase": phase.name} for r in state.history]
            extra = {}
            if self.cfg.student.calibrate:
                extra["calibration"] = self.students.calibrate(model, self.device)
                self.report.say(name.upper(), _calibration_line(extra["calibration"]))
            self._unlink_checkpoints(name)
            return checkpoints.checkpoint(
                model,
                role="student",
                config=to_json(self.cfg),
                history=histories,
                best_val_macro_f1=state.best_f1,
                **extra,
            )

        return self._model(name, self.current_or_build(f"{name}.pt", train))

    def _model(self, name: str, blob: dict[str, Any]) -> KdModel:
        self.histories[name.upper() if name != "teacher" else "AIC"] = blob.get("history", [])
        return checkpoints.model_from_checkpoint(blob).to(self.device)

    def _fit(
        self,
        model: KdModel,
        name: str,
        windows: Windows,
        step: StepFn,
        predict: PredictFn,
        *,
        phase: Phase | None = None,
    ) -> tuple[KdModel, LoopState]:
        """Train ``model`` (resumable: its state file is named after the stage's fingerprint
        and ``phase``); the checkpoint files are removed by :meth:`_unlink_checkpoints`."""
        cfg, role = self.cfg, "teacher" if name == "teacher" else "student"
        optim = cfg.teacher if role == "teacher" else cfg.student
        if phase is not None:
            # Examples of several windows: the batch and the epoch still count windows.
            per = phase.windows_per_example
            optim = replace(
                optim,
                batch_size=max(1, optim.batch_size // per),
                samples_per_epoch=optim.samples_per_epoch // per,
            )
        val = windows.split["validation"] if role == "teacher" else self.students.validation()
        label = "AIC" if role == "teacher" else name.upper()
        suffix = "" if phase is None else phase.name
        task = Task(
            name=f"{label} {suffix}".strip(),
            step=step,
            predict=predict,
            train_labels=windows.labels[windows.split["train"]],
            train_index=windows.split["train"],
            val_index=val,
            val_labels=windows.labels[val],
        )
        self.report.say(task.name, "training")
        torch.manual_seed(cfg.seed)
        # The fingerprint is in the name: an interrupted run resumes only the same stage.
        fp = self.fingerprints[name + ".pt"]
        state_file = self.dir / "checkpoints" / f"{name}.{fp}{'.' + suffix if suffix else ''}.pt"
        return fit(
            model.to(self.device),
            task,
            optim,
            seed=cfg.seed,
            checkpoint=state_file,
            report=self.report,
        )

    def _unlink_checkpoints(self, name: str) -> None:
        if self.rank == 0:
            for path in (self.dir / "checkpoints").glob(f"{name}.*.pt"):
                path.unlink(missing_ok=True)

    def floor(self) -> StoredAnswers:
        """The floor: gradient boosting on hand statistics of the students' inputs, fitted as
        the contract's students say (:meth:`train.students.Students.floor`); its answers on
        the test windows, window and (contract 2) running.

        ``floor.pt`` keeps those probabilities, not the fitted models: a scikit-learn model
        can only be saved by pickle, which loading a checkpoint safely refuses
        (:func:`train.checkpoints.load`). The fit is deterministic in the seed: to score the
        floor on other windows, fit it again."""

        def fit() -> dict[str, Any]:
            self.report.say("floor", f"gradient boosting on {self.students.floor_input}")
            test = self.students.windows.split["test"]
            return {"test": test} | self.students.floor(test, seed=self.cfg.seed)

        blob = self.current_or_build("floor.pt", fit)
        return StoredAnswers("floor", blob["test"], blob["window"], blob.get("running"))

    # ------------------------------------------------------------------- what leaks

    def leakage_and_lookup(self) -> tuple[dict, Answers]:
        """What the split leaks (:func:`train.splits.leakage`), and the lookup table of the
        training rolls as a scorer of student windows."""
        students = self.students
        train, test = students.windows.split["train"], students.windows.split["test"]
        labels = students.windows.labels
        keys = students.roll_keys(train)
        leak = leakage(keys, labels[train], students.roll_keys(test), labels[test])
        table = LookupTable.fit(keys, labels[train])
        return leak, lambda idx: table(students.roll_keys(idx))

    def split_info(self, leak: dict) -> dict:
        """The split, for the report: its kind, the emulated duplicates, its leakage."""
        cfg = self.cfg
        emulated = cfg.split == "slakh-orig" and cfg.data.slakh is None
        info: dict[str, Any] = {"kind": cfg.split}
        if emulated:
            info["duplicates"] = cfg.split_duplicates
        return info | {"leakage": leak}

    # --------------------------------------------------------------------- evaluation

    def evaluate(self, model: Scorer) -> dict:
        """A student's (or the floor's) test metrics
        (:meth:`train.students.Students.evaluate`)."""
        return self.students.evaluate(model, self.students.windows.split["test"], self.device)

    def used(self) -> dict:
        """What the models were trained on, when it is less than what was built."""
        if self.cfg.train_fraction == 1:
            return {}
        train = self.students.windows.split["train"]
        return {
            "train_fraction": self.cfg.train_fraction,
            "train_songs_used": len(np.unique(self.students.songs(train))),
            "train_windows_used": len(train),
        }


# --------------------------------------------------------------------------------- data


def _calibration_line(record: dict) -> str:
    """What calibration did, in a line: validation macro-F1 before and after, per answer."""
    return "calibrated: " + ", ".join(
        f"{answer} {r['before']:.3f} -> {r['after']:.3f}" for answer, r in record.items()
    )


def load_data(cfg: RunConfig, report: Reporter, rank: int = 0) -> Data:
    """Build (rank 0) or open the run's audio store (and the notes-only store, for students
    that need it)."""
    out = Path(cfg.data.out)
    if rank == 0:
        report.say("data", f"building windows in {out}")
        notes = students_for(cfg.model.contract).needs_notes
        summary = build(cfg.data, report.progress, notes=notes)
    _barrier()
    if rank != 0:
        summary = json.loads((out / "summary.json").read_text())
    store = WindowStore(out / "windows")
    labels = labels_of(store)
    # A song is its file's hash where the layout records it (a rendered collection), so a
    # share of the songs is the same songs for the teacher and for the notes store.
    uuid = {track: m.get("UUID", track) for track, m in slakh.metadata(cfg.data.slakh_root).items()}
    tracks = store.index["song"]
    songs = np.array([uuid.get(t, t) for t in tracks])
    side = store.index["split"]
    shipped = cfg.data.slakh is not None
    if shipped and cfg.split == "slakh-orig":  # the redux layout renumbers nothing: undo it
        side = np.array([slakh.original_split(slakh.track_number(Path(t))) for t in tracks])
    split = split_windows(
        cfg.split,
        side,
        songs,
        window_keys(songs, store.index["stem"], store.index["bar"]),
        shipped=shipped,
        duplicates=cfg.split_duplicates,
    )
    rolls = Windows(
        RollSource(store, labels), labels, train_share(split, songs, cfg.train_fraction)
    )
    how = () if cfg.split == "song" and not shipped else (cfg.split, cfg.split_duplicates)
    fp = fingerprint(
        "data", summary, CONTRACT_VERSION, cfg.model.contract, cfg.train_fraction, *how
    )
    return Data(store, rolls, summary, fp)


# ------------------------------------------------------------------------------ plumbing


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DataError("device cuda: no CUDA GPU visible to PyTorch; use cpu")
    return torch.device(name)


def _init_distributed() -> None:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
