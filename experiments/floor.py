"""The floor against the shipped student, on the same test windows, as training songs grow.

    OMP_NUM_THREADS=1 nice python experiments/floor.py --notes /work/data/notes \\
        --train-songs 600 1800 7472 --out floor.json

On a notes store (``kdtrain data``'s ``notes/``; the whole Lakh-like corpus for
docs/results.md), split as ``train.students.NotesStudents`` splits it under ``--split song``
(the shipped bundle's: versions of a song on one side):

- the floor (:mod:`train.floor`: gradient boosting on hand statistics of the contract-2
  inputs; the window answer from the window's own statistics, the running answer from those
  and their running means over the part so far), fitted on the windows of the first N
  training songs in the stable order ``train_fraction`` takes them in (their running means
  over all their windows; at most ``--max-train-windows`` of those windows, drawn at random
  with ``--seed`` by :func:`train.floor.sample`, go into each fit: with every training song,
  exactly the windows ``kdtrain all`` fits its floor on). The window and the running model are
  fitted side by side, one process and one thread each. Also scored: one model for both answers (the
  running model's answer on a window's own statistics as if it were the part's first), and
  the window answers averaged;
- the shipped bundle (``live/assets/bundle``, ONNX Runtime on CPU), its window answer and its
  running answer, stepping each part's segments in bar order with the state reset where
  :func:`train.history.order_segments` starts a new one (as the daemon does), each window in
  the bundle's own contract (a contract-3 bundle hears the controllers);
- with ``--blend W ...``: the student and the floor together (the floor with the most training
  songs), the mean of their probabilities with the student's share W, window and running;

all on the test windows (``--test-songs K``: those of the first K test songs in the same
stable order). Window, running, after 2/4/8/16 bars (:func:`train.students.evaluate_windows`).
Writes the JSON (after every model) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from live.model import Model  # noqa: E402
from train import floor  # noqa: E402
from train.baseline import fit_baseline  # noqa: E402
from train.data.notes import NotesStore  # noqa: E402
from train.history import order_segments  # noqa: E402
from train.splits import song_hashes, split_windows, window_keys  # noqa: E402
from train.students import StoredAnswers, evaluate_windows, floor_features  # noqa: E402

Probs = npt.NDArray[np.float32]
BARS = ("2", "4", "8", "16")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--notes", type=Path, required=True)
    p.add_argument("--bundle", type=Path, default=REPO / "live" / "assets" / "bundle")
    p.add_argument("--train-songs", type=int, nargs="+", default=[600, 1800])
    p.add_argument("--max-train-windows", type=int, default=200_000)
    p.add_argument("--test-songs", type=int, default=0, help="0: every test song")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--blend",
        type=float,
        nargs="*",
        default=[],
        help="also score the mean of the student's and the floor's probabilities (the floor "
        "with the most training songs), the student's share W for each W given",
    )
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    notes = NotesStore(args.notes)
    split, sha1 = song_split(notes)
    test = take_songs(split["test"], sha1, args.test_songs)
    train_all = take_songs(split["train"], sha1, max(args.train_songs))
    result: dict = {
        "notes": str(args.notes),
        "test": {"windows": len(test), "songs": n_songs(test, notes)},
        "train_songs_available": n_songs(split["train"], notes),
        "max_train_windows": args.max_train_windows,
        "models": {},
    }
    say(f"test: {len(test):,} windows of {result['test']['songs']:,} songs")

    def save(name: str, entry: dict) -> None:
        result["models"][name] = entry
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        say(f"{name}: {line(entry)}")

    t0 = time.perf_counter()
    model = Model(args.bundle, backend="cpu", threads=2)
    window, running = student_answers(model, notes.view(model.contract), test)
    scored = score(StoredAnswers("student", test, window, running), notes, test)
    save("student (shipped bundle)", scored | {"seconds": round(time.perf_counter() - t0, 1)})
    t0 = time.perf_counter()
    x_test = floor_features(notes, test)
    say(f"test features: {time.perf_counter() - t0:.0f} s")
    chosen = {  # the windows each fit sees, drawn as the product draws them
        n: floor.sample(take_songs(train_all, sha1, n), args.max_train_windows, seed=args.seed)
        for n in sorted(args.train_songs)
    }
    keep = np.unique(np.concatenate(list(chosen.values())))
    t0 = time.perf_counter()
    x_keep = floor_features(notes, train_all, keep)
    say(f"train features ({len(train_all):,} windows): {time.perf_counter() - t0:.0f} s")
    for n, windows in chosen.items():
        x = x_keep[np.searchsorted(keep, windows)]
        for name, entry in fit_floor(x, notes.labels[windows], x_test, args.seed):
            entry |= {"train_songs": n_songs(windows, notes), "train_windows": len(windows)}
            if not name and n == max(chosen):
                for w, blend in blends(window, running, entry, args.blend):
                    save(
                        f"student {w:g} + floor {1 - w:g}, {n} songs",
                        score_entry(blend, notes, test),
                    )
            save(f"floor, {n} songs{name}", score_entry(entry, notes, test))
    print(table(result))


def song_split(notes: NotesStore) -> tuple[dict[str, npt.NDArray[np.int64]], np.ndarray]:
    """The windows of each side, as ``NotesStudents`` splits them under ``--split song``, and
    each window's song hash."""
    song = notes.index["song"]
    sha1 = np.array([s["sha1"] for s in notes.songs])[song]
    keys = window_keys(sha1, notes.index["part"], notes.index["bar"])
    return split_windows("song", notes.song_split[song], notes.song_key[song], keys), sha1


def side_arguments(p: argparse.ArgumentParser, *, test_songs: int) -> None:
    """The options of a script that fits on :func:`sides`: the notes store, the training and
    test songs, the windows fitted on, the seed, the JSON written."""
    p.add_argument("--notes", type=Path, required=True)
    p.add_argument("--train-songs", type=int, default=1800)
    p.add_argument("--test-songs", type=int, default=test_songs, help="0: every test song")
    p.add_argument("--max-train-windows", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)


def sides(
    notes: NotesStore, train_songs: int, test_songs: int, max_train_windows: int, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``(test, train_all, train)``, sorted: every window of the first ``test_songs`` test
    songs and of the first ``train_songs`` training songs (:func:`take_songs`; 0: all), and the
    at most ``max_train_windows`` of the latter that a floor fits on (:func:`train.floor.sample`
    with ``seed``)."""
    split, sha1 = song_split(notes)
    test = np.sort(take_songs(split["test"], sha1, test_songs))
    train_all = np.sort(take_songs(split["train"], sha1, train_songs))
    return test, train_all, floor.sample(train_all, max_train_windows, seed=seed)


def take_songs(idx: npt.NDArray[np.int64], sha1: np.ndarray, n: int) -> npt.NDArray[np.int64]:
    """The windows ``idx`` of the first ``n`` of their songs in the stable order of
    :func:`train.splits.song_hashes` (``train_fraction``'s); all of them if ``n`` is 0."""
    if n <= 0:
        return idx
    names = np.unique(sha1[idx])
    keep = names[np.argsort(song_hashes(names), kind="stable")][:n]
    return idx[np.isin(sha1[idx], keep)]


def n_songs(idx: npt.NDArray[np.int64], notes: NotesStore) -> int:
    return len(np.unique(notes.index["song"][idx]))


def student_answers(
    model: Model, notes: NotesStore, idx: npt.NDArray[np.int64], lines: int = 1024
) -> tuple[Probs, Probs]:
    """The bundle's window and running answers on windows ``idx`` (whole parts), in ``idx``'s
    order, one bar line at a time as the daemon asks: the windows of one song that start at one
    bar are one batch (a student whose channels attend to each other answers them together),
    each part's segments stepped in bar order, the state starting at zero where
    :func:`train.history.order_segments` starts a segment. Inputs are read ``lines`` bar lines
    at a time."""
    order, segment, _ = order_segments(*(notes.index[k][idx] for k in ("song", "part", "bar")))
    seg = np.empty(len(idx), np.int64)
    seg[order] = segment
    song, bar = (notes.index[k][idx].astype(np.int64) for k in ("song", "bar"))
    by_line = np.lexsort((bar, song))  # rows of idx, song by song, bar line by bar line
    key = (song[by_line] << 32) | bar[by_line]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(idx) else np.zeros(0, int)
    ends = np.r_[starts[1:], len(idx)]
    window = np.zeros((len(idx), 8), np.float32)
    running = np.zeros_like(window)
    state = np.zeros((len(segment) and int(segment.max()) + 1, model.state_size), np.float32)
    for first in range(0, len(starts), lines):
        block = slice(first, min(first + lines, len(starts)))
        lo, hi = starts[block][0], ends[block][-1]
        x = notes.inputs(idx[by_line[lo:hi]]).astype(np.float32)
        for a, b in zip(starts[block], ends[block], strict=True):
            rows = by_line[a:b]
            segs = seg[rows]
            window[rows], running[rows], state[segs] = model.step(x[a - lo : b - lo], state[segs])
    return window, running


def fit_floor(
    x: npt.NDArray[np.float32], y: npt.NDArray[np.int64], x_test: npt.NDArray[np.float32], seed: int
) -> list[tuple[str, dict]]:
    """The floor fitted on ``x [n, RUNNING_NAMES]``: two models (the window answer from the
    window's own statistics, the running answer from all), and one model for both."""
    own = len(floor.FEATURE_NAMES)
    with fit_pool() as pool:  # the two fits side by side, one thread each
        fits = [pool.submit(timed_fit, x[:, :own], y, seed), pool.submit(timed_fit, x, y, seed)]
        (window_model, t_window), (running_model, t_running) = (f.result() for f in fits)
    window = predict(window_model, x_test[:, :own])
    running = predict(running_model, x_test)
    first = x_test.copy()  # each window as if it were its part's first: so far = its own
    first[:, own:-1], first[:, -1] = x_test[:, :own], 1
    alone = predict(running_model, first)
    fits = {"window_fit_seconds": round(t_window, 1), "running_fit_seconds": round(t_running, 1)}
    iters = {
        "window_iterations": int(window_model.n_iter_),
        "running_iterations": int(running_model.n_iter_),
    }
    return [
        ("", {"window": window, "running": running} | fits | iters),
        (", one model", {"window": alone, "running": running} | fits | iters),
    ]


def fit_pool(workers: int = 2) -> ProcessPoolExecutor:
    """A pool for gradient-boosting fits whose workers are spawned, not forked: a child forked
    after this process ran OpenMP (any fit or ``predict`` here, unless ``OMP_NUM_THREADS=1``)
    hangs in libgomp the first time it uses OpenMP itself."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def blends(
    window: Probs, running: Probs, floor_entry: dict, shares: list[float]
) -> list[tuple[float, dict]]:
    """For each student share ``w``: the answers ``w * student + (1 - w) * floor``, window and
    running, as :func:`score_entry` takes them."""
    return [
        (
            w,
            {
                "window": w * window + (1 - w) * floor_entry["window"],
                "running": w * running + (1 - w) * floor_entry["running"],
            },
        )
        for w in shares
    ]


def timed_fit(x: npt.NDArray[np.float32], y: npt.NDArray[np.int64], seed: int) -> tuple[Any, float]:
    """:func:`train.baseline.fit_baseline` and its wall time, s."""
    t0 = time.perf_counter()
    return fit_baseline(x, y, seed=seed), time.perf_counter() - t0


def predict(model: Any, x: npt.NDArray[np.float32]) -> Probs:
    probs = np.zeros((len(x), 8), np.float32)
    for s in range(0, len(x), 65536):
        probs[s : s + 65536, model.classes_] = model.predict_proba(x[s : s + 65536])  # type: ignore[attr-defined]
    return probs


def score_entry(entry: dict, notes: NotesStore, test: npt.NDArray[np.int64]) -> dict:
    window, running = entry.pop("window"), entry.pop("running")
    return score(StoredAnswers("floor", test, window, running), notes, test) | entry


def score(answers: StoredAnswers, notes: NotesStore, test: npt.NDArray[np.int64]) -> dict:
    """Window, running, part-level and averaged figures, without the confusion matrices."""
    metrics = evaluate_windows(answers, notes, test, torch.device("cpu"))
    metrics.pop("confusion", None)
    return metrics


def line(entry: dict) -> str:
    parts = entry["parts"]
    return f"window {entry['macro_f1']:.3f} running {entry['running']['macro_f1']:.3f} " + " ".join(
        f"after {b} {parts[b]['macro_f1']:.3f}" for b in BARS if b in parts
    )


def table(result: dict) -> str:
    """Markdown: window, running, after N bars, and the window answers averaged."""
    header = "| model | training windows | window | running | " + " | ".join(
        f"after {b}" for b in BARS
    )
    rows = [header + " | running, window answers averaged |", "|---|---:|" + "---:|" * 7]
    for name, e in result["models"].items():
        parts = [e["parts"].get(b, {}).get("macro_f1") for b in BARS]
        cells = [e["macro_f1"], e["running"]["macro_f1"], *parts, e["mean"]["running"]["macro_f1"]]
        used = f"{e['train_windows']:,}" if "train_windows" in e else ""
        rows.append(
            f"| {name} | {used} | "
            + " | ".join("—" if c is None else f"{c:.3f}" for c in cells)
            + " |"
        )
    test = result["test"]
    return f"Test: {test['windows']:,} windows of {test['songs']:,} songs.\n\n" + "\n".join(rows)


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


if __name__ == "__main__":
    main()
