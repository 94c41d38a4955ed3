"""Would a longer window help? The floor on 2, 4 and 8 bars of a part, per class.

    OMP_NUM_THREADS=1 nice python experiments/window_length.py --notes /work/data3/notes \\
        --train-songs 1800 --test-songs 300 --out window_length.json

The student hears 2 bars. Brass and Reed gain the most from the running answer (which hears
the part so far), so before any contract change this asks, cheaply and offline, whether a
window of 4 or 8 bars would separate the classes better than 2 bars and the running means do.
On a notes store split as ``train.students.NotesStudents`` splits it under ``--split song``
(versions of a song on one side, the shipped bundle's split):

- *2 bars*: the floor's window model (:mod:`train.floor`: gradient boosting on the window's
  hand statistics, :data:`train.floor.FEATURE_NAMES`);
- *4 bars*, *8 bars*: the same, with the statistics of the 1 or 3 two-bar windows of the same
  part that end where this one starts, 2, 4 and 6 bars earlier, beside its own (missing where
  the part was silent there or the song had not begun: gradient boosting takes a missing value
  as a value of its own). Causal: a window never reads a later bar;
- *running*: the floor's running model (its own statistics and their mean over the part's
  windows so far), the floor's running answer, for reference.

Each model is fitted on at most ``--max-train-windows`` windows of the first N training songs
(the stable order ``train_fraction`` takes them in, as ``experiments/floor.py``), drawn at
random with ``--seed`` (the same windows for every model), and scored on every window of the
first K test songs: window macro-F1 and F1 per class, on every window and on the windows whose
part had begun 6 bars before (where an 8-bar window is whole). Writes the JSON and prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sklearn.metrics import f1_score

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "experiments"))

from floor import fit_pool, n_songs, predict, say, side_arguments, sides, timed_fit  # noqa: E402

from live.taxonomy import CLASSES  # noqa: E402
from train import floor  # noqa: E402
from train.data.notes import NotesStore  # noqa: E402
from train.students import floor_features  # noqa: E402

Index = npt.NDArray[np.int64]
#: Each model's name and how many earlier 2-bar windows it reads beside the window's own.
LENGTHS = {"2 bars": 0, "4 bars": 1, "8 bars": 3}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    side_arguments(p, test_songs=300)
    args = p.parse_args()
    notes = NotesStore(args.notes)
    test, train_all, train = sides(
        notes, args.train_songs, args.test_songs, args.max_train_windows, args.seed
    )
    say(f"train: {len(train):,} windows of {n_songs(train, notes):,} songs; test: {len(test):,}")

    t0 = time.perf_counter()
    x_train, x_test = (
        lookback_features(notes, idx, whole) for idx, whole in ((train, train_all), (test, test))
    )
    say(f"features: {time.perf_counter() - t0:.0f} s")
    own = len(floor.FEATURE_NAMES)
    run_train, run_test = (
        floor_features(notes, whole, idx) for idx, whole in ((train, train_all), (test, test))
    )
    inputs = {
        name: (x_train[:, : own * (1 + k)], x_test[:, : own * (1 + k)])
        for name, k in LENGTHS.items()
    }
    inputs["running"] = (run_train, run_test)

    y_train, y_test = notes.labels[train], notes.labels[test]
    bar = notes.index["bar"][test]
    begun = bar - part_start(notes, test) >= 6
    result: dict = {
        "notes": str(args.notes),
        "train": {"windows": len(train), "songs": n_songs(train, notes)},
        "test": {
            "windows": len(test),
            "songs": n_songs(test, notes),
            "begun_6_bars": int(begun.sum()),
        },
        "models": {},
    }
    with fit_pool() as pool:  # two fits side by side, one thread each
        fits = {
            name: pool.submit(timed_fit, xt, y_train, args.seed) for name, (xt, _) in inputs.items()
        }
        for name, fut in fits.items():
            model, seconds = fut.result()
            answer = predict(model, inputs[name][1]).argmax(1)
            result["models"][name] = {
                "features": int(inputs[name][0].shape[1]),
                "fit_seconds": round(seconds, 1),
                "iterations": int(model.n_iter_),
                "all": scores(y_test, answer),
                "begun": scores(y_test[begun], answer[begun]),
            }
            args.out.write_text(json.dumps(result, indent=1) + "\n")
            say(f"{name}: window {result['models'][name]['all']['macro_f1']:.3f}")
    print(table(result))


def lookback_features(notes: NotesStore, idx: Index, whole: Index) -> npt.NDArray[np.float32]:
    """``[len(idx), (1 + 3) * F]``: each window's own statistics, then those of the windows of
    its part 2, 4 and 6 bars earlier (NaN where the part has no window there), looked up among
    ``whole`` (the windows ``idx`` come from, every window of their songs)."""
    k = max(LENGTHS.values())
    rows = np.stack([idx, *(earlier(notes, idx, whole, 2 * j) for j in range(1, k + 1))], 1)
    need = np.unique(rows[rows >= 0])
    feats = window_features(notes, need)
    own = feats.shape[1]
    out = np.full((len(idx), (1 + k) * own), np.nan, np.float32)
    for j in range(1 + k):
        have = rows[:, j] >= 0
        out[have, j * own : (j + 1) * own] = feats[np.searchsorted(need, rows[have, j])]
    return out


def earlier(notes: NotesStore, idx: Index, whole: Index, bars: int) -> Index:
    """The row (in the store) of the window of each of ``idx``'s parts that starts ``bars``
    bars before it, among ``whole``; -1 where there is none."""
    key = window_key(notes, whole)
    order = np.argsort(key)
    want = window_key(notes, idx, shift=-bars)
    at = np.clip(np.searchsorted(key[order], want), 0, len(key) - 1)
    found = key[order][at] == want
    return np.where(found, whole[order][at], -1)


def window_key(notes: NotesStore, idx: Index, shift: int = 0) -> npt.NDArray[np.int64]:
    """One integer per window: its song, part and first bar (plus ``shift``)."""
    song, part, bar = (notes.index[c][idx].astype(np.int64) for c in ("song", "part", "bar"))
    return (song << 32) | (part << 20) | (bar + shift + (1 << 19))


def part_start(notes: NotesStore, idx: Index) -> npt.NDArray[np.int64]:
    """The first bar of each window's part (among ``idx``: whole songs)."""
    song, part, bar = (notes.index[c][idx].astype(np.int64) for c in ("song", "part", "bar"))
    key = (song << 32) | part
    first: dict[int, int] = {}
    for k, b in zip(key.tolist(), bar.tolist(), strict=True):
        first[k] = min(b, first.get(k, b))
    return np.array([first[k] for k in key.tolist()], np.int64)


def window_features(notes: NotesStore, idx: Index) -> npt.NDArray[np.float32]:
    """The floor's window statistics (:data:`train.floor.FEATURE_NAMES`) of windows ``idx``."""
    return np.concatenate(
        [
            floor.input_features(notes.inputs(w), notes.index["valid_steps"][w])
            for w in np.array_split(idx, max(1, len(idx) // 8192))
        ]
    )


def scores(y: npt.NDArray[np.int64], answer: npt.NDArray[np.int64]) -> dict:
    labels = list(range(len(CLASSES)))
    per = f1_score(y, answer, labels=labels, average=None, zero_division=0)
    return {
        "macro_f1": float(per.mean()),
        "per_class": dict(zip(CLASSES, map(float, per), strict=True)),
    }


def table(result: dict) -> str:
    """Markdown: window macro-F1 (every window / part begun 6 bars before), then per class."""
    head = "| model | features | window | begun 6 bars | " + " | ".join(CLASSES) + " |"
    rows = [head, "|---|---:|---:|---:|" + "---:|" * len(CLASSES)]
    for name, m in result["models"].items():
        per = " | ".join(f"{m['all']['per_class'][c]:.3f}" for c in CLASSES)
        f1 = f"{m['all']['macro_f1']:.3f} | {m['begun']['macro_f1']:.3f}"
        rows.append(f"| {name} | {m['features']} | {f1} | {per} |")
    t = result["test"]
    return f"Test: {t['windows']:,} windows of {t['songs']:,} songs.\n\n" + "\n".join(rows)


if __name__ == "__main__":
    main()
