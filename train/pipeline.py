"""`kdtrain all`: data -> teacher (AIC) -> teacher outputs -> NIC -> KDIC -> baseline ->
evaluation -> report.

Every stage saves one file into the run folder, stamped with the fingerprint of what it was
made from, and is skipped when that file is current: run the same command again and finished
stages are kept, an interrupted one resumes from its checkpoint, and a changed setting redoes
only the stages that depend on it. :func:`fingerprints` states that dependency graph in one
place. (``kdtrain all`` then exports KDIC as a bundle for ``kdlive``: ``export`` does that, on
top of this module; see ``kdapp.kdtrain``.)

The teacher always learns from the audio store. The students learn from the windows of their
input contract (:class:`Windows`): contract 1, the audio store's rolls (the paper); contract 2,
the notes-only store (``train.data.notes``), where they see onsets, velocity, the ensemble and
the drums, carry a state from window to window (``train.history``), and are distilled where the
teacher has heard the window.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist

from live.contract import CONTRACT_VERSION
from live.taxonomy import CLASSES
from train import checkpoints, history
from train.baseline import fit_baseline, note_features
from train.batches import MelSource, NotesSource, RollSource, labels_of
from train.config import RunConfig, fingerprint, to_json
from train.data import slakh
from train.data.build import build
from train.data.notes import NotesStore, audio_twins
from train.data.store import WindowStore
from train.errors import DataError
from train.evaluate import evaluate, soft_targets
from train.files import atomic_write
from train.loop import LoopState, Task, fit
from train.models import KdModel, PartStudent, build_student, build_teacher, describe
from train.progress import Reporter, Silent
from train.splits import (
    LookupTable,
    leakage,
    roll_keys,
    song_hashes,
    song_shares,
    sparse_roll_keys,
    split_windows,
    window_keys,
)
from train.steps import (
    Index,
    LossFn,
    PredictFn,
    Source,
    StepFn,
    ce_loss,
    kd_loss,
    predictor,
    window_step,
)

#: The baseline fits on at most this many training windows (gradient boosting is slow).
BASELINE_MAX_TRAIN = 200_000
#: Contract-2 students are validated on the windows of at most this many validation songs.
VALIDATION_SONGS = 200


@dataclass
class Windows:
    """A set of windows models learn from: their source, labels, and each split's indices."""

    source: Source
    labels: npt.NDArray[np.int64]
    split: dict[str, npt.NDArray[np.int64]]


@dataclass
class Data:
    """The run's stores: the audio store (the teacher's; contract 1's students') and, for
    contract 2, the notes-only store."""

    store: WindowStore
    audio: Windows  # rolls of the audio store (source: RollSource)
    notes: NotesStore | None
    summary: dict  # what ``kdtrain data`` wrote (summary.json)
    fingerprint: str


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
    return {
        "teacher.pt": teacher,
        "teacher_outputs.pt": fingerprint("teacher outputs", teacher),
        "nic.pt": nic,
        "kdic.pt": fingerprint("kdic", nic, teacher, cfg.distill),
        "baseline.pt": fingerprint("baseline", data_fp, cfg.model.contract, cfg.seed),
    }


def new_teacher(cfg: RunConfig) -> KdModel:
    """An untrained teacher as the config describes it."""
    return build_teacher(cfg.model.preset, frames=cfg.model.teacher_frames)


def new_student(cfg: RunConfig) -> KdModel:
    """An untrained student as the config describes it."""
    m = cfg.model
    return build_student(
        m.preset, contract=m.contract, inputs=m.inputs, state=m.state, encoder=m.encoder
    )


def run_all(cfg: RunConfig, report: Reporter | None = None) -> dict:
    """The whole pipeline; returns ``report.json``'s content (empty on ranks other than 0)."""
    from train.report import write_report

    _init_distributed()
    run = Run(cfg, report or Silent())
    teacher = run.teacher()
    logits, taught = run.teacher_logits(teacher)
    nic = run.student("nic", ce_loss(cfg.student))
    kdic = run.student("kdic", kd_loss(logits, cfg.distill, run.device, taught))
    baseline = run.baseline()
    if run.rank != 0:
        return {}
    leak, lookup = run.memory()
    audio_test, test = run.data.audio.split["test"], run.students.split["test"]
    run.report.say("evaluate", f"{len(test)} test windows")
    mels = predictor(run.mels(train=False), run.device)
    models = {
        "AIC": evaluate(run.data.audio.labels[audio_test], mels(teacher, audio_test)),
        "NIC": run.evaluate(nic),
        "KDIC": run.evaluate(kdic),
        "baseline": run.evaluate(baseline),
        "lookup": run.evaluate(lookup),
    }
    train = run.students.split["train"]
    train = train[taught[train]]  # the windows the teacher has heard
    confusions = {name: models[name]["confusion"] for name in ("NIC", "baseline")}
    targets = None
    if len(train):
        targets = soft_targets(
            logits[train], run.students.labels[train], cfg.distill.temperature, confusions
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
        self.students = student_windows(self.data, cfg)
        self.fingerprints = fingerprints(cfg, self.data.fingerprint)
        self.histories: dict[str, list[dict]] = {}

    def mels(self, *, train: bool) -> MelSource:
        frames = self.cfg.model.teacher_frames
        store, labels = self.data.store, self.data.audio.labels
        return MelSource(store, labels, frames=frames, random_crop=train)

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
        audio = Windows(self.mels(train=True), self.data.audio.labels, self.data.audio.split)
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
        once: ``(logits [N, 8], heard [N])`` by student window (contract 2: the notes store's
        windows whose twin in the audio store is a training window)."""

        def infer() -> dict[str, Any]:
            self.report.say("teacher outputs", "on every training window")
            train = self.data.audio.split["train"]
            logits = np.zeros((len(self.data.store), len(CLASSES)), np.float32)
            source = self.mels(train=False)
            with torch.no_grad():
                for s in range(0, len(train), 256):
                    x, _ = source(train[s : s + 256])
                    logits[train[s : s + 256]] = teacher(x.to(self.device)).float().cpu().numpy()
            return {"logits": logits}

        audio = self.current_or_build("teacher_outputs.pt", infer)["logits"]
        heard = np.zeros(len(self.data.store), bool)
        heard[self.data.audio.split["train"]] = True
        if self.data.notes is None:
            return audio, heard
        twin = audio_twins(self.data.notes, self.data.store, _slakh_root(self.cfg))
        heard_notes = (twin >= 0) & heard[np.maximum(twin, 0)]
        heard_notes[self.students.split["validation"]] = False
        heard_notes[self.students.split["test"]] = False
        return audio[np.maximum(twin, 0)] * heard_notes[:, None], heard_notes

    def student(self, name: str, loss: LossFn) -> KdModel:
        """NIC (cross-entropy) or KDIC (distillation): the student on its contract's windows.
        A contract-2 student with a state learns in two phases: its window answer first, as
        any student, then its history (the recurrent head over the frozen window embeddings)
        on chunks of a part's successive windows."""
        source, device = self.students.source, self.device

        def train() -> dict[str, Any]:
            model = new_student(self.cfg)
            step = window_step(source, loss, device)
            model, state = self._fit(model, name, self.students, step, predictor(source, device))
            histories = state.history
            if isinstance(model, PartStudent) and model.state_dim and self.data.notes:
                model.freeze_window()
                model, state = self._fit(
                    model,
                    name,
                    self.students,
                    self._history_step(),
                    self._running_predict(),
                    phase="history",
                )
                histories = histories + [r | {"phase": "history"} for r in state.history]
            self._unlink_checkpoints(name)
            return checkpoints.checkpoint(
                model,
                role="student",
                config=to_json(self.cfg),
                history=histories,
                best_val_macro_f1=state.best_f1,
            )

        return self._model(name, self.current_or_build(f"{name}.pt", train))

    def _history_step(self) -> StepFn:
        assert self.data.notes is not None
        nxt = history.successors(self.data.notes)
        return history.history_step(
            self.students.source, nxt, self.cfg.student.sequence, self.device
        )

    def _running_predict(self) -> PredictFn:
        """The running answers (what the daemon's part answer says), for validation."""
        notes, source = self.data.notes, self.students.source
        assert notes is not None

        def predict(model: torch.nn.Module, idx: Index) -> npt.NDArray[np.float32]:
            assert isinstance(model, PartStudent)
            return history.running_answers(model, source, notes, idx, self.device)[1]

        return predict

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
        phase: str = "",
    ) -> tuple[KdModel, LoopState]:
        """Train ``model`` (resumable: its state file is named after the stage's fingerprint
        and ``phase``); the checkpoint files are removed by :meth:`_unlink_checkpoints`."""
        cfg, role = self.cfg, "teacher" if name == "teacher" else "student"
        optim = cfg.teacher if role == "teacher" else cfg.student
        if phase == "history":
            # Chunks of ``sequence`` windows: the batch and the epoch still count windows.
            per = optim.sequence
            optim = replace(
                optim,
                batch_size=max(1, optim.batch_size // per),
                samples_per_epoch=optim.samples_per_epoch // per,
            )
        val = self._validation(windows, role)
        label = "AIC" if role == "teacher" else name.upper()
        task = Task(
            name=f"{label} {phase}".strip(),
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
        state_file = self.dir / "checkpoints" / f"{name}.{fp}{'.' + phase if phase else ''}.pt"
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

    def _validation(self, windows: Windows, role: str) -> Index:
        """The validation windows; contract 2's, those of at most :data:`VALIDATION_SONGS`
        songs (whole songs, so whole parts: their running answers are causal)."""
        val = windows.split["validation"]
        if role == "teacher" or self.data.notes is None:
            return val
        songs = self.data.notes.index["song"][val]
        keep = np.unique(songs)
        keep = keep[np.argsort(song_hashes(keep))][:VALIDATION_SONGS]
        return val[np.isin(songs, keep)]

    def baseline(self) -> Callable[[Index], npt.NDArray[np.float32]]:
        """Gradient boosting on note statistics of the students' windows (the part's own
        notes: contract 1's roll); returns its probabilities by student window."""

        def fit() -> dict[str, Any]:
            self.report.say("baseline", "fitting gradient boosting on note statistics")
            train = self.students.split["train"]
            if len(train) > BASELINE_MAX_TRAIN:
                rng = np.random.default_rng(self.cfg.seed)
                train = np.sort(rng.choice(train, BASELINE_MAX_TRAIN, replace=False))
            labels = self.students.labels[train]
            return {"model": fit_baseline(self._features(train), labels, seed=self.cfg.seed)}

        model = self.current_or_build("baseline.pt", fit)["model"]

        def predict(idx: Index) -> npt.NDArray[np.float32]:
            probs = np.zeros((len(idx), len(CLASSES)), np.float32)
            for s in range(0, len(idx), 65536):
                part = idx[s : s + 65536]
                probs[s : s + 65536, model.classes_] = model.predict_proba(self._features(part))
            return probs  # a column for every class, also classes missing from training

        return predict

    def _features(self, idx: Index) -> npt.NDArray[np.float32]:
        """Note features of the students' windows ``idx``, in that order."""
        order = np.argsort(idx)
        ordered = idx[order]
        if self.data.notes is None:
            store = self.data.store
            rolls, valid = store.rolls[ordered], store.index["valid_steps"][ordered]
        else:
            rolls = np.concatenate(
                [
                    self.data.notes.inputs(ordered[s : s + 8192])[:, 0]
                    for s in range(0, len(ordered), 8192)
                ]
                or [np.zeros((0, 128, 16), np.uint8)]
            )
            valid = self.data.notes.index["valid_steps"][ordered]
        feats = note_features(rolls, valid)
        out = np.empty_like(feats)
        out[order] = feats
        return out

    # ------------------------------------------------------------------- what leaks

    def roll_keys(self, idx: Index) -> npt.NDArray[np.uint64]:
        """The key of each student window's own roll (:func:`train.splits.roll_keys`)."""
        out = np.zeros(len(idx), np.uint64)
        for s in range(0, len(idx), 65536):
            part = idx[s : s + 65536]
            if self.data.notes is None:
                out[s : s + len(part)] = roll_keys(self.data.store.rolls[part])
            else:
                rows, cells = self.data.notes.part_cells(part)
                out[s : s + len(part)] = sparse_roll_keys(rows, cells, len(part))
        return out

    def memory(self) -> tuple[dict, Callable[[Index], npt.NDArray[np.float32]]]:
        """What the split leaks (:func:`train.splits.leakage`), and the lookup table of the
        training rolls as a scorer of student windows."""
        train, test = self.students.split["train"], self.students.split["test"]
        labels = self.students.labels
        keys = self.roll_keys(train)
        leak = leakage(keys, labels[train], self.roll_keys(test), labels[test])
        table = LookupTable.fit(keys, labels[train])
        return leak, lambda idx: table(self.roll_keys(idx))

    def split_info(self, leak: dict) -> dict:
        """The split, for the report: its kind, the emulated duplicates, its leakage."""
        cfg = self.cfg
        emulated = cfg.split == "slakh-orig" and cfg.data.slakh is None
        info: dict[str, Any] = {"kind": cfg.split}
        if emulated:
            info["duplicates"] = cfg.split_duplicates
        return info | {"leakage": leak}

    # --------------------------------------------------------------------- evaluation

    def evaluate(self, model: KdModel | Callable[[Index], npt.NDArray[np.float32]]) -> dict:
        """A student's (or the baseline's) test metrics (:func:`evaluate_windows`)."""
        test = self.students.split["test"]
        if self.data.notes is not None:
            return evaluate_windows(model, self.data.notes, test, self.device)
        if isinstance(model, torch.nn.Module):
            return evaluate(
                self.students.labels[test],
                predictor(self.students.source, self.device)(model, test),
            )
        return evaluate(self.students.labels[test], model(test))

    def used(self) -> dict:
        """What the models were trained on, when it is less than what was built."""
        if self.cfg.train_fraction == 1:
            return {}
        train = self.students.split["train"]
        songs = (
            self.data.store.index["song"][train]
            if self.data.notes is None
            else self.data.notes.index["song"][train]
        )
        return {
            "train_fraction": self.cfg.train_fraction,
            "train_songs_used": len(np.unique(songs)),
            "train_windows_used": len(train),
        }


def evaluate_windows(
    model: KdModel | Callable[[Index], npt.NDArray[np.float32]],
    notes: NotesStore,
    idx: Index,
    device: torch.device,
) -> dict:
    """Metrics of a contract-2 student (or any scorer of windows) on the windows ``idx`` of a
    notes store (whole parts): the window answer's (:func:`train.evaluate.evaluate`), the
    running answer's (``"running"``) and each part's after 2, 4, 8 and 16 bars (``"parts"``;
    without a state, the running answer is the mean of the window answers). A student with a
    state is also scored as if it had none (``"mean"``: its window answers averaged), which
    measures what the learned history adds over averaging."""
    source = NotesSource(notes)
    mean = None
    if isinstance(model, PartStudent):
        window, running = history.running_answers(model, source, notes, idx, device)
        if model.state_dim:
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
    for bars in history.BARS_HEARD:
        labels, probs = history.answers_after(notes, idx, running, bars)
        if len(labels):
            result["parts"][str(bars)] = _brief(evaluate(labels, probs))
    return result


def _brief(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("macro_f1", "accuracy", "per_class", "n")}


# --------------------------------------------------------------------------------- data


def load_data(cfg: RunConfig, report: Reporter, rank: int = 0) -> Data:
    """Build (rank 0) or open the run's stores."""
    out = Path(cfg.data.out)
    notes = cfg.model.contract == 2
    if rank == 0:
        report.say("data", f"building windows in {out}")
        summary = build(cfg.data, report.progress, notes=notes)
    _barrier()
    if rank != 0:
        summary = json.loads((out / "summary.json").read_text())
    store = WindowStore(out / "windows")
    labels = labels_of(store)
    # A song is its file's hash where the layout records it (a rendered collection), so a
    # share of the songs is the same songs for the teacher and for the notes store.
    uuid = {track: m.get("UUID", track) for track, m in slakh.metadata(_slakh_root(cfg)).items()}
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
    audio = Windows(
        RollSource(store, labels), labels, _with_share(split, songs, cfg.train_fraction)
    )
    how = () if cfg.split == "song" and not shipped else (cfg.split, cfg.split_duplicates)
    fp = fingerprint(
        "data", summary, CONTRACT_VERSION, cfg.model.contract, cfg.train_fraction, *how
    )
    return Data(store, audio, NotesStore(out / "notes") if notes else None, summary, fp)


def _slakh_root(cfg: RunConfig) -> Path:
    """The Slakh-layout folder of the audio store: Slakh2100's, or the rendered collection's."""
    return Path(cfg.data.slakh or Path(cfg.data.out) / "slakh")


def _with_share(split: dict[str, Index], songs: np.ndarray, fraction: float) -> dict[str, Index]:
    """``split`` with only a share ``fraction`` of the training songs (:func:`song_shares`)."""
    if fraction < 1:
        train = split["train"]
        split["train"] = train[song_shares(songs[train]) < fraction]
    return split


def student_windows(data: Data, cfg: RunConfig) -> Windows:
    """The students' windows: contract 1, the audio store's rolls (the teacher's windows);
    contract 2, the notes store's, split as ``cfg.split`` says, with a share
    ``cfg.train_fraction`` of its training songs."""
    windows = data.audio
    if data.notes is not None:
        notes = data.notes
        song = notes.index["song"]
        sha1 = np.array([s["sha1"] for s in notes.songs])[song]
        split = split_windows(
            cfg.split,
            notes.song_split[song],
            notes.song_key[song],  # versions of a song count as one
            window_keys(sha1, notes.index["part"], notes.index["bar"]),
            duplicates=cfg.split_duplicates,
        )
        split = _with_share(split, sha1, cfg.train_fraction)
        windows = Windows(NotesSource(notes), notes.labels, split)
    for name, hint in (
        ("train", "use more songs or a larger train_fraction"),
        ("validation", "use more songs"),
        ("test", "use more songs"),
    ):
        if len(windows.split[name]) == 0:
            raise DataError(f"the {name} split has no windows: {hint}")
    return windows


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
