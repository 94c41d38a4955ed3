"""A part's windows in order: training and scoring students that carry a history (contracts 2, 3).

Live, the daemon hears a part window after window (a window per bar line) and keeps a state per
channel, reset on Start, Stop, a Song Position Pointer jump, and after the part has been silent
for :data:`RESET_BARS` bars. Here the same: a part's windows (of the notes store) in bar order
are one *segment* until a silence that long, and a student's state runs along each segment.

- :func:`successors`: the next window of each window's segment, for training on chunks;
- :func:`history_step`: the loss of a batch of chunks (the running answer's cross-entropy at
  every step), for a student whose window encoder has learnt first;
- :func:`running_answers`: every window's window answer and running answer, causally, for
  validation and test; :func:`answers_after` reads the part-level answers after N bars.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from live.taxonomy import N_CLASSES
from train.data.notes import NotesStore
from train.ensemble import attend_in_groups, group_keys
from train.models import PartStudent
from train.steps import Index, Source, StepFn

#: A part silent for this many bars starts afresh (so does the daemon).
RESET_BARS = 4
#: Parts are scored after hearing this many bars (a window per bar: after N - 1 windows).
BARS_HEARD = (2, 4, 8, 16)


def segments(
    store: NotesStore,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``(order, segment, position)``: the windows in (song, part, bar) order, the segment of
    each (in that order) and its position in the segment. A segment ends with its part or at a
    silence of more than :data:`RESET_BARS` bars."""
    return order_segments(*(store.index[k] for k in ("song", "part", "bar")))


def order_segments(
    song: npt.ArrayLike, part: npt.ArrayLike, bar: npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """:func:`segments` of windows given by their song, part and first bar (``[N]`` each)."""
    song, part, bar = (np.asarray(a).astype(np.int64) for a in (song, part, bar))
    order = np.lexsort((bar, part, song))
    s, p, b = song[order], part[order], bar[order]
    new = np.ones(len(order), bool)
    new[1:] = (s[1:] != s[:-1]) | (p[1:] != p[:-1]) | (b[1:] - b[:-1] > RESET_BARS)
    segment = np.cumsum(new) - 1
    start = np.flatnonzero(new)
    position = np.arange(len(order)) - start[segment]
    return order, segment, position


def successors(store: NotesStore) -> npt.NDArray[np.int64]:
    """``next[i]``: the window after window ``i`` in its segment, or -1."""
    order, segment, _ = segments(store)
    nxt = np.full(len(order), -1, np.int64)
    same = segment[1:] == segment[:-1]
    nxt[order[:-1][same]] = order[1:][same]
    return nxt


def chunks(
    starts: npt.NDArray[np.int64], nxt: npt.NDArray[np.int64], length: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """``(idx [B, length], valid [B, length])``: each start and the windows after it, as far as
    its segment goes (the rest padded with the start and marked invalid)."""
    idx = np.empty((len(starts), length), np.int64)
    valid = np.zeros((len(starts), length), bool)
    cur = starts.copy()
    alive = np.ones(len(starts), bool)
    for k in range(length):
        idx[:, k] = np.where(alive, cur, starts)
        valid[:, k] = alive
        cur = np.where(alive, nxt[cur], -1)
        alive &= cur >= 0
    return idx, valid


def history_step(
    source: Source, nxt: npt.NDArray[np.int64], length: int, device: torch.device
) -> StepFn:
    """Chunks of up to ``length`` successive windows from each sampled start: the
    cross-entropy of the running answer at every step (a part keeps its instrument: its
    label). The window encoder is frozen by then (``PartStudent.freeze_window``), so this
    trains the history alone."""

    def step(model: torch.nn.Module, idx: npt.NDArray[np.int64]) -> dict[str, torch.Tensor]:
        grid, valid = chunks(idx, nxt, length)
        x, y = source(grid[valid])
        y = y.to(device)
        _, part = model(x.to(device), torch.from_numpy(valid).to(device))  # one forward (DDP)
        ce = F.cross_entropy(part, y)
        return {"loss": ce, "part/ce": ce}

    return step


def cached_history_step(
    cache: torch.Tensor,
    row: npt.NDArray[np.int64],
    labels: npt.NDArray[np.int64],
    nxt: npt.NDArray[np.int64],
    length: int,
    device: torch.device,
) -> StepFn:
    """:func:`history_step` over embeddings computed once (a student whose window embeddings
    attend to each other: ``train.ensemble.attended_embeddings``): window ``i``'s is
    ``cache[row[i]]``; the window encoder and the attention are frozen by then."""

    def step(model: torch.nn.Module, idx: npt.NDArray[np.int64]) -> dict[str, torch.Tensor]:
        grid, valid = chunks(idx, nxt, length)
        emb = cache[torch.from_numpy(row[grid[valid]])].to(device)
        y = torch.from_numpy(labels[grid[valid]]).to(device)
        _, part = model(None, torch.from_numpy(valid).to(device), emb=emb)
        ce = F.cross_entropy(part, y)
        return {"loss": ce, "part/ce": ce}

    return step


def _in_order(store: NotesStore, idx: Index) -> tuple[Index, Index, Index]:
    """``(order, segment, position)`` of :func:`segments`, restricted to the windows ``idx``
    (whole parts), with ``order`` as positions into ``idx`` and segments renumbered 0.."""
    order, segment, position = segments(store)
    keep = np.isin(order, idx)
    order, position = order[keep], position[keep]
    segment = np.unique(segment[keep], return_inverse=True)[1]
    rank = np.argsort(idx)[np.searchsorted(np.sort(idx), order)]
    return rank, segment, position


def running_mean(
    store: NotesStore, idx: Index, probs: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """The running answer of a model without a state: at each window, the mean of the
    window answers of its segment so far. ``probs`` and the result are in ``idx``'s order."""
    rank, segment, position = _in_order(store, idx)
    total = np.zeros((int(segment.max()) + 1 if len(segment) else 0, N_CLASSES))
    out = np.empty_like(probs)
    for k in range(int(position.max()) + 1 if len(position) else 0):
        at = position == k
        total[segment[at]] += probs[rank[at]]
        out[rank[at]] = total[segment[at]] / (k + 1)
    return out


@torch.no_grad()
def running_answers(
    model: PartStudent,
    source: Source,
    store: NotesStore,
    idx: Index,
    device: torch.device,
    batch: int = 1024,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """``(window, running)`` probabilities ``[len(idx), 8]`` of windows ``idx`` (whole parts),
    in ``idx``'s order: the window answer, and the running answer, causally: the state's after
    every window of the segment up to this one (:func:`running_mean` without a state). A
    student whose embeddings attend to each other reads each window's with its group's
    (``train.ensemble``: the windows ``idx`` hold whole groups)."""
    model.eval()
    rank, segment, position = _in_order(store, idx)
    ordered = idx[rank]
    embs = [
        model.embed(source(ordered[s : s + batch])[0].to(device))
        for s in range(0, len(ordered), batch)
    ]
    emb = torch.cat(embs) if embs else torch.zeros(0, model.embedding_dim, device=device)
    if model.context is not None:
        emb = attend_in_groups(model, emb, group_keys(store, ordered))
    window = np.empty((len(idx), N_CLASSES), np.float32)
    window[rank] = torch.softmax(model.head(emb), dim=1).cpu().numpy()
    if not model.state_dim:
        return window, running_mean(store, idx, window)
    running = np.empty_like(window)
    h = torch.zeros(int(segment.max()) + 1 if len(segment) else 0, model.state_dim, device=device)
    for k in range(int(position.max()) + 1 if len(position) else 0):
        at = np.flatnonzero(position == k)
        rows = torch.from_numpy(segment[at]).to(device)
        h[rows] = model.history(emb[torch.from_numpy(at).to(device)], h[rows])
        running[rank[at]] = torch.softmax(model.part_head(h[rows]), dim=1).cpu().numpy()
    return window, running


def answers_after(
    store: NotesStore, idx: npt.NDArray[np.int64], running: npt.NDArray[np.float32], bars: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """``(labels, probs)`` of every part among windows ``idx`` that has at least ``bars - 1``
    windows: its running answer after its ``bars - 1``-th window (having heard ``bars`` bars)."""
    song, part, bar = (store.index[k][idx].astype(np.int64) for k in ("song", "part", "bar"))
    order = np.lexsort((bar, part, song))
    s, p = song[order], part[order]
    first = np.ones(len(order), bool)
    first[1:] = (s[1:] != s[:-1]) | (p[1:] != p[:-1])
    start = np.flatnonzero(first)
    nth = start + bars - 2
    end = np.r_[start[1:], len(order)]
    ok = nth < end
    pick = order[nth[ok]]
    return store.labels[idx][pick], running[pick]
