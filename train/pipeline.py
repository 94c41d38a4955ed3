"""`kdtrain all`: data -> teacher (AIC) -> NIC -> KDIC -> baseline -> evaluation -> report ->
bundle (the distilled student as ONNX, checked, in ``RUN/bundle/`` for ``kdlive``).

Every stage writes one self-describing file into the run folder and is skipped when that file
exists and its fingerprint (a hash of everything it was made from) matches: run the same
command again and finished stages are kept, an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist

from live.contract import CONTRACT_VERSION
from live.taxonomy import CLASSES
from train import data as data_stage
from train.baseline import fit_baseline, note_features
from train.batches import MelSource, RollSource, labels_of
from train.config import RunConfig, fingerprint, to_json
from train.evaluate import evaluate, soft_targets
from train.files import folder_lock
from train.loop import ProgressFn, Task, atomic_save, fit
from train.models import build_student, build_teacher, describe, model_from_description
from train.steps import DistillNet, ce_step, kd_step, predictor
from train.store import WindowStore

StageFn = Callable[[str, str], None]  # (stage, message)
BASELINE_MAX_TRAIN = 200_000


class Run:
    """State shared by the stages of one ``kdtrain all``."""

    def __init__(self, cfg: RunConfig, progress: ProgressFn | None, say: StageFn | None) -> None:
        self.cfg, self.progress = cfg, progress
        self.say = say or (lambda stage, msg: None)
        self.dir = Path(cfg.run)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.device = _device(cfg.device)
        self.rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        self.histories: dict[str, list[dict]] = {}

    # ------------------------------------------------------------------------------ data

    def load_data(self, progress: data_stage.Progress | None = None) -> None:
        if self.rank == 0:
            self.say("data", f"building windows in {self.cfg.data.out}")
            self.summary = data_stage.build(self.cfg.data, progress)
        _barrier()
        if self.rank != 0:
            self.summary = json.loads((Path(self.cfg.data.out) / "summary.json").read_text())
        self.store = WindowStore(Path(self.cfg.data.out) / "windows")
        self.labels = labels_of(self.store)
        self.split = {s: self.store.split(s) for s in ("train", "validation", "test")}
        fraction = self.cfg.train_fraction
        if fraction < 1:
            train = self.split["train"]
            self.split["train"] = train[song_shares(self.store.index["song"][train]) < fraction]
        if len(self.split["train"]) == 0 and fraction < 1:
            raise data_stage.DataError(
                f"--train-fraction {fraction} keeps none of the training songs: use a larger one"
            )
        for name in ("train", "validation"):
            if len(self.split[name]) == 0:
                raise data_stage.DataError(
                    f"the {name} split has no windows: use more songs (--limit-songs) or data"
                )
        # A share of the songs is other data (all songs keep the fingerprints they had).
        self.data_fp = fingerprint(self.summary, CONTRACT_VERSION,
                                   *([fraction] if fraction < 1 else []))  # fmt: skip
        self.teacher_store, self.teacher_data_fp = self.store, self.data_fp
        if self.cfg.model.teacher_timbre == "neutral":
            self.teacher_store = self._neutral_view(progress)

    def _neutral_view(self, progress: data_stage.Progress | None) -> WindowStore:
        """The store with the neutral view's log-mel (built once, on rank 0)."""
        from train import slakh, views
        from train.soundfonts import find_soundfonts

        data = self.cfg.data
        folder = Path(data.out) / "windows"
        if self.rank == 0:
            self.say("data", "rendering every stem as one neutral instrument for the teacher")
            root = Path(data.slakh) if data.slakh is not None else Path(data.out) / "slakh"
            stems, _ = slakh.scan(root)
            soundfont = find_soundfonts(data.soundfonts)[0]
            with folder_lock(Path(data.out), "rendering the neutral view"):
                views.build_neutral_view(self.store, stems, soundfont, workers=data.workers,
                                         progress=progress)  # fmt: skip
        _barrier()
        # What the view was rendered with (soundfont, program) is part of the teacher's input.
        self.teacher_data_fp = fingerprint(self.data_fp, views.view_meta(folder, "neutral"))
        return self.store.with_mel(views.view_file(folder, "neutral"))

    def rolls(self) -> RollSource:
        return RollSource(self.store, self.labels)

    def mels(self, *, train: bool) -> MelSource:
        frames = self.cfg.model.teacher_frames
        return MelSource(self.teacher_store, self.labels, frames=frames, random_crop=train)

    def new_teacher(self) -> torch.nn.Module:
        """An untrained teacher as the config describes it."""
        m = self.cfg.model
        return build_teacher(m.preset, frames=m.teacher_frames, mel_bands=m.teacher_mel_bands)

    # --------------------------------------------------------------------------- stages

    def stage_file(self, name: str, fp: str) -> Path | None:
        """The stage's output if it exists and is current (its history is kept for the
        report), else None."""
        path = self.dir / name
        if path.exists():
            meta = torch.load(path, map_location="cpu", weights_only=False)
            if meta.get("fingerprint") == fp:
                self.histories[path.stem] = meta.get("history", [])
                return path
        return None

    def train_teacher(self, name: str = "teacher", train_index=None) -> torch.nn.Module:  # noqa: ANN001
        """AIC: the teacher on log-mel, cross-entropy (label smoothing from the config)."""
        cfg = self.cfg
        train_index = self.split["train"] if train_index is None else train_index
        arch = describe(self.new_teacher())
        fp = fingerprint(self.teacher_data_fp, cfg.model.teacher_part(), arch, cfg.teacher,
                         cfg.seed, name, len(train_index))  # fmt: skip
        if (path := self.stage_file(f"{name}.pt", fp)) is not None:
            self.say(name, f"current: {path}")
            return load_model(path).to(self.device)
        torch.manual_seed(cfg.seed)
        model = self.new_teacher().to(self.device)
        task = Task(
            name=name.upper() if name == "teacher" else name,
            step=ce_step(self.mels(train=True), cfg.teacher, self.device),
            predict=predictor(self.mels(train=False), self.device),
            train_labels=self.labels[train_index],
            train_index=train_index,
            val_index=self.split["validation"],
            val_labels=self.labels[self.split["validation"]],
        )
        return self._fit(model, task, cfg.teacher, name, fp, role="teacher")

    def train_student(self, name: str, step, fp: str, teacher_dim: int | None = None):  # noqa: ANN001, ANN201
        """NIC (``teacher_dim`` None) or KDIC (a :class:`DistillNet`, with an embedding
        projection when ``teacher_dim`` > 0): the student on piano rolls."""
        cfg = self.cfg
        if (path := self.stage_file(f"{name}.pt", fp)) is not None:
            self.say(name, f"current: {path}")
            return load_model(path).to(self.device)
        torch.manual_seed(cfg.seed)
        net = build_student(cfg.model.student)
        if teacher_dim is not None:
            net = DistillNet(net, teacher_dim)
        net = net.to(self.device)
        task = Task(
            name=name.upper(),
            step=step,
            predict=predictor(self.rolls(), self.device),
            train_labels=self.labels[self.split["train"]],
            train_index=self.split["train"],
            val_index=self.split["validation"],
            val_labels=self.labels[self.split["validation"]],
        )
        return self._fit(net, task, cfg.student, name, fp, role="student")

    def _fit(self, model, task: Task, optim, name: str, fp: str, *, role: str):  # noqa: ANN001, ANN202
        self.say(name, "training")
        # The fingerprint is in the name: an interrupted run resumes only the same stage.
        ckpt = self.dir / "checkpoints" / f"{name}.{fp}.state.pt"
        model, state = fit(model, task, optim, seed=self.cfg.seed, checkpoint=ckpt,
                           progress=self.progress)  # fmt: skip
        net = model.student if isinstance(model, DistillNet) else model
        if self.rank == 0:
            save_model(self.dir / f"{name}.pt", net, role=role, fingerprint=fp,
                       config=to_json(self.cfg), history=state.history,
                       extra={"best_val_macro_f1": state.best_f1,
                              "teacher_frames": self.cfg.model.teacher_frames})  # fmt: skip
            ckpt.unlink(missing_ok=True)
        _barrier()
        self.histories[name] = state.history
        return net

    # ----------------------------------------------------------------- teacher outputs

    def teacher_outputs(self, teacher: torch.nn.Module) -> tuple[np.ndarray, np.ndarray | None]:
        """The teacher's logits (and embeddings) on every training window, computed once and
        cached. With ``teacher_folds`` K > 1 they are cross-fitted: the songs of the train
        split are cut into K folds and each fold's outputs come from a teacher trained on the
        other K - 1, so the student never imitates a teacher that memorised the window."""
        cfg = self.cfg
        k = cfg.distill.teacher_folds
        feat = cfg.distill.feature_weight > 0
        arch = describe(self.new_teacher())
        fp = fingerprint(self.teacher_data_fp, cfg.model.teacher_part(), arch, cfg.teacher,
                         cfg.seed, k, feat)  # fmt: skip
        path = self.dir / "teacher_outputs.pt"
        if path.exists():
            blob = torch.load(path, map_location="cpu", weights_only=False)
            if blob["fingerprint"] == fp:
                return blob["logits"], blob["embeddings"]
        train = self.split["train"]
        logits = np.zeros((len(self.store), len(CLASSES)), np.float32)
        emb = np.zeros((len(self.store), teacher.embedding_dim), np.float32) if feat else None
        if k > 1:
            folds = _song_folds(self.store.index["song"][train], k)
            for fold in range(k):
                held = train[folds == fold]
                model = self.train_teacher(f"teacher_fold{fold}", train[folds != fold])
                self._infer(model, held, logits, emb)
        else:
            self._infer(teacher, train, logits, emb)
        if self.rank == 0:
            atomic_save({"fingerprint": fp, "logits": logits, "embeddings": emb}, path)
        return logits, emb

    def _infer(self, model, idx, logits, emb, batch: int = 256) -> None:  # noqa: ANN001
        source = self.mels(train=False)
        model.eval()
        with torch.no_grad():
            for s in range(0, len(idx), batch):
                b = idx[s : s + batch]
                x, _ = source(b)
                x = x.to(self.device)
                if emb is not None:
                    e = model.embed(x)
                    emb[b] = e.float().cpu().numpy()
                    logits[b] = model.head(e).float().cpu().numpy()
                else:
                    logits[b] = model(x).float().cpu().numpy()

    # ------------------------------------------------------------------------ baseline

    def baseline(self) -> npt.NDArray[np.float32]:
        """Gradient boosting on note statistics; returns test probabilities."""
        fp = fingerprint(self.data_fp, self.cfg.seed, "baseline")
        path = self.dir / "baseline.pkl"
        if path.exists():
            with open(path, "rb") as f:
                blob = pickle.load(f)
            if blob["fingerprint"] == fp:
                self.say("baseline", f"current: {path}")
                return _full_probs(blob["model"], self._features(self.split["test"]))
        self.say("baseline", "fitting gradient boosting on note statistics")
        train = self.split["train"]
        if len(train) > BASELINE_MAX_TRAIN:
            rng = np.random.default_rng(self.cfg.seed)
            train = np.sort(rng.choice(train, BASELINE_MAX_TRAIN, replace=False))
        model = fit_baseline(self._features(train), self.labels[train], seed=self.cfg.seed)
        if self.rank == 0:
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as f:
                pickle.dump({"fingerprint": fp, "model": model}, f)
            os.replace(tmp, path)
        return _full_probs(model, self._features(self.split["test"]))

    def _features(self, idx: npt.NDArray[np.int64]) -> np.ndarray:
        rolls = self.store.rolls[np.sort(idx)]
        return note_features(rolls, self.store.index["valid_steps"][np.sort(idx)])


def _full_probs(model, X: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """predict_proba with a column for every class, also classes missing from training."""
    probs = np.zeros((len(X), len(CLASSES)), np.float32)
    probs[:, model.classes_] = model.predict_proba(X)
    return probs


def _song_hashes(songs: np.ndarray) -> np.ndarray:
    import hashlib

    return np.array([int(hashlib.sha1(str(s).encode()).hexdigest()[:8], 16) for s in songs],
                    dtype=np.int64)  # fmt: skip


def _song_folds(songs: np.ndarray, k: int) -> np.ndarray:
    return _song_hashes(songs) % k


def song_shares(songs: np.ndarray) -> np.ndarray:
    """A number in [0, 1) per window, the same for every window of a song: the songs with a
    share below f are a fraction f of them, and a subset of those below any larger f."""
    return _song_hashes(songs) / 2.0**32


def run_all(cfg: RunConfig, *, progress: ProgressFn | None = None, say: StageFn | None = None,
            data_progress: data_stage.Progress | None = None) -> dict:  # fmt: skip
    """The whole pipeline; returns ``report.json``'s content."""
    from train.report import write_report

    if cfg.distill.feature_weight > 0 and cfg.model.preset == "paper":
        raise data_stage.DataError(
            "--feature-weight needs the fast or tiny preset: the paper teacher's embedding is "
            "2,162,688 numbers per window, too large to cache"
        )
    _init_distributed()
    run = Run(cfg, progress, say)
    run.load_data(data_progress)
    test = run.split["test"]
    if len(test) == 0:
        raise data_stage.DataError("the test split has no windows: use more songs")
    teacher = run.train_teacher()
    t_logits, t_emb = run.teacher_outputs(teacher)
    # The architecture's recipe is in the fingerprint: a changed model class retrains.
    arch = describe(build_student(cfg.model.student))
    # NIC depends on the student alone: another teacher does not retrain it.
    nic_fp = fingerprint(run.data_fp, cfg.model.student, arch, cfg.student, cfg.seed, "nic")
    nic = run.train_student("nic", ce_step(run.rolls(), cfg.student, run.device), nic_fp)
    # KDIC depends on the student and on the teacher it imitates (what it hears included).
    kd_fp = fingerprint(nic_fp, run.teacher_data_fp, cfg.model.teacher_part(), cfg.teacher,
                        cfg.distill, "kdic")  # fmt: skip
    teacher_dim = teacher.embedding_dim if cfg.distill.feature_weight > 0 else 0
    kd = kd_step(run.rolls(), t_logits, t_emb, cfg.distill, run.device)
    kdic = run.train_student("kdic", kd, kd_fp, teacher_dim)
    base_probs = run.baseline()
    if run.rank != 0:
        return {}
    run.say("evaluate", f"{len(test)} test windows")
    y = run.labels[test]
    results = {
        "AIC": evaluate(y, predictor(run.mels(train=False), run.device)(teacher.eval(), test)),
        "NIC": evaluate(y, predictor(run.rolls(), run.device)(nic.eval(), test)),
        "KDIC": evaluate(y, predictor(run.rolls(), run.device)(kdic.eval(), test)),
        "baseline": evaluate(run.labels[np.sort(test)], base_probs),
    }
    train = run.split["train"]
    targets = soft_targets(
        t_logits[train], run.labels[train], cfg.distill.temperature,
        {name: results[name]["confusion"] for name in ("NIC", "baseline")},
    )  # fmt: skip
    targets["cross_fitted"] = cfg.distill.teacher_folds > 1
    data = run.summary
    if cfg.train_fraction < 1:  # what the models were trained on, beside what was built
        data = data | {"train_fraction": cfg.train_fraction,
                       "train_songs_used": len(np.unique(run.store.index["song"][train])),
                       "train_windows_used": len(train)}  # fmt: skip
    write_report(run.dir, models=results, data=data, config=to_json(cfg),
                 histories=run.histories, teacher_targets=targets)  # fmt: skip
    from export.bundle import write_bundle

    run.say("bundle", f"exporting KDIC to {run.dir / 'bundle'}")
    write_bundle(run.dir, run.dir / "bundle", which="kdic")
    return json.loads((run.dir / "report.json").read_text())


# ---------------------------------------------------------------------- checkpoints


def save_model(path: Path, model: torch.nn.Module, *, role: str, fingerprint: str, config: dict,
               history: list[dict], extra: dict | None = None) -> None:  # fmt: skip
    """A checkpoint that describes itself: architecture, weights, config, classes, contract."""
    atomic_save({
        "role": role,
        "description": describe(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "classes": list(CLASSES),
        "contract_version": CONTRACT_VERSION,
        "fingerprint": fingerprint,
        "config": config,
        "history": history,
        **(extra or {}),
    }, path)  # fmt: skip


def load_model(path: Path) -> torch.nn.Module:
    """Rebuild a model from a checkpoint written by :func:`save_model` alone."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    if blob.get("contract_version") != CONTRACT_VERSION:
        raise ValueError(f"{path}: made for contract {blob.get('contract_version')}, "
                         f"this is {CONTRACT_VERSION}: retrain")  # fmt: skip
    model = model_from_description(blob["description"])
    model.load_state_dict(blob["state_dict"])
    return model.eval()


# ------------------------------------------------------------------------ plumbing


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise data_stage.DataError("--device cuda: no CUDA GPU visible to PyTorch; use cpu")
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
