"""Issue 26: what the out-of-domain figure measures.

The goal asks 0.45 window macro-F1 on each of the two game-music sets; the students score
0.32-0.36 there against 0.51 in domain. Three questions, answered for one run's student:

- *How much of it is sampling?* A set's macro-F1 weighs each of the 8 classes alike, and some
  classes are played by a handful of parts in a few songs there: the parts per class, and a
  95% interval from resampling the set's songs (:data:`BOOTSTRAP` times).
- *How much is rare classes?* Macro-F1 over the classes played by at least :data:`MIN_PARTS`
  parts of the set (their windows only), beside the same on the in-domain test windows (from
  the run's confusion matrix).
- *How much is prior shift?* The answers reweighted by the set's true class frequencies over
  the in-domain test's (an oracle: no correction of the priors can do better).

    python experiments/ood.py RUN --data D --ood NAME=FOLDER [--ood ...] [--out ood.json]

``RUN``: a run folder of a contract-2 student (``kdic.pt``, ``report.json``) that learnt from
``D/notes``; ``--ood`` as for ``experiments/levers.py`` (its notes stores are built once,
under ``RUN/../ood/NAME``, where ``levers.py`` builds them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from live.taxonomy import CLASSES  # noqa: E402

#: Classes played by fewer parts of a set than this are "rare" there.
MIN_PARTS = 20
#: Song resamplings for the interval.
BOOTSTRAP = 1000

N = len(CLASSES)


def confusion(y: npt.NDArray, pred: npt.NDArray) -> npt.NDArray[np.int64]:
    """``[true, predicted]`` counts."""
    return np.bincount(y * N + pred, minlength=N * N).reshape(N, N)


def class_f1(c: npt.NDArray) -> npt.NDArray[np.float64]:
    """Each class's F1 from a confusion matrix (0 where a class has no window and no answer,
    as scikit-learn's ``zero_division=0``)."""
    c = np.asarray(c, np.float64)
    tp, said, truly = np.diag(c), c.sum(axis=0), c.sum(axis=1)
    return np.divide(2 * tp, said + truly, out=np.zeros(len(c)), where=said + truly > 0)


def macro_f1(c: npt.NDArray, classes: list[int] | None = None) -> float:
    """Macro-F1 of a confusion matrix over ``classes`` (all by default), on the windows of
    those classes only (what they were called, whatever it was)."""
    classes = list(range(N)) if classes is None else classes
    sub = np.zeros((N, N))
    sub[classes] = np.asarray(c, np.float64)[classes]
    return float(class_f1(sub)[classes].mean())


def song_interval(
    song: npt.NDArray, y: npt.NDArray, pred: npt.NDArray, n: int = BOOTSTRAP, seed: int = 0
) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of macro-F1 over ``n`` resamplings of the songs (with
    replacement; a song's windows go together)."""
    f1 = song_draws(song, y, [pred], n, seed)[0]
    return float(np.percentile(f1, 2.5)), float(np.percentile(f1, 97.5))


def song_draws(
    song: npt.NDArray, y: npt.NDArray, preds: list[npt.NDArray], n: int = BOOTSTRAP, seed: int = 0
) -> npt.NDArray[np.float64]:
    """``[len(preds), n]``: the macro-F1 of each of ``preds`` on the same ``n`` resamplings of
    the songs (so two models' draws can be subtracted: a paired interval)."""
    songs, inverse = np.unique(song, return_inverse=True)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(songs), np.full(len(songs), 1 / len(songs)), size=n)
    out = np.empty((len(preds), n))
    for k, pred in enumerate(preds):
        per_song = np.zeros((len(songs), N * N), np.int64)
        np.add.at(per_song, (inverse, y * N + pred), 1)
        out[k] = [macro_f1((w @ per_song).reshape(N, N)) for w in draws]
    return out


def reweighted(probs: npt.NDArray, target: npt.NDArray, source: npt.NDArray) -> npt.NDArray:
    """``probs`` with the class priors ``source`` exchanged for ``target`` (Bayes' rule)."""
    p = probs * (target / source)
    return p / p.sum(axis=1, keepdims=True)


def parts_per_class(song: npt.NDArray, part: npt.NDArray, y: npt.NDArray) -> list[int]:
    """How many distinct (song, part) play each class."""
    key = song.astype(np.int64) * (int(part.max()) + 1 if len(part) else 1) + part
    return [int(len(np.unique(key[y == k]))) for k in range(N)]


def analyse(
    window: npt.NDArray,
    y: npt.NDArray,
    song: npt.NDArray,
    part: npt.NDArray,
    in_domain: npt.NDArray,
) -> dict:
    """The three answers for one set's window answers ``window`` (probabilities), against the
    in-domain test's confusion matrix ``in_domain``."""
    pred = window.argmax(axis=1)
    c = confusion(y, pred)
    parts = parts_per_class(song, part, y)
    common = [k for k in range(N) if parts[k] >= MIN_PARTS]
    source = np.asarray(in_domain, np.float64).sum(axis=1)
    target = np.bincount(y, minlength=N).astype(np.float64)
    oracle = reweighted(window, target / target.sum(), source / source.sum())
    low, high = song_interval(song, y, pred)
    return {
        "windows": int(len(y)),
        "songs": int(len(np.unique(song))),
        "window_macro_f1": macro_f1(c),
        "interval_95": [low, high],
        "accuracy": float(np.trace(c) / max(c.sum(), 1)),
        "parts_per_class": dict(zip(CLASSES, parts, strict=True)),
        "common_classes": [CLASSES[k] for k in common],
        "on_common_classes": macro_f1(c, common),
        "in_domain_on_common_classes": macro_f1(in_domain, common),
        "per_class_f1": dict(zip(CLASSES, class_f1(c).tolist(), strict=True)),
        "oracle_priors": macro_f1(confusion(y, oracle.argmax(axis=1))),
    }


def part_student(path: Path) -> Any:
    """The contract-2 or 3 student of a checkpoint (a :class:`train.models.PartStudent`); read
    notes stores in its contract's view (``store.view(model.contract)``): a contract-3 student
    fed contract 2's view would hear no controllers, and say nothing of it."""
    from export.bundle import load_student
    from train.models import PartStudent

    model, _ = load_student(path)
    if not isinstance(model, PartStudent):
        raise SystemExit(f"{path} is not a contract-2 or 3 student")
    return model


def main() -> None:
    import torch

    from train.batches import NotesSource
    from train.data.notes import NotesStore
    from train.history import running_answers
    from train.progress import reporter

    sys.path.insert(0, str(REPO / "experiments"))
    from levers import add_ood_option, ood_store

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--student", default="kdic")
    ap.add_argument("--out", type=Path, default=Path("ood.json"))
    add_ood_option(ap)
    args = ap.parse_args()
    model = part_student(args.run / f"{args.student}.pt")
    report = json.loads((args.run / "report.json").read_text())
    in_domain = np.array(report["models"][args.student.upper()]["confusion"])
    torch.set_num_threads(1)
    out = {"run": str(args.run), "in_domain_window_macro_f1": macro_f1(in_domain)}
    with reporter() as say:
        for name, folder in args.ood:
            store: NotesStore = ood_store(name, folder, args.run.parent, say).view(model.contract)
            idx = np.arange(len(store), dtype=np.int64)
            with torch.no_grad():
                window, _ = running_answers(
                    model, NotesSource(store, cells=True), store, idx, torch.device("cpu")
                )
            index = store.index
            out[name] = analyse(window, store.labels[idx], index["song"], index["part"], in_domain)
            print(name, json.dumps(out[name]), flush=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
