"""Issue 26: what the student takes Brass and Reed for, and which cue fails out of domain.

Two measurements for one run's contract-2 or 3 student:

- *Cues taken away at inference*: window and running macro-F1 on the in-domain test windows (a
  sample of test songs) and on each ``--ood`` set, with one cue of the input removed at a time
  (:data:`CUES`: every velocity 100, the controllers, the drums, the rest of the ensemble). A
  cue whose removal raises a set's figure misleads the student there: an augmentation that
  hides it in training would be the lever to try.
- *By kind of window*: for each class, its test windows by the part's polyphony, mean pitch
  and onsets (:data:`KINDS`), and what the student answers for each kind.

    python experiments/confusions.py RUN --data D [--songs 200] [--ood NAME=FOLDER ...] \
        [--out confusions.json]

``RUN``: a run folder with the student (``kdic.pt``) that learnt from ``D/notes``; ``--ood`` as
for ``experiments/levers.py`` (stores built once under ``RUN/../ood/NAME``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "experiments"))

from live.controls import N_ROWS  # noqa: E402
from live.inputs import DRUMS, ENSEMBLE, ONSET, SOUNDING, VELOCITY  # noqa: E402
from live.taxonomy import CLASSES  # noqa: E402
from train.batches import SparseWindows  # noqa: E402
from train.data.notes import SHAPE  # noqa: E402

Cue = Callable[[SparseWindows], SparseWindows]
PER_CHANNEL = SHAPE[1] * SHAPE[2]


def _where(x: SparseWindows) -> tuple[torch.Tensor, torch.Tensor]:
    """Each cell's channel and pitch."""
    return x.cells // PER_CHANNEL, x.cells % PER_CHANNEL // SHAPE[2]


def _without(x: SparseWindows, drop: torch.Tensor) -> SparseWindows:
    keep = ~drop
    return SparseWindows(x.rows[keep], x.cells[keep], x.values[keep], x.n)


def flat_velocity(x: SparseWindows) -> SparseWindows:
    """Every velocity 100."""
    values = x.values.clone()
    values[_where(x)[0] == VELOCITY] = 100.0
    return SparseWindows(x.rows, x.cells, values, x.n)


def no_controllers(x: SparseWindows) -> SparseWindows:
    """Contract 3's controller rows (the drums plane's rows 0-7) removed."""
    channel, pitch = _where(x)
    return _without(x, (channel == DRUMS) & (pitch < N_ROWS))


def no_drums(x: SparseWindows) -> SparseWindows:
    """The drums removed (the controller rows kept)."""
    channel, pitch = _where(x)
    return _without(x, (channel == DRUMS) & (pitch >= N_ROWS))


def no_ensemble(x: SparseWindows) -> SparseWindows:
    """The rest of the ensemble removed."""
    return _without(x, _where(x)[0] == ENSEMBLE)


#: The cues taken away, one at a time.
CUES: dict[str, Cue] = {
    "none": lambda x: x,
    "velocity 100": flat_velocity,
    "no controllers": no_controllers,
    "no drums": no_drums,
    "no ensemble": no_ensemble,
}
#: Kinds of window: a statistic of the part's own notes and the edges of its bins.
KINDS = {
    "polyphony": [0.0, 1.01, 1.6, 2.5, 1e9],  # notes per sounding step
    "mean pitch": [0.0, 55.0, 62.0, 69.0, 76.0, 128.0],
    "onsets": [0.0, 4.0, 8.0, 16.0, 1e9],
}


def kinds(x: SparseWindows) -> dict[str, npt.NDArray[np.float64]]:
    """Per window: notes per sounding step, mean pitch of the sounding cells, onset cells."""
    channel, pitch = _where(x)
    rows, step = x.rows.numpy(), (x.cells % SHAPE[2]).numpy()
    sounding = (channel == SOUNDING).numpy()
    cells = np.bincount(rows[sounding], minlength=x.n).astype(np.float64)
    steps = np.zeros((x.n, SHAPE[2]), bool)
    steps[rows[sounding], step[sounding]] = True
    pitches = np.bincount(rows[sounding], weights=pitch.numpy()[sounding], minlength=x.n)
    onset = (channel == ONSET).numpy()
    return {
        "polyphony": cells / np.maximum(steps.sum(axis=1), 1),
        "mean pitch": pitches / np.maximum(cells, 1),
        "onsets": np.bincount(rows[onset], minlength=x.n).astype(np.float64),
    }


def by_kind(
    y: npt.NDArray, pred: npt.NDArray, stats: dict[str, npt.NDArray], min_windows: int = 50
) -> dict:
    """For each class, each kind's bins: the class's share of windows there, its recall there,
    and the three answers most given."""
    out: dict = {}
    for k, name in enumerate(CLASSES):
        mine = y == k
        rows = []
        for kind, edges in KINDS.items():
            for lo, hi in zip(edges[:-1], edges[1:], strict=True):
                b = mine & (stats[kind] >= lo) & (stats[kind] < hi)
                if b.sum() < min_windows:
                    continue
                said = np.bincount(pred[b], minlength=len(CLASSES)) / b.sum()
                top = np.argsort(-said)[:3]
                rows.append(
                    {
                        "kind": kind,
                        "bin": [lo, hi],
                        "share": float(b.sum() / mine.sum()),
                        "recall": float(said[k]),
                        "answers": {CLASSES[j]: float(said[j]) for j in top},
                    }
                )
        out[name] = {"windows": int(mine.sum()), "bins": rows}
    return out


class Cued:
    """A source of student inputs with one cue taken away."""

    def __init__(self, source: Callable, take: Cue) -> None:
        self.source, self.take = source, take

    def __call__(self, idx: npt.NDArray[np.int64]) -> tuple[SparseWindows, torch.Tensor]:
        x, y = self.source(idx)
        return self.take(x), y


def main() -> None:
    from levers import add_ood_option, ood_store
    from ood import confusion, macro_f1, part_student

    from train.batches import NotesSource
    from train.data.notes import NotesStore
    from train.history import running_answers
    from train.progress import reporter

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--student", default="kdic")
    ap.add_argument("--songs", type=int, default=200, help="test songs sampled (in domain)")
    ap.add_argument("--out", type=Path, default=Path("confusions.json"))
    add_ood_option(ap)
    args = ap.parse_args()
    model = part_student(args.run / f"{args.student}.pt")
    view = model.contract
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    store = NotesStore(args.data / "notes").view(view)
    test = store.split("test")
    songs = np.unique(store.index["song"][test])
    pick = np.random.default_rng(0).choice(songs, min(args.songs, len(songs)), replace=False)
    test = test[np.isin(store.index["song"][test], pick)]
    out: dict = {"run": str(args.run), "test_songs": len(pick), "cues": {}}
    with reporter() as say:
        sets = [("in_domain", store, test)]
        for name, folder in args.ood:
            ood = ood_store(name, folder, args.run.parent, say).view(view)
            sets.append((name, ood, np.arange(len(ood), dtype=np.int64)))
        for name, st, idx in sets:
            y, source = st.labels[idx], NotesSource(st, cells=True)
            for cue, take in CUES.items():
                with torch.no_grad():
                    window, running = running_answers(model, Cued(source, take), st, idx, cpu)
                if name == "in_domain" and cue == "none":
                    x, _ = source(idx)
                    assert isinstance(x, SparseWindows)
                    out["by_kind"] = by_kind(y, window.argmax(axis=1), kinds(x))
                f1 = [macro_f1(confusion(y, a.argmax(axis=1))) for a in (window, running)]
                out["cues"][f"{name}/{cue}"] = {"window": f1[0], "running": f1[1]}
                print(f"{name} {cue}: window {f1[0]:.3f}, running {f1[1]:.3f}", flush=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
