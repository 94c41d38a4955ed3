"""Issue 26: how far are the students from what several of them know together?

The students of one recipe land within 0.003 of each other whatever teaches them; if the
average of two students' answers is much better than either, what they miss is variance (a
teacher made of students could pass it on, or a bigger student hold it); if not, what they
share is the limit. Scores each run's student alone and the mean of their probabilities
(window and running answers), on the store's test windows and on each out-of-domain set.

    python experiments/ensemble.py RUN RUN [RUN ...] --data D [--ood NAME=FOLDER] \
        [--out ensemble.json]

``RUN``: run folders of contract-2 students (``kdic.pt``) that learnt from ``D/notes`` on its
split; ``--ood`` as for ``experiments/levers.py`` (stores built once under the first run's
parent, ``ood/NAME``).
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


def mean_answers(
    answers: list[tuple[npt.NDArray, npt.NDArray]],
) -> tuple[npt.NDArray, npt.NDArray]:
    """The mean of several students' ``(window, running)`` probabilities."""
    window = np.mean([w for w, _ in answers], axis=0)
    running = np.mean([r for _, r in answers], axis=0)
    return window, running


def brief(result: dict) -> dict:
    """The figures the levers' tables carry."""
    parts = result["parts"]
    return {
        "window": result["macro_f1"],
        "running": result["running"]["macro_f1"],
        "after_8": parts.get("8", {}).get("macro_f1"),
        "five": result["running"].get("five_classes"),
    }


def main() -> None:
    import torch
    from levers import add_ood_option, ood_store
    from ood import part_student

    from train.batches import NotesSource
    from train.data.notes import NotesStore
    from train.history import running_answers
    from train.progress import reporter
    from train.students import StoredAnswers, evaluate_windows

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("ensemble.json"))
    add_ood_option(ap)
    args = ap.parse_args()
    if len(args.runs) < 2:
        raise SystemExit("an ensemble needs two runs or more")
    models = []
    for run in args.runs:
        models.append(part_student(run / "kdic.pt"))
    view = models[0].contract
    if any(m.contract != view for m in models):
        raise SystemExit("the students read different contracts: an ensemble needs one")
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    out: dict = {"runs": [str(r) for r in args.runs]}
    with reporter() as say:
        sets: list[tuple[str, NotesStore, str | None]] = [
            ("in_domain", NotesStore(args.data / "notes").view(view), "test")
        ]
        sets += [
            (n, ood_store(n, f, args.runs[0].parent, say).view(view), None) for n, f in args.ood
        ]
        for name, store, split in sets:
            idx = store.split(split) if split else np.arange(len(store), dtype=np.int64)
            source = NotesSource(store, cells=True)
            answers = []
            for model in models:
                with torch.no_grad():
                    answers.append(running_answers(model, source, store, idx, cpu))
            rows = {}
            for i, (window, running) in enumerate([*answers, mean_answers(answers)]):
                label = str(args.runs[i].name) if i < len(answers) else "mean"
                stored = StoredAnswers(label, idx, window, running)
                rows[label] = brief(evaluate_windows(stored, store, idx, cpu))
                print(name, label, json.dumps(rows[label]), flush=True)
            out[name] = {"windows": int(len(idx)), **rows}
    args.out.write_text(json.dumps(out, indent=1))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
