"""Issue 26: the running answer made of the learnt history and the mean of the window answers.

The shipped student's running answer is its history's (a GRU over the part's window
embeddings). ``experiments/floor.py`` found the plain mean of its window answers over the part
so far scoring above it on the test windows (0.571 against 0.564). This scores, on the
validation and the test windows of a notes store (split as the bundle's), the bundle's
running answer as ``share * history + (1 - share) * mean``, for each ``--share``: window,
running, after 2/4/8/16 bars. The share is chosen on validation, then read on test, and on
every window of each ``--ood NAME=FOLDER`` (as ``experiments/levers.py``'s, its notes store
built once under ``--out``'s folder, ``ood/NAME``).

    OMP_NUM_THREADS=1 python experiments/running_mix.py --notes D/notes --out mix.json [--write]

With ``--write``, the share chosen goes into the bundle's manifest (``state.history_share``,
which ``kdlive listen``, ``replay`` and ``tag`` read: :mod:`live.parts`), and its test figures
replace the manifest's running and part-level ones (the window answer does not change).
The bundle (``live/assets/bundle`` unless ``--bundle``) is stepped one bar line at a time as
the daemon steps it (:func:`floor.student_answers`, ONNX Runtime on CPU); the mean restarts
where the history's state does (:func:`train.history.running_mean`). About 2 minutes a side.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "experiments"))

from floor import BARS, say, score, song_split, student_answers  # noqa: E402
from levers import add_ood_option, ood_store  # noqa: E402
from ood import BOOTSTRAP, confusion, macro_f1, song_draws  # noqa: E402

from live.bundle import MANIFEST_NAME, read_bundle  # noqa: E402
from live.model import Model  # noqa: E402
from train.data.notes import NotesStore  # noqa: E402
from train.history import running_mean  # noqa: E402
from train.progress import reporter  # noqa: E402
from train.students import StoredAnswers  # noqa: E402

Probs = npt.NDArray[np.float32]


def mixed(history: Probs, mean: Probs, share: float) -> Probs:
    """The running answer ``share * history + (1 - share) * mean``."""
    return share * history + (1 - share) * mean


def paired_bootstrap(
    y: npt.NDArray[np.int64],
    song: npt.ArrayLike,
    base: npt.NDArray[np.int64],
    other: npt.NDArray[np.int64],
    draws: int = BOOTSTRAP,
    seed: int = 0,
) -> dict:
    """The macro-F1 of predictions ``other`` minus that of ``base`` (labels ``y``), and its 95%
    interval over ``draws`` resamplings of the songs, the same for both (:func:`ood.song_draws`)."""
    a, b = song_draws(np.asarray(song), y, [base, other], draws, seed)
    low, high = np.percentile(b - a, [2.5, 97.5])
    whole = macro_f1(confusion(y, other)) - macro_f1(confusion(y, base))
    return {"gain": round(whole, 4), "95%": [round(float(low), 4), round(float(high), 4)]}


def figures(metrics: dict) -> dict:
    return {
        "window": round(metrics["macro_f1"], 4),
        "running": round(metrics["running"]["macro_f1"], 4),
        **{f"after {b}": round(m["macro_f1"], 4) for b in BARS if (m := metrics["parts"].get(b))},
        "running per class": {k: round(v, 3) for k, v in metrics["running"]["per_class"].items()},
    }


def write_share(bundle: Path, share: float, test: dict, chosen: dict) -> None:
    """Set the running answer's ``share`` of the history in ``bundle``'s manifest, with the
    test figures ``test`` (:func:`floor.score`'s) it gives, and how it was ``chosen``."""
    manifest = read_bundle(bundle).manifest
    manifest["state"] |= {"history_share": share, "history_share_chosen": chosen}
    manifest["test_metrics"] |= {"running": test["running"], "parts": test["parts"]}
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))
    read_bundle(bundle)  # the reader accepts what was written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--notes", type=Path, required=True)
    p.add_argument("--bundle", type=Path, default=REPO / "live" / "assets" / "bundle")
    p.add_argument("--share", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25, 0.0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--write", action="store_true", help="the chosen share into the bundle")
    add_ood_option(p)
    args = p.parse_args()
    notes = NotesStore(args.notes)
    split, _ = song_split(notes)
    model = Model(args.bundle, backend="cpu", threads=2)
    result: dict = {"notes": str(args.notes), "bundle": str(args.bundle)}
    full: dict[float, dict] = {}  # the test metrics of each share
    stores = {side: (notes, split[side]) for side in ("validation", "test")}
    with reporter() as report:
        for name, folder in args.ood:
            store = ood_store(name, folder, args.out.parent, report)
            stores[name] = (store, np.arange(len(store), dtype=np.int64))
    for side, (store, idx) in stores.items():
        window, history = student_answers(model, store.view(model.contract), idx)
        mean = running_mean(store, idx, window)
        result[side] = {"windows": len(idx)}
        answers_of = {share: mixed(history, mean, share).argmax(1) for share in args.share}
        for share in args.share:
            answers = StoredAnswers("student", idx, window, mixed(history, mean, share))
            metrics = score(answers, store, idx)
            if side == "test":
                full[share] = metrics
            entry = result[side][f"history {share:g}"] = figures(metrics)
            say(
                f"{side}, history {share:g}: "
                + ", ".join(f"{k} {v}" for k, v in entry.items() if k != "running per class")
            )
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        y, song = store.labels[idx].astype(np.int64), store.index["song"][idx]
        result[side]["running gain over the history alone (songs resampled)"] = {
            f"{share:g}": paired_bootstrap(y, song, answers_of[1.0], answers_of[share])
            for share in args.share
            if share != 1.0 and 1.0 in answers_of
        }
        say(f"{side}: {result[side]['running gain over the history alone (songs resampled)']}")
    best = max(args.share, key=lambda s: result["validation"][f"history {s:g}"]["running"])
    result["chosen_on_validation"] = best
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    say(f"chosen on validation: history {best:g}; test: {result['test'][f'history {best:g}']}")
    if args.write:
        chosen = {
            "by": "experiments/running_mix.py, the best validation running macro-F1 of "
            + ", ".join(f"{s:g}" for s in args.share),
            "notes": str(args.notes),
            "validation": {
                f"{s:g}": result["validation"][f"history {s:g}"]["running"] for s in args.share
            },
        }
        write_share(args.bundle, best, full[best], chosen)
        say(f"{args.bundle}: history_share {best:g} written")


if __name__ == "__main__":
    main()
