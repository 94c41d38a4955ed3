"""`kdtrain all`: data -> teacher (AIC) -> teacher outputs -> NIC -> KDIC -> baseline ->
evaluation -> report.

Every stage saves one file into the run folder, stamped with the fingerprint of what it was
made from, and is skipped when that file is current: run the same command again and finished
stages are kept, an interrupted one resumes from its checkpoint, and a changed setting redoes
only the stages that depend on it. :func:`fingerprints` states that dependency graph in one
place. (``kdtrain all`` then exports KDIC as a bundle for ``kdlive``: ``export`` does that, on
top of this module; see ``train.cli``.)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist

from live.contract import CONTRACT_VERSION
from live.taxonomy import CLASSES
from train import checkpoints
from train.baseline import fit_baseline, note_features
from train.batches import MelSource, RollSource, labels_of
from train.config import RunConfig, fingerprint, to_json
from train.data.build import build
from train.data.slakh import SPLITS
from train.data.store import WindowStore
from train.errors import DataError
from train.evaluate import evaluate, soft_targets
from train.files import atomic_write
from train.loop import Task, fit
from train.models import KdModel, build_student, build_teacher, describe
from train.progress import Reporter, Silent
from train.steps import StepFn, ce_step, kd_step, predictor

#: The baseline fits on at most this many training windows (gradient boosting is slow).
BASELINE_MAX_TRAIN = 200_000


@dataclass
class Data:
    """The window store of a run, and which windows each split uses."""

    store: WindowStore
    labels: npt.NDArray[np.int64]  # class index of every window (contract order)
    split: dict[str, npt.NDArray[np.int64]]  # split -> store indices
    summary: dict  # what ``kdtrain data`` wrote (summary.json)
    fingerprint: str


def fingerprints(cfg: RunConfig, data_fp: str) -> dict[str, str]:
    """Each stage's file and what it depends on. The architecture's recipe is in it, so a
    changed model class retrains; NIC does not depend on the teacher, so another teacher keeps
    it; KDIC depends on both."""
    teacher = fingerprint(
        "teacher", data_fp, cfg.model, describe(new_teacher(cfg)), cfg.teacher, cfg.seed
    )
    student = describe(build_student(cfg.model.preset))
    nic = fingerprint("nic", data_fp, student, cfg.student, cfg.seed)
    return {
        "teacher.pt": teacher,
        "teacher_outputs.pt": fingerprint("teacher outputs", teacher),
        "nic.pt": nic,
        "kdic.pt": fingerprint("kdic", nic, teacher, cfg.distill),
        "baseline.pt": fingerprint("baseline", data_fp, cfg.seed),
    }


def new_teacher(cfg: RunConfig) -> KdModel:
    """An untrained teacher as the config describes it."""
    return build_teacher(cfg.model.preset, frames=cfg.model.teacher_frames)


def run_all(cfg: RunConfig, report: Reporter | None = None) -> dict:
    """The whole pipeline; returns ``report.json``'s content (empty on ranks other than 0)."""
    from train.report import write_report

    _init_distributed()
    run = Run(cfg, report or Silent())
    teacher = run.teacher()
    logits = run.teacher_logits(teacher)
    nic = run.student("nic", ce_step(run.rolls, cfg.student, run.device))
    kdic = run.student("kdic", kd_step(run.rolls, logits, cfg.distill, run.device))
    baseline = run.baseline()
    if run.rank != 0:
        return {}
    test = run.data.split["test"]
    run.report.say("evaluate", f"{len(test)} test windows")
    y = run.data.labels[test]
    models = {
        "AIC": evaluate(y, predictor(run.mels(train=False), run.device)(teacher, test)),
        "NIC": evaluate(y, predictor(run.rolls, run.device)(nic, test)),
        "KDIC": evaluate(y, predictor(run.rolls, run.device)(kdic, test)),
        "baseline": evaluate(y, baseline(test)),
    }
    train = run.data.split["train"]
    confusions = {name: models[name]["confusion"] for name in ("NIC", "baseline")}
    targets = soft_targets(
        logits[train], run.data.labels[train], cfg.distill.temperature, confusions
    )
    write_report(
        run.dir,
        models=models,
        data=run.data.summary | run.used(),
        config=to_json(cfg),
        histories=run.histories,
        teacher_targets=targets,
    )
    return json.loads((run.dir / "report.json").read_text())


class Run:
    """The stages of one ``kdtrain all``, over its data, config and run folder."""

    def __init__(self, cfg: RunConfig, report: Reporter) -> None:
        self.cfg, self.report = cfg, report
        self.dir = Path(cfg.run)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.device = _device(cfg.device)
        self.rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if self.rank == 0:
            atomic_write(self.dir / "config.json", json.dumps(to_json(cfg), indent=1) + "\n")
        self.data = load_data(cfg, report, self.rank)
        self.fingerprints = fingerprints(cfg, self.data.fingerprint)
        self.rolls = RollSource(self.data.store, self.data.labels)
        self.histories: dict[str, list[dict]] = {}

    def mels(self, *, train: bool) -> MelSource:
        frames = self.cfg.model.teacher_frames
        return MelSource(self.data.store, self.data.labels, frames=frames, random_crop=train)

    def current_or_build(self, name: str, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The stage file ``name`` if it exists and is current, else ``build()``'s result,
        saved (atomically, by rank 0) with its fingerprint."""
        path, fp = self.dir / name, self.fingerprints[name]
        if path.exists():
            blob = checkpoints.load(path)
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
        step = ce_step(self.mels(train=True), self.cfg.teacher, self.device)

        def train() -> dict[str, Any]:
            return self._fit(new_teacher(self.cfg), "teacher", step, role="teacher")

        return self._model("teacher", self.current_or_build("teacher.pt", train))

    def teacher_logits(self, teacher: KdModel) -> npt.NDArray[np.float32]:
        """The teacher's logits on every training window, computed once (store-indexed:
        ``[len(store), 8]``, zero outside the train split)."""

        def infer() -> dict[str, Any]:
            self.report.say("teacher outputs", "on every training window")
            train = self.data.split["train"]
            logits = np.zeros((len(self.data.store), len(CLASSES)), np.float32)
            source = self.mels(train=False)
            with torch.no_grad():
                for s in range(0, len(train), 256):
                    x, _ = source(train[s : s + 256])
                    logits[train[s : s + 256]] = teacher(x.to(self.device)).float().cpu().numpy()
            return {"logits": logits}

        return self.current_or_build("teacher_outputs.pt", infer)["logits"]

    def student(self, name: str, step: StepFn) -> KdModel:
        """NIC (cross-entropy) or KDIC (distillation): the student on piano rolls."""

        def train() -> dict[str, Any]:
            return self._fit(build_student(self.cfg.model.preset), name, step, role="student")

        return self._model(name, self.current_or_build(f"{name}.pt", train))

    def _model(self, name: str, blob: dict[str, Any]) -> KdModel:
        self.histories[name.upper() if name != "teacher" else "AIC"] = blob.get("history", [])
        return checkpoints.model_from_checkpoint(blob).to(self.device)

    def _fit(self, model: KdModel, name: str, step: StepFn, *, role: str) -> dict[str, Any]:
        cfg = self.cfg
        optim = cfg.teacher if role == "teacher" else cfg.student
        split, labels = self.data.split, self.data.labels
        source = self.mels(train=False) if role == "teacher" else self.rolls
        task = Task(
            name="AIC" if role == "teacher" else name.upper(),
            step=step,
            predict=predictor(source, self.device),
            train_labels=labels[split["train"]],
            train_index=split["train"],
            val_index=split["validation"],
            val_labels=labels[split["validation"]],
        )
        self.report.say(task.name, "training")
        torch.manual_seed(cfg.seed)
        # The fingerprint is in the name: an interrupted run resumes only the same stage.
        state_file = self.dir / "checkpoints" / f"{name}.{self.fingerprints[name + '.pt']}.pt"
        model, state = fit(
            model.to(self.device),
            task,
            optim,
            seed=cfg.seed,
            checkpoint=state_file,
            report=self.report,
        )
        blob = checkpoints.checkpoint(
            model,
            role=role,
            config=to_json(cfg),
            history=state.history,
            best_val_macro_f1=state.best_f1,
        )
        if self.rank == 0:
            state_file.unlink(missing_ok=True)
        return blob

    def baseline(self) -> Callable[[npt.NDArray[np.int64]], npt.NDArray[np.float32]]:
        """Gradient boosting on note statistics; returns its probabilities by store index."""

        def fit() -> dict[str, Any]:
            self.report.say("baseline", "fitting gradient boosting on note statistics")
            train = self.data.split["train"]
            if len(train) > BASELINE_MAX_TRAIN:
                rng = np.random.default_rng(self.cfg.seed)
                train = np.sort(rng.choice(train, BASELINE_MAX_TRAIN, replace=False))
            model = fit_baseline(self._features(train), self.data.labels[train], seed=self.cfg.seed)
            return {"model": model}

        model = self.current_or_build("baseline.pt", fit)["model"]

        def predict(idx: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
            probs = np.zeros((len(idx), len(CLASSES)), np.float32)
            probs[:, model.classes_] = model.predict_proba(self._features(idx))
            return probs  # a column for every class, also classes missing from training

        return predict

    def _features(self, idx: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Note features of windows ``idx``, in that order (read from the memory map sorted)."""
        order = np.argsort(idx)
        store, ordered = self.data.store, idx[order]
        feats = note_features(store.rolls[ordered], store.index["valid_steps"][ordered])
        out = np.empty_like(feats)
        out[order] = feats
        return out

    def used(self) -> dict:
        """What the models were trained on, when it is less than what was built."""
        if self.cfg.train_fraction == 1:
            return {}
        train = self.data.split["train"]
        songs = self.data.store.index["song"][train]
        return {
            "train_fraction": self.cfg.train_fraction,
            "train_songs_used": len(np.unique(songs)),
            "train_windows_used": len(train),
        }


# --------------------------------------------------------------------------------- data


def load_data(cfg: RunConfig, report: Reporter, rank: int = 0) -> Data:
    """Build (rank 0) or open the run's window store, and pick each split's windows."""
    out = Path(cfg.data.out)
    if rank == 0:
        report.say("data", f"building windows in {out}")
        summary = build(cfg.data, report.progress)
    _barrier()
    if rank != 0:
        summary = json.loads((out / "summary.json").read_text())
    store = WindowStore(out / "windows")
    split = {s: store.split(s) for s in SPLITS}
    if cfg.train_fraction < 1:
        train = split["train"]
        split["train"] = train[song_shares(store.index["song"][train]) < cfg.train_fraction]
    for name, hint in (
        ("train", "use more songs or a larger train_fraction"),
        ("validation", "use more songs"),
        ("test", "use more songs"),
    ):
        if len(split[name]) == 0:
            raise DataError(f"the {name} split has no windows: {hint}")
    fp = fingerprint("data", summary, CONTRACT_VERSION, cfg.train_fraction)
    return Data(store, labels_of(store), split, summary, fp)


def song_shares(songs: np.ndarray) -> np.ndarray:
    """A number in [0, 1) per window, the same for every window of a song: the songs with a
    share below f are a fraction f of them, and a subset of those below any larger f."""
    hashes = [int(hashlib.sha1(str(s).encode()).hexdigest()[:8], 16) for s in songs]
    return np.array(hashes, dtype=np.float64) / 2.0**32


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
