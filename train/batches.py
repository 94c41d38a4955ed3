"""Batches from the window store: piano rolls for students, log-mel for the teacher.

The store is memory-mapped; a batch is gathered by index (no per-item Dataset objects: a roll
is 2 KB and per-item Python overhead would dominate). Every source returns ``(x, y)`` tensors
for an array of store indices; distillation adds the teacher's cached outputs.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from live.contract import MEL
from live.inputs import DRUMS
from live.taxonomy import CLASSES
from train.data.notes import NotesStore
from train.data.store import WindowStore

LABEL_INDEX = {name: i for i, name in enumerate(CLASSES)}


def labels_of(store: WindowStore) -> npt.NDArray[np.int64]:
    """Class index (contract order) of every window in the store."""
    return np.array([LABEL_INDEX[name] for name in store.index["class"]], dtype=np.int64)


class RollSource:
    """Student input: ``x`` [B, 1, 128, 16] float32 of 0/1, ``y`` [B] int64."""

    def __init__(self, store: WindowStore, labels: npt.NDArray[np.int64]) -> None:
        self.store, self.labels = store, labels

    def __call__(self, idx: npt.NDArray[np.int64]) -> tuple[torch.Tensor, torch.Tensor]:
        order = np.argsort(idx)  # sorted reads from the memory map, then back in batch order
        rolls = np.empty((len(idx), *self.store.rolls.shape[1:]), np.float32)
        rolls[order] = self.store.rolls[idx[order]]
        return torch.from_numpy(rolls).unsqueeze(1), torch.from_numpy(self.labels[idx])


class NotesSource:
    """Contract-v2 student input: ``x`` [B, 5, 128, 16] float32 (the contract's integers; the
    model scales velocity), ``y`` [B] int64.

    With ``transpose`` > 0 (training), each window's pitched channels (all but the drums) move
    by a random whole number of semitones in ``[-transpose, transpose]``, notes pushed past
    either end of the keyboard dropped; the label is the window's. torch's RNG draws the
    shifts, so the loop's per-step seed makes them reproducible."""

    def __init__(self, store: NotesStore, *, transpose: int = 0) -> None:
        self.store, self.labels, self.transpose = store, store.labels, transpose

    def __call__(self, idx: npt.NDArray[np.int64]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(self.store.inputs(idx)).float()
        if self.transpose:
            x = transposed(x, torch.randint(-self.transpose, self.transpose + 1, (len(idx),)))
        return x, torch.from_numpy(self.labels[idx])


def transposed(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Contract-v2 inputs ``[B, 5, P, T]`` with window ``b``'s pitched channels moved up by
    ``shifts[b]`` semitones (down if negative), zero-filled; the drums stay."""
    out = x.clone()
    pitched, n = slice(0, DRUMS), x.shape[2]
    for s in shifts.unique().tolist():
        rows = shifts == s
        part = x[rows, pitched]
        moved = torch.zeros_like(part)
        if s >= 0:
            moved[:, :, s:] = part[:, :, : n - s]
        else:
            moved[:, :, : n + s] = part[:, :, -s:]
        out[rows, pitched] = moved
    return out


class MelSource:
    """Teacher input: ``x`` [B, 1, n_mels, frames] float32 dB, cropped or padded at the end.

    Padding is with the log floor (digital silence), as the paper zero-pads the audio. With
    ``random_crop`` a window longer than ``frames`` is cropped at a random offset (training);
    otherwise from its start (evaluation), so evaluation is deterministic.
    """

    def __init__(
        self,
        store: WindowStore,
        labels: npt.NDArray[np.int64],
        *,
        frames: int,
        random_crop: bool = False,
    ) -> None:
        self.store, self.labels, self.frames = store, labels, frames
        self.random_crop = random_crop

    def __call__(self, idx: npt.NDArray[np.int64]) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.full((len(idx), 1, MEL.n_mels, self.frames), MEL.top_db_floor, np.float32)
        offsets = self.store.index["mel_offset"]
        lengths = self.store.index["mel_frames"]
        for row, i in enumerate(idx):
            n = int(lengths[i])
            start = 0
            if n > self.frames and self.random_crop:  # torch's RNG: seeded per training step
                start = int(torch.randint(0, n - self.frames + 1, ()).item())
            take = min(n - start, self.frames)
            off = int(offsets[i]) + start
            x[row, 0, :, :take] = self.store.mel_frames[off : off + take].T
        return torch.from_numpy(x), torch.from_numpy(self.labels[idx])


def balanced_sample(
    labels: npt.NDArray[np.int64], n: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """``n`` positions into ``labels`` drawn with replacement so every class present is equally
    likely: the model sees each instrument as often, which is what macro-F1 rewards, and the
    same sampler serves the cross-entropy and the distillation losses alike."""
    counts = np.bincount(labels, minlength=len(CLASSES)).astype(np.float64)
    weights = 1.0 / counts[labels]
    return rng.choice(len(labels), size=n, replace=True, p=weights / weights.sum())
