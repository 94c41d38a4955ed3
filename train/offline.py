"""The offline notes teacher: a part's whole history and future, distilled into the live student.

The audio teacher knows timbre, which notes do not carry, and has heard only the rendered
songs. This teacher reads what the student reads (the contract-2 windows of the notes store)
but offline: a :class:`train.models.NotesTeacher` runs a bidirectional GRU over a part's
successive windows, so each window's answer has heard the part before and after it. It is
trained on the notes store alone, on every training window, and never exported.

- :class:`Parts`: windows in segment order (``train.history``'s segments: a part until a
  silence of more than ``RESET_BARS`` bars), chunks of them for training;
- :func:`chunk_step`: the cross-entropy at every window of chunks of ``optim.sequence``
  successive windows, each drawn window at a random place in its chunk;
- :func:`teacher_logits`: logits of every window, each run with its whole segment;
- :func:`train_notes_teacher`: both stages (``notes_teacher.pt``, ``notes_teacher_outputs.pt``)
  from a :class:`train.students.NotesStudents`, current or built, resumable: what
  ``train.pipeline.Run`` calls, and what a notes-only runner calls without an audio store;
- :func:`targets`: KDIC's targets from the audio teacher, this one, or both (:func:`combine`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from live.taxonomy import N_CLASSES
from train import checkpoints
from train.batches import NotesSource
from train.config import RunConfig, fingerprint, to_json
from train.data.notes import NotesStore
from train.errors import ConfigError
from train.history import order_segments
from train.loop import LoopState, Task, fit
from train.models import NotesTeacher, describe
from train.progress import Reporter
from train.stages import current_or_build
from train.steps import Index, PredictFn, StepFn
from train.students import NotesStudents, Students

#: ``(logits [N, 8], heard [N])`` by notes-store window.
Targets = tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]
#: The report's words for each ``distill.teacher`` but the audio one (which it names AIC).
TEACHER_NAMES = {"notes": "the notes teacher", "both": "AIC and the notes teacher"}
#: What KDIC's report entry says it learnt from (nothing added for the audio teacher).
KDIC_TARGETS: dict[str, dict[str, str]] = {
    "audio": {},
    **{k: {"targets": f"soft (from {v})"} for k, v in TEACHER_NAMES.items()},
}
#: Windows embedded at once (memory: about 2 KB of activations a window for the fast sizes).
EMBED_BATCH = 4096


def new_notes_teacher(cfg: RunConfig) -> NotesTeacher:
    """An untrained notes teacher as ``cfg.notes_teacher`` sizes it."""
    t = cfg.notes_teacher
    return NotesTeacher(
        width=t.width,
        channels=t.channels,
        hidden=t.hidden,
        state=t.state,
        dropout=t.dropout,
        ensemble=t.ensemble,
    )


def fingerprints(cfg: RunConfig, data_fp: str) -> dict[str, str]:
    """The notes teacher's stage files and what they depend on: the data, its recipe and
    schedule, the seed; its outputs on the teacher."""
    teacher = fingerprint(
        "notes teacher", data_fp, describe(new_notes_teacher(cfg)), cfg.notes_teacher, cfg.seed
    )
    return {
        "notes_teacher.pt": teacher,
        "notes_teacher_outputs.pt": fingerprint("notes teacher outputs", teacher),
    }


# ------------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class Parts:
    """Some windows of a notes store in segment order: ``order`` (store indices, by song,
    part, bar), each one's ``segment``, ``position`` in it, ``song`` and ``bar``, and
    ``rank`` ``[len(store)]``, each store window's place in ``order`` (-1: not among them).
    Segments are made of these windows alone, so a chunk never leaves them."""

    order: Index
    segment: Index
    position: Index
    song: Index
    bar: Index
    rank: Index

    @classmethod
    def of(cls, store: NotesStore, windows: Index) -> Parts:
        windows = np.asarray(windows, np.int64)
        song, part, bar = (
            store.index[k][windows].astype(np.int64) for k in ("song", "part", "bar")
        )
        order, segment, position = order_segments(song, part, bar)
        rank = np.full(len(store), -1, np.int64)
        rank[windows[order]] = np.arange(len(order))
        return cls(windows[order], segment, position, song[order], bar[order], rank)

    def chunks(self, windows: Index, length: int, back: Index) -> tuple[Index, npt.NDArray]:
        """``(idx [B, length], valid [B, length])``: chunks of successive windows of a
        segment, each of ``windows`` at place ``back`` (or its own position, if less) in its
        chunk; a chunk ends with its segment (the rest padded and marked invalid)."""
        at = self._ranks(windows)
        start = at - np.minimum(back, self.position[at])
        ranks = start[:, None] + np.arange(length)
        inside = np.minimum(ranks, len(self.order) - 1)
        valid = (ranks < len(self.order)) & (self.segment[inside] == self.segment[start, None])
        return self.order[np.where(valid, inside, start[:, None])], valid

    def around(self, idx: Index, valid: npt.NDArray) -> Index:
        """Every window (sorted, once) of the song of each chunk (``idx``, ``valid`` as
        :meth:`chunks` gives them) at the bars it spans: all the parts over those bars."""
        first, last = (
            self._ranks(idx[:, 0]),
            self._ranks(idx[np.arange(len(idx)), valid.sum(1) - 1]),
        )
        by_bar = np.lexsort((self.bar, self.song))  # places in order, by song then bar
        key = self.song[by_bar] * _BARS + self.bar[by_bar]
        lo = np.searchsorted(key, self.song[first] * _BARS + self.bar[first], side="left")
        hi = np.searchsorted(key, self.song[last] * _BARS + self.bar[last], side="right")
        counts = hi - lo
        at = np.repeat(lo - np.r_[0, np.cumsum(counts)[:-1]], counts) + np.arange(counts.sum())
        return np.unique(self.order[by_bar[at]])

    def grid(self, windows: Index) -> tuple[Index, npt.NDArray]:
        """Distinct windows as sequences: ``(windows in row order, valid [S, L])``, a row per
        run of successive windows of one segment."""
        at = np.sort(self._ranks(windows))
        new = np.r_[True, (np.diff(at) != 1) | (np.diff(self.segment[at]) != 0)]
        row = np.cumsum(new) - 1
        lengths = np.bincount(row)
        return self.order[at], np.arange(lengths.max(initial=0)) < lengths[:, None]

    def groups(self, windows: Index) -> Index:
        """Which of ``windows`` sound together: one number per song and bar, from 0."""
        at = self._ranks(windows)
        return np.unique(self.song[at] * _BARS + self.bar[at], return_inverse=True)[1]

    def runs(self, most: int = 8 * EMBED_BATCH) -> list[tuple[int, int, npt.NDArray]]:
        """Whole songs, a run of them at a time of at most ``most`` windows (or one song):
        ``(a, b, valid [S, L])`` for ``order[a:b]``, a row per segment."""
        bounds = np.r_[0, np.flatnonzero(np.diff(self.segment)) + 1, len(self.order)]
        songs = np.r_[0, np.flatnonzero(np.diff(self.song)) + 1, len(self.order)]
        cuts = [0]
        for lo, hi in zip(songs[1:-1].tolist(), songs[2:].tolist(), strict=True):
            if hi - cuts[-1] > most:  # the song [lo, hi) starts the next run
                cuts.append(lo)
        cuts.append(len(self.order))
        out = []
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            lengths = np.diff(bounds[(bounds >= a) & (bounds <= b)])
            out.append((a, b, np.arange(lengths.max()) < lengths[:, None]))
        return out

    def _ranks(self, windows: Index) -> Index:
        at = self.rank[windows]
        if np.any(at < 0):
            raise ValueError("windows that are not among the Parts' windows")
        return at


#: Bars a song may have, and more (a key of song and bar is ``song * _BARS + bar``).
_BARS = 1 << 24


def embed(model: NotesTeacher, store: NotesStore, idx: Index, device: torch.device) -> torch.Tensor:
    """Embeddings ``[len(idx), hidden]`` of the windows ``idx`` (with gradients when enabled)."""
    cells = NotesSource(store, cells=True)
    parts = [
        model.embed(cells(idx[s : s + EMBED_BATCH])[0].to(device))
        for s in range(0, len(idx), EMBED_BATCH)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, model.embedding_dim, device=device)


# ----------------------------------------------------------------------- train and infer


def chunk_step(
    store: NotesStore, parts: Parts, length: int, device: torch.device, *, ensemble: bool = False
) -> StepFn:
    """Each drawn window in a chunk of up to ``length`` successive windows of its segment, at
    a random place in it (so it is heard with some past and some future): the cross-entropy
    of the teacher's logits at every window of the chunks (a part keeps its label).

    With ``ensemble``, the chunks of every other part of the song over the same bars too (a
    window hears the others at its bar), each of their windows weighted by the inverse of its
    class's share of ``parts``' windows (mean weight 1): the drawn chunks are class-balanced,
    the other parts are as the songs have them."""
    labels = store.labels
    counts = np.bincount(labels[parts.order], minlength=N_CLASSES)
    balance = len(parts.order) / (N_CLASSES * np.maximum(counts, 1))

    def step(model: torch.nn.Module, idx: Index) -> dict[str, torch.Tensor]:
        assert isinstance(model, NotesTeacher)
        back = torch.randint(0, length, (len(idx),)).numpy()  # seeded per step by the loop
        grid, valid = parts.chunks(idx, length, back)
        windows, weight, group = grid[valid], np.ones(int(valid.sum())), None
        if ensemble:
            drawn = grid[valid]
            windows, valid = parts.grid(parts.around(grid, valid))
            weight = np.where(np.isin(windows, drawn), 1.0, balance[labels[windows]])
            group = torch.from_numpy(parts.groups(windows)).to(device)
        emb = embed(model, store, windows, device)
        logits = model.sequences(emb, torch.from_numpy(valid).to(device), group)
        y = torch.from_numpy(labels[windows]).to(device)
        ce = F.cross_entropy(logits, y, reduction="none")
        w = torch.from_numpy(weight).to(ce)
        return {"loss": (ce * w).sum() / w.sum(), "task/ce": ce.mean()}

    return step


@torch.no_grad()
def teacher_logits(
    model: NotesTeacher, store: NotesStore, idx: Index, device: torch.device
) -> npt.NDArray[np.float32]:
    """Logits ``[len(idx), 8]`` of the windows ``idx``, in ``idx``'s order, each window run
    with the whole of its segment among ``idx`` (give whole songs: with ``ensemble`` a window
    also hears the other parts among ``idx`` at its bar)."""
    model.eval()
    parts = Parts.of(store, idx)
    out = np.zeros((len(idx), N_CLASSES), np.float32)  # in parts.order
    for a, b, valid in parts.runs():
        windows = parts.order[a:b]
        group = torch.from_numpy(parts.groups(windows)).to(device)
        emb = embed(model, store, windows, device)
        out[a:b] = model.sequences(emb, torch.from_numpy(valid).to(device), group).float().cpu()
    return out[parts.rank[idx]]


def predictor(store: NotesStore, device: torch.device) -> PredictFn:
    """Probabilities of the windows (whole parts) for validation."""

    def predict(model: torch.nn.Module, idx: Index) -> npt.NDArray[np.float32]:
        assert isinstance(model, NotesTeacher)
        return torch.softmax(torch.from_numpy(teacher_logits(model, store, idx, device)), 1).numpy()

    return predict


def train_notes_teacher(
    students: Students,
    cfg: RunConfig,
    run_dir: Path,
    device: torch.device,
    report: Reporter,
    *,
    data_fp: str | None = None,
    rank: int = 0,
) -> Targets:
    """The notes teacher of ``students``' windows (a :class:`NotesStudents`) trained, and its
    logits on their train and test windows: ``(logits [N, 8], heard [N])`` by notes-store
    window, ``heard`` the training windows (the test windows' logits are there to score the
    teacher; zeros elsewhere). Both stages are files of ``run_dir`` (``notes_teacher.pt``,
    ``notes_teacher_outputs.pt``), kept when current for ``data_fp`` (default: a fingerprint
    of the store and the split) and the config; an interrupted training resumes."""
    if not isinstance(students, NotesStudents):
        raise ConfigError("the notes teacher reads contract-2 windows: set model.contract=2")
    run_dir = Path(run_dir)
    fps = fingerprints(cfg, data_fp or notes_fingerprint(students))
    notes, windows = students.notes, students.windows
    train = windows.split["train"]

    def build() -> dict:
        model, state = _fit(students, cfg, run_dir / "checkpoints", fps, device, report)
        for path in (run_dir / "checkpoints").glob("notes_teacher.*.pt"):
            path.unlink(missing_ok=True)
        return checkpoints.checkpoint(
            model,
            role="notes teacher",
            config=to_json(cfg),
            history=state.history,
            best_val_macro_f1=state.best_f1,
        )

    blob = current_or_build(
        run_dir / "notes_teacher.pt", fps["notes_teacher.pt"], build, report, rank
    )
    model = checkpoints.model_from_checkpoint(blob).to(device)
    assert isinstance(model, NotesTeacher)

    def infer() -> dict:
        report.say("notes teacher outputs", "on every training and test window")
        logits = np.zeros((len(notes), N_CLASSES), np.float32)
        for idx in (train, windows.split["test"]):
            logits[idx] = teacher_logits(model, notes, idx, device)
        return {"logits": logits}

    name = "notes_teacher_outputs.pt"
    logits = current_or_build(run_dir / name, fps[name], infer, report, rank)["logits"]
    heard = np.zeros(len(notes), bool)
    heard[train] = True
    return logits, heard


def _fit(
    students: NotesStudents,
    cfg: RunConfig,
    folder: Path,
    fps: dict[str, str],
    device: torch.device,
    report: Reporter,
) -> tuple[NotesTeacher, LoopState]:
    """Train a new notes teacher through the generic loop (its state file named after the
    stage's fingerprint, so only the same stage resumes from it)."""
    notes, windows, ensemble = students.notes, students.windows, cfg.notes_teacher.ensemble
    optim, length = cfg.notes_teacher.optim, cfg.notes_teacher.optim.sequence
    train, val = windows.split["train"], students.validation()
    parts = Parts.of(notes, train)
    # Examples are chunks (with the ensemble, chunks of every part of a song at once: as many
    # as a bar has parts, on average): the batch and the epoch still count windows.
    fanout = len(train) / (int(parts.groups(train).max(initial=-1)) + 1) if ensemble else 1
    per = max(1, round(length * fanout))
    optim = replace(
        optim,
        batch_size=max(1, optim.batch_size // per),
        samples_per_epoch=max(1, (optim.samples_per_epoch or len(train)) // per),
    )
    task = Task(
        name="notes teacher",
        step=chunk_step(notes, parts, length, device, ensemble=ensemble),
        predict=predictor(notes, device),
        train_labels=windows.labels[train],
        train_index=train,
        val_index=val,
        val_labels=windows.labels[val],
    )
    report.say(task.name, "training")
    torch.manual_seed(cfg.seed)
    state_file = folder / f"notes_teacher.{fps['notes_teacher.pt']}.pt"
    model = new_notes_teacher(cfg).to(device)
    return fit(model, task, optim, seed=cfg.seed, checkpoint=state_file, report=report)


def notes_fingerprint(students: NotesStudents) -> str:
    """What the notes teacher learns from, without an audio store: the store (its folder and
    size) and the windows of each side of its split."""
    digest = hashlib.sha1()
    for side in ("train", "validation", "test"):
        digest.update(students.windows.split[side].astype(np.int64).tobytes())
    notes = students.notes
    return fingerprint("notes windows", str(notes.folder.resolve()), len(notes), digest.hexdigest())


# ------------------------------------------------------------------------------- targets


def log_probs(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``log_softmax`` over the last axis, as float32."""
    return torch.log_softmax(torch.from_numpy(logits).float(), dim=-1).numpy()


def combine(audio: Targets, notes: Targets) -> Targets:
    """Both teachers' targets as one ``(logits, heard)``: where both heard a window, the mean
    of their log-probabilities (a product of the two experts, normalised); where one did, its
    log-probabilities. Log-probabilities are logits of the same distribution, and the mean
    of two at any temperature T gives the normalised geometric mean of their tempered
    distributions: the two teachers count alike, whatever T, and a class either one rules
    out stays ruled out (an average of probabilities would keep half of it)."""
    (la, ha), (ln, hn) = audio, notes
    out = np.zeros_like(ln)
    out[hn] = log_probs(ln[hn])
    out[ha & ~hn] = log_probs(la[ha & ~hn])
    both = ha & hn
    out[both] = (log_probs(la[both]) + out[both]) / 2
    return out, ha | hn


def targets(which: str, audio: Targets | None, notes: Targets | None) -> Targets:
    """KDIC's ``(logits, heard)`` for ``distill.teacher`` ``which``: the audio teacher's,
    the notes teacher's, or both :func:`combine`\\ d."""
    picked = {"audio": audio, "notes": notes}.get(which)
    if which == "both" and audio is not None and notes is not None:
        return combine(audio, notes)
    if picked is None:
        raise ConfigError(f"distill.teacher={which}: its teacher's outputs are missing")
    return picked
