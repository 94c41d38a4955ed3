"""Batches from the window store: piano rolls for students, log-mel for the teacher.

The store is memory-mapped; a batch is gathered by index (no per-item Dataset objects: a roll
is 2 KB and per-item Python overhead would dominate). Every source returns ``(x, y)`` tensors
for an array of store indices; distillation adds the teacher's cached outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from live.contract import MEL
from live.taxonomy import CLASSES
from train.data.notes import SHAPE, NotesStore
from train.data.store import WindowStore

LABEL_INDEX = {name: i for i, name in enumerate(CLASSES)}

#: Random 64-bit words, two per (channel, pitch, value): a step's key is the sum (mod 2**64)
#: of its cells' words, so two different steps share a key with probability 2**-128.
_CELL_WORDS = np.random.default_rng(0x5EED).integers(
    0, 2**64, size=(SHAPE[0] * SHAPE[1] * 256, 2), dtype=np.uint64, endpoint=False
)


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


@dataclass
class SparseWindows:
    """Contract-2 or 3 windows as their nonzero cells, what the notes store holds (its view of
    the student's contract, :meth:`NotesStore.window_cells`): cell ``k`` is window
    ``rows[k]``'s flat position ``cells[k]`` in ``[5, 128, 16]`` (channel, pitch, step) with
    the integer ``values[k]``. A student whose window encoder can read cells
    (:meth:`train.models.StepCNN.embed_cells`) skips building ``n x 10,240`` dense inputs;
    any other reads :meth:`dense`, the same inputs :meth:`NotesStore.inputs` gives."""

    rows: torch.Tensor  # int64 [M]
    cells: torch.Tensor  # int64 [M]
    values: torch.Tensor  # float32 [M]
    n: int

    def __len__(self) -> int:
        return self.n

    def to(self, device: torch.device | str) -> SparseWindows:
        return SparseWindows(
            self.rows.to(device), self.cells.to(device), self.values.to(device), self.n
        )

    def dense(self) -> torch.Tensor:
        """``float32 [n, 5, 128, 16]``."""
        out = torch.zeros(self.n, SHAPE[0] * SHAPE[1] * SHAPE[2], device=self.values.device)
        out[self.rows, self.cells] = self.values
        return out.view(self.n, *SHAPE)

    def distinct_steps(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(steps, which)``: the distinct steps of the windows (a step: one eighth note of
        a window, its ``[5, 128]`` cells), ``float32 [U, 5, 128, 1]``, and which of them is
        step ``t`` of window ``i``: ``which[i * 16 + t]``. Repetitive music has few: the two
        bars a window shares with the next, a riff played again, the silent steps. Steps are
        told apart by a 128-bit key of their cells (:data:`_CELL_WORDS`)."""
        device = self.values.device
        rows, cells, values = (a.cpu().numpy() for a in (self.rows, self.cells, self.values))
        n_steps = SHAPE[2]
        column = rows * n_steps + cells % n_steps  # the step a cell is in
        place = cells // n_steps  # its channel * 128 + pitch
        keys = np.zeros((self.n * n_steps, 2), np.uint64)
        np.add.at(keys, column, _CELL_WORDS[place * 256 + values.astype(np.int64)])
        _, first, which = np.unique(
            keys.view([("a", np.uint64), ("b", np.uint64)]).ravel(),
            return_index=True,
            return_inverse=True,
        )
        which = which.ravel()
        own = first[which[column]] == column  # the cells of each distinct step's first copy
        steps = torch.zeros(len(first), SHAPE[0] * SHAPE[1], device=device)
        at = torch.from_numpy(which[column[own]]), torch.from_numpy(place[own])
        steps[at] = self.values[torch.from_numpy(own).to(device)]
        return steps.view(-1, SHAPE[0], SHAPE[1], 1), torch.from_numpy(which).to(device)

    def parts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(channel, pitch, step)`` of every cell, int64 ``[M]`` each."""
        per_channel = SHAPE[1] * SHAPE[2]
        return (
            self.cells // per_channel,
            self.cells % per_channel // SHAPE[2],
            self.cells % SHAPE[2],
        )


class NotesSource:
    """A contract-2 or 3 student's input, as the store's view of its contract gives it: ``x``
    [B, 5, 128, 16] float32 (the contract's integers; the model scales velocity), ``y`` [B]
    int64."""

    def __init__(self, store: NotesStore, *, cells: bool = False) -> None:
        self.store, self.labels, self.cells = store, store.labels, cells

    def __call__(
        self, idx: npt.NDArray[np.int64]
    ) -> tuple[torch.Tensor | SparseWindows, torch.Tensor]:
        """With ``cells``, ``x`` is :class:`SparseWindows` (what contract-2 students read
        fastest); else dense."""
        y = torch.from_numpy(self.labels[idx])
        if self.cells:
            rows, cells, values = self.store.window_cells(idx)
            x = SparseWindows(
                torch.from_numpy(rows),
                torch.from_numpy(cells.astype(np.int64)),
                torch.from_numpy(values.astype(np.float32)),
                len(idx),
            )
            return x, y
        return torch.from_numpy(self.store.inputs(idx)).float(), y


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
