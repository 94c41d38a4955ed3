"""Which windows models learn from and which they are tested on, and how much a split leaks.

The paper does not say how it split its data; the split decides its figures. ``kdtrain all
--split`` (:data:`KINDS`):

- ``song`` (default, honest): every window of a song, and of every song that is a version or a
  duplicate of it, is on one side. A collection's songs fall 80/10/10 by their file's hash;
  the notes store groups versions (``train.data.notes``); Slakh2100's tracks rendered from the
  same MIDI file (the same ``UUID``; 57 of its 225 test tracks have a twin in train) go
  together, to the side of the one that comes first in the store.
- ``window``: each window falls on its own side at random (80/10/10 by a hash of its song,
  part and bar), the 1-bar hop of the training windows kept: a test window's neighbours, which
  share a bar with it, and the rest of its part are mostly in train. This is what a random
  split of a table of windows does.
- ``slakh-orig``: Slakh2100 as shipped, its duplicates kept across splits. For a collection,
  the song split with a share of the test songs (:attr:`RunConfig.split_duplicates`, 25% by
  default, about what Slakh2100's test split has) also in train. Slakh renders a duplicate
  with other patches; here it is the same audio, so the teacher leaks more than it would.

What a split leaks is measured on every run (:func:`leakage`): how many test windows have a
roll identical to a training window's, with the same label; and a lookup table of exact rolls
(:class:`LookupTable`) shows how much of a score memory alone reaches.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from live.taxonomy import CLASSES
from train.config import SPLITS as KINDS

Index = npt.NDArray[np.int64]
SIDES: tuple[str, ...] = ("train", "validation", "test")

#: One random 64-bit number per cell of a 128 x 16 roll: a roll's key is the sum of its
#: sounding cells' numbers (Zobrist hashing), so keys of millions of sparse rolls are a few
#: vectorised sums, and two different rolls share a key with probability about 2^-64.
_CELL_KEYS = np.random.default_rng(2017).integers(0, 2**63, size=128 * 16, dtype=np.uint64) * 2 + 1


def split_windows(
    kind: str,
    side: npt.NDArray[np.str_],
    songs: np.ndarray,
    window_keys: npt.NDArray[np.uint64],
    *,
    shipped: bool = False,
    duplicates: float = 0.25,
) -> dict[str, Index]:
    """The windows of each side under ``kind``.

    Args:
        kind: one of :data:`KINDS`.
        side: the side each window was built on (``train``, ``validation``, ``test``).
        songs: each window's song as a string; windows of one song, or of songs that are
            versions or duplicates of one another, share it.
        window_keys: a stable 64-bit key per window (:func:`window_keys`).
        shipped: the sides are a published split with duplicates across it (Slakh2100's
            original numbering): ``song`` moves each song's windows to the side of the first
            of them, ``slakh-orig`` keeps them as they are.
        duplicates: ``slakh-orig`` without ``shipped``: this share of the test songs is also
            in train.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown split {kind!r}: choose one of {', '.join(KINDS)}")
    side = np.asarray(side)
    if kind == "window":
        side = np.array(SIDES)[_bucket(window_keys)]
    elif not (kind == "slakh-orig" and shipped):
        side = _by_song(side, np.asarray(songs))
    split = {s: np.flatnonzero(side == s) for s in SIDES}
    if kind == "slakh-orig" and not shipped and duplicates > 0:
        test = split["test"]
        again = test[song_shares(np.asarray(songs)[test]) < duplicates]
        split["train"] = np.sort(np.concatenate([split["train"], again]))
    return split


def _by_song(side: np.ndarray, songs: np.ndarray) -> np.ndarray:
    """Every window on the side of its song's first window (in window order)."""
    _, first, inverse = np.unique(songs, return_index=True, return_inverse=True)
    return side[first][inverse]


def _bucket(keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """0 (train, 80%), 1 (validation, 10%) or 2 (test, 10%) per key, as songs fall."""
    tenth = (_mix(keys) % np.uint64(10)).astype(np.int64)
    return np.where(tenth < 8, 0, np.where(tenth == 8, 1, 2))


def window_keys(songs: np.ndarray, parts: np.ndarray, bars: np.ndarray) -> npt.NDArray[np.uint64]:
    """A stable 64-bit key per window from its song, part (strings or ints) and bar: the same
    window gets the same key on every machine, whatever else the store holds."""
    with np.errstate(over="ignore"):
        key = _text_keys(songs) ^ _mix(_text_keys(parts))
        return _mix(key ^ (np.asarray(bars).astype(np.uint64) << np.uint64(20)))


def song_shares(songs: np.ndarray) -> npt.NDArray[np.float64]:
    """A number in [0, 1) per window, the same for every window of a song: the songs with a
    share below f are a fraction f of them, and a subset of those below any larger f."""
    return song_hashes(songs).astype(np.float64) / 2.0**32


def train_share(
    split: dict[str, npt.NDArray[np.int64]], songs: np.ndarray, fraction: float
) -> dict[str, npt.NDArray[np.int64]]:
    """``split`` with only a share ``fraction`` of its training songs (:func:`song_shares`;
    ``songs``: the song of every window)."""
    if fraction < 1:
        train = split["train"]
        split["train"] = train[song_shares(songs[train]) < fraction]
    return split


def song_hashes(songs: np.ndarray) -> npt.NDArray[np.int64]:
    """A stable 32-bit hash per entry of ``songs`` (strings or ints, hashed as text)."""
    names, inverse = np.unique(np.asarray(songs).astype(str), return_inverse=True)
    hashes = [int(hashlib.sha1(s.encode()).hexdigest()[:8], 16) for s in names]
    return np.array(hashes, np.int64)[inverse].reshape(-1)


def _text_keys(values: np.ndarray) -> npt.NDArray[np.uint64]:
    """A 64-bit key per entry of ``values`` (hashed as text)."""
    names, inverse = np.unique(np.asarray(values).astype(str), return_inverse=True)
    keys = [int.from_bytes(hashlib.sha1(s.encode()).digest()[:8], "little") for s in names]
    return np.array(keys, np.uint64)[inverse].reshape(-1)


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser: every input bit moves every output bit."""
    x = np.asarray(x, np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


# ------------------------------------------------------------------------------- rolls


def roll_keys(rolls: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """A key per roll ``[N, 128, 16]`` (any nonzero cell sounds): equal rolls, equal keys."""
    rolls = np.asarray(rolls)
    flat = rolls.reshape(len(rolls), int(np.prod(rolls.shape[1:])))
    rows, cells = np.nonzero(flat)
    return sparse_roll_keys(rows, cells, len(flat))


def sparse_roll_keys(
    rows: npt.NDArray[np.int64], cells: npt.NDArray[np.int64], n: int
) -> npt.NDArray[np.uint64]:
    """:func:`roll_keys` of ``n`` rolls given as the (row, flat cell) of each sounding cell,
    rows ascending (as ``np.nonzero`` gives them)."""
    keys = np.zeros(n, np.uint64)
    if len(rows):
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        with np.errstate(over="ignore"):
            keys[rows[starts]] = np.add.reduceat(_CELL_KEYS[cells], starts)
    return keys


def leakage(
    train_keys: npt.NDArray[np.uint64],
    train_labels: npt.NDArray[np.int64],
    test_keys: npt.NDArray[np.uint64],
    test_labels: npt.NDArray[np.int64],
) -> dict:
    """How many test windows have a roll identical to a training window's (``same_roll``),
    and with the same label too (``same_roll_and_label``; ``share``: of the test windows)."""
    n_classes = np.uint64(len(CLASSES))
    with np.errstate(over="ignore"):
        seen = np.isin(test_keys, train_keys)
        pairs = train_keys * n_classes + train_labels.astype(np.uint64)
        same = np.isin(test_keys * n_classes + test_labels.astype(np.uint64), pairs)
    n = len(test_keys)
    return {
        "test_windows": n,
        "same_roll": int(seen.sum()),
        "same_roll_and_label": int(same.sum()),
        "share": float(same.sum() / n) if n else 0.0,
    }


@dataclass
class LookupTable:
    """Memory alone: a roll seen in training gets the labels it had there (their shares, so
    the majority label wins); an unseen roll gets the training prior (its most common class)."""

    keys: npt.NDArray[np.uint64]  # sorted, unique
    probs: npt.NDArray[np.float32]  # [len(keys), 8]
    prior: npt.NDArray[np.float32]  # [8]

    @classmethod
    def fit(cls, keys: npt.NDArray[np.uint64], labels: npt.NDArray[np.int64]) -> LookupTable:
        k = len(CLASSES)
        uniq, inverse = np.unique(keys, return_inverse=True)
        counts = np.bincount(inverse * k + labels, minlength=len(uniq) * k).reshape(-1, k)
        prior = np.bincount(labels, minlength=k).astype(np.float32)
        return cls(
            uniq,
            (counts / counts.sum(1, keepdims=True)).astype(np.float32),
            prior / max(prior.sum(), 1),
        )

    def __call__(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.float32]:
        """Probabilities ``[len(keys), 8]``."""
        at = np.clip(np.searchsorted(self.keys, keys), 0, max(len(self.keys) - 1, 0))
        found = self.keys[at] == keys if len(self.keys) else np.zeros(len(keys), bool)
        out = np.tile(self.prior, (len(keys), 1))
        out[found] = self.probs[at[found]]
        return out
