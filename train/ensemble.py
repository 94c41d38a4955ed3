"""The ensemble as structure (``model.attend``): training and scoring a student whose window
embeddings attend to each other across the parts of a song.

At a bar line the daemon answers every channel that played in the window just closed; a
student with :class:`train.models.ChannelAttention` reads all of them together. Here the same
set is a *group*: the windows of one song that start at the same bar (the parts the notes
store holds there). A student learns from, and is scored on, whole groups:

- :class:`Groups`: the groups of a set of windows; :meth:`Groups.expand` turns the loop's
  class-balanced draws into their whole groups;
- :func:`group_step`: the window answer's loss over the expanded batch, each window weighed
  so the classes still count alike (:func:`class_weights`);
- :func:`attend_in_groups`: the attention over windows already embedded (scoring:
  ``train.history.running_answers``);
- :func:`attended_embeddings`: the frozen, attended embeddings of every training window,
  computed once, which the history learns over (``train.history.cached_history_step``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch

from live.taxonomy import N_CLASSES
from train.batches import balanced_sample
from train.data.notes import NotesStore
from train.models import PartStudent
from train.steps import Index, LossFn, Source, StepFn

#: Windows embedded at once when scoring: whole groups, about this many.
BLOCK = 1024
#: Windows attended at once: whole groups, about this many (the attention over a block is
#: masked to each group, so its cost grows with the block's square for nothing).
ATTEND_BLOCK = 64
#: ``progress(done, total)``: how far a long pass has gone.
Progress = Callable[[int, int], None]
#: Balanced draws expanded to estimate how often each class comes in whole groups.
WEIGHT_DRAWS = 65_536


def group_keys(store: NotesStore, idx: Index) -> npt.NDArray[np.int64]:
    """One integer per window ``idx``, equal for the windows of one song starting at one bar."""
    song = store.index["song"][idx].astype(np.int64)
    return (song << 32) | store.index["bar"][idx].astype(np.int64)


class Groups:
    """The windows ``idx`` of a store by group (song and bar): every window of ``idx`` with
    its group's other windows among ``idx``."""

    def __init__(self, store: NotesStore, idx: Index) -> None:
        key = group_keys(store, idx)
        sort = np.argsort(key, kind="stable")
        self.order, key = np.asarray(idx)[sort], key[sort]
        new = np.r_[True, key[1:] != key[:-1]]
        self.start = np.flatnonzero(new)
        self.size = np.diff(np.r_[self.start, len(self.order)])
        self.group = np.full(len(store), -1, np.int64)  # store index -> its group
        self.group[self.order] = np.cumsum(new) - 1

    def __len__(self) -> int:
        return len(self.start)

    def expand(self, anchors: Index) -> tuple[Index, Index]:
        """``(windows, group)``: each anchor's whole group (the anchor among them), one after
        another, and for each window the position of its anchor in ``anchors``."""
        g = self.group[anchors]
        if np.any(g < 0):
            raise ValueError("an anchor is not among the windows these groups were built on")
        size = self.size[g]
        at = np.repeat(self.start[g] - np.r_[0, np.cumsum(size)[:-1]], size)
        windows = self.order[at + np.arange(int(size.sum()))]
        return windows, np.repeat(np.arange(len(anchors)), size)


def class_weights(
    groups: Groups, index: Index, labels: npt.NDArray[np.int64], seed: int = 0
) -> tuple[npt.NDArray[np.float32], float]:
    """``(weight [8], size)``: per class, the weight that makes whole groups of class-balanced
    draws count every class alike again (the loop draws windows class-balanced; their groups
    bring the common classes back), the mean count over the count of the class; and the mean
    size of a draw's group. Estimated on :data:`WEIGHT_DRAWS` draws from ``index`` (store
    indices; ``labels``: every window's label)."""
    rng = np.random.default_rng(seed)
    anchors = index[balanced_sample(labels[index], WEIGHT_DRAWS, rng)]
    windows, _ = groups.expand(anchors)
    counts = np.bincount(labels[windows], minlength=N_CLASSES).astype(np.float64)
    present = counts > 0
    weight = np.zeros(N_CLASSES, np.float32)
    weight[present] = counts[present].mean() / counts[present]
    return weight, len(windows) / len(anchors)


def group_step(
    source: Source,
    loss: LossFn,
    groups: Groups,
    weight: npt.NDArray[np.float32],
    device: torch.device,
) -> StepFn:
    """A batch of draws, each with its whole group: ``loss`` of the window answers of every
    window, which attended to its group's, each weighed by its class's ``weight``."""
    table = torch.from_numpy(weight)

    def step(model: torch.nn.Module, anchors: Index) -> dict[str, torch.Tensor]:
        windows, group = groups.expand(anchors)
        x, y = source(windows)
        logits = model(x.to(device), group=torch.from_numpy(group).to(device))
        return loss(logits, y.to(device), windows, table[y].to(device))

    return step


def _blocks(keys: npt.NDArray[np.int64], block: int) -> list[tuple[Index, Index]]:
    """Whole groups of about ``block`` windows: ``(rows, group)`` per block, the rows (into
    ``keys``) in group order and each one's group, numbered from 0 in the block."""
    sort = np.argsort(keys, kind="stable")
    new = np.r_[True, keys[sort][1:] != keys[sort][:-1]]
    starts = np.flatnonzero(new)
    cuts = np.unique(starts[np.searchsorted(starts, np.arange(0, len(sort), block), "right") - 1])
    group = np.cumsum(new) - 1
    return [
        (sort[lo:hi], group[lo:hi] - group[lo])
        for lo, hi in zip(cuts, np.r_[cuts[1:], len(sort)], strict=True)
    ]


def attend_in_groups(
    model: PartStudent,
    emb: torch.Tensor,
    keys: npt.NDArray[np.int64],
    block: int = ATTEND_BLOCK,
) -> torch.Tensor:
    """``model.attended`` of embeddings ``emb`` ``[N x D]`` whose windows have the group keys
    ``keys`` (:func:`group_keys`), a block of whole groups at a time; rows in ``emb``'s order."""
    if model.context is None or len(emb) == 0:
        return emb
    out = torch.empty_like(emb)
    for rows, group in _blocks(keys, block):
        at = torch.from_numpy(rows).to(emb.device)
        out[at] = model.attended(emb[at], torch.from_numpy(group).to(emb.device))
    return out


@torch.no_grad()
def attended_embeddings(
    model: PartStudent,
    source: Source,
    store: NotesStore,
    idx: Index,
    device: torch.device,
    block: int = BLOCK,
    progress: Progress | None = None,
) -> torch.Tensor:
    """The embeddings the answers read (after the attention) of the windows ``idx`` (whole
    groups), ``[len(idx) x D]`` in ``idx``'s order; the model in eval mode.
    ``progress(done, total)`` after each block."""
    model.eval()
    out = torch.empty(len(idx), model.embedding_dim, device=device)
    done = 0
    for rows, group in _blocks(group_keys(store, idx), block):
        emb = model.embed(source(idx[rows])[0].to(device))
        out[torch.from_numpy(rows).to(device)] = attend_in_groups(model, emb, group)
        done += len(rows)
        if progress is not None:
            progress(done, len(idx))
    return out
