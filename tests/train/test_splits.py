"""train.splits: the three splits, what they leak, and the lookup table of exact rolls."""

from __future__ import annotations

import numpy as np
import pytest

from train.splits import (
    LookupTable,
    leakage,
    roll_keys,
    song_shares,
    sparse_roll_keys,
    split_windows,
    window_keys,
)

SONGS, BARS = 40, 24


def table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Windows at a 1-bar hop (bar b and b + 1 share a bar) of 2 parts of 40 songs, each song
    on the side a song split gives it: (side, song, part, bar) per window."""
    song = np.repeat([f"song{i:02d}" for i in range(SONGS)], 2 * BARS)
    part = np.tile(np.repeat([0, 1], BARS), SONGS)
    bar = np.tile(np.arange(BARS), 2 * SONGS)
    sides = np.array(["train"] * 32 + ["validation"] * 4 + ["test"] * 4)
    return np.repeat(sides, 2 * BARS), song, part, bar


def sides_of(split: dict[str, np.ndarray], n: int) -> list[set[str]]:
    """The sides each window is on."""
    out: list[set[str]] = [set() for _ in range(n)]
    for name, idx in split.items():
        for i in idx:
            out[i].add(name)
    return out


def test_the_song_split_never_puts_a_song_on_two_sides() -> None:
    side, song, part, bar = table()
    split = split_windows("song", side, song, window_keys(song, part, bar))
    where = sides_of(split, len(song))
    assert all(len(s) == 1 for s in where)
    for name in set(song):
        assert len({next(iter(where[i])) for i in np.flatnonzero(song == name)}) == 1


def test_the_window_split_puts_overlapping_windows_of_one_song_on_both_sides() -> None:
    side, song, part, bar = table()
    split = split_windows("window", side, song, window_keys(song, part, bar))
    where = [next(iter(s)) for s in sides_of(split, len(song))]
    sizes = {k: len(v) / len(song) for k, v in split.items()}
    assert 0.72 < sizes["train"] < 0.88 and 0.05 < sizes["test"] < 0.15
    # neighbours (the same part, bars b and b + 1: they overlap by a bar) on either side
    straddle = [
        i
        for i in range(len(song) - 1)
        if song[i] == song[i + 1] and part[i] == part[i + 1] and where[i] != where[i + 1]
    ]
    assert any({where[i], where[i + 1]} == {"train", "test"} for i in straddle)
    assert sum(len({where[i] for i in np.flatnonzero(song == s)}) > 1 for s in set(song)) > 30
    # stable: the same keys give the same split, another order of the same windows too
    again = split_windows("window", side, song, window_keys(song, part, bar))
    assert all(np.array_equal(split[k], again[k]) for k in split)
    order = np.random.default_rng(0).permutation(len(song))
    shuffled = split_windows(
        "window", side[order], song[order], window_keys(song[order], part[order], bar[order])
    )
    assert sorted(order[shuffled["test"]]) == sorted(split["test"])


def test_slakh_orig_on_a_collection_copies_a_share_of_the_test_songs_into_train() -> None:
    side, song, part, bar = table()
    keys = window_keys(song, part, bar)
    honest = split_windows("song", side, song, keys)
    leaky = split_windows("slakh-orig", side, song, keys, duplicates=0.5)
    assert np.array_equal(leaky["test"], honest["test"])
    assert np.array_equal(leaky["validation"], honest["validation"])
    again = np.setdiff1d(leaky["train"], honest["train"])
    assert set(again) <= set(honest["test"])
    copied = set(song[again])
    test_songs = set(song[honest["test"]])
    assert 0 < len(copied) < len(test_songs)
    for name in copied:  # whole songs: every window of the song is on both sides
        assert set(np.flatnonzero(song == name)) <= set(again)
    shares = dict(zip(song, song_shares(song), strict=True))
    assert copied == {s for s in test_songs if shares[s] < 0.5}
    none = split_windows("slakh-orig", side, song, keys, duplicates=0.0)
    assert np.array_equal(none["train"], honest["train"])


def test_a_shipped_split_keeps_its_duplicates_under_slakh_orig_and_not_under_song() -> None:
    """Slakh2100: two tracks rendered from one MIDI file (one UUID) on two sides."""
    side = np.array(["train"] * 4 + ["test"] * 4)
    song = np.array(["uuid-a"] * 4 + ["uuid-a"] * 2 + ["uuid-b"] * 2)
    keys = window_keys(song, np.zeros(8, int), np.arange(8))
    shipped = split_windows("slakh-orig", side, song, keys, shipped=True)
    assert shipped["train"].tolist() == [0, 1, 2, 3] and shipped["test"].tolist() == [4, 5, 6, 7]
    honest = split_windows("song", side, song, keys, shipped=True)
    assert honest["train"].tolist() == [0, 1, 2, 3, 4, 5] and honest["test"].tolist() == [6, 7]
    with pytest.raises(ValueError, match="song, window, slakh-orig"):
        split_windows("random", side, song, keys)


def rolls(*cells: tuple[int, ...]) -> np.ndarray:
    """One 128 x 16 roll per tuple of sounding (pitch, step) pairs written as pitch*16+step."""
    out = np.zeros((len(cells), 128, 16), np.uint8)
    for row, on in enumerate(cells):
        out[row].reshape(-1)[list(on)] = 1
    return out


def test_equal_rolls_share_a_key_and_different_ones_do_not() -> None:
    a, b, c = (60 * 16, 64 * 16 + 3), (60 * 16,), (60 * 16, 64 * 16 + 4)
    keys = roll_keys(rolls(a, b, c, a, ()))
    assert keys[0] == keys[3] and len(set(keys[:3].tolist())) == 3 and keys[4] == 0
    many = (np.random.default_rng(1).random((2000, 128, 16)) < 0.01).astype(np.uint8)
    assert len(set(roll_keys(many).tolist())) == len(np.unique(many.reshape(2000, -1), axis=0))
    rows, cells = np.nonzero(many.reshape(2000, -1))
    assert np.array_equal(sparse_roll_keys(rows, cells, 2000), roll_keys(many))


def test_leakage_counts_test_windows_with_the_same_roll_and_label_in_train() -> None:
    a, b, c = (60 * 16,), (40 * 16, 40 * 16 + 1), (72 * 16 + 8,)
    train = roll_keys(rolls(a, b, a, b))
    train_labels = np.array([0, 1, 2, 1])
    test = roll_keys(rolls(a, a, b, c, c))
    test_labels = np.array([0, 3, 2, 0, 5])
    got = leakage(train, train_labels, test, test_labels)
    # a/0 seen with its label; a/3 and b/2 seen with another label; c never seen
    assert got == {"test_windows": 5, "same_roll": 3, "same_roll_and_label": 1, "share": 0.2}


def test_the_lookup_table_answers_a_seen_roll_by_its_labels_and_the_rest_by_the_prior() -> None:
    a, b, c = (60 * 16,), (40 * 16,), (72 * 16,)
    table = LookupTable.fit(roll_keys(rolls(a, a, a, b, b)), np.array([4, 4, 2, 1, 1]))
    probs = table(roll_keys(rolls(a, b, c)))
    assert probs.shape == (3, 8) and np.allclose(probs.sum(1), 1)
    assert probs[0, 4] == pytest.approx(2 / 3) and probs[0, 2] == pytest.approx(1 / 3)
    assert probs[1].argmax() == 1
    assert probs[2].argmax() in (1, 4) and probs[2, 1] == pytest.approx(2 / 5)  # the prior
    empty = LookupTable.fit(roll_keys(rolls()), np.zeros(0, np.int64))
    assert empty(roll_keys(rolls(a))).shape == (1, 8)
