"""The floor's window answer with the students' calibration, to compare like with like.

    OMP_NUM_THREADS=1 python experiments/floor_calibrated.py --data D --out floor_calibrated.json

The floor as ``kdtrain all`` fits it (``train.students.NotesStudents.floor``: gradient boosting
on each window's own hand statistics, on the seeded sample of at most 200,000 training windows
of the shipped split), scored on the test windows as it is and with per-class offsets fitted on
every validation window for macro-F1 (:mod:`train.calibrate`, as ``student.calibrate`` fits a
student's). The window answer only: the running answer's features need the running means over
every training window (about 17 minutes more here).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "experiments"))

from levers import notes_only  # noqa: E402

from train import calibrate, floor  # noqa: E402
from train.config import override, preset_config  # noqa: E402
from train.pipeline import Run  # noqa: E402
from train.progress import reporter  # noqa: E402
from train.students import FLOOR_MAX_TRAIN, StoredAnswers, evaluate_windows, own_features  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="the data folder (DATA/notes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("floor_calibrated.json"))
    args = p.parse_args()
    with reporter() as report:
        cfg = override(preset_config("fast"), [f"data.out={args.data}", f"seed={args.seed}"])
        students = Run(cfg, report, notes_only(cfg)).students
        notes, split, y = students.notes, students.windows.split, students.windows.labels
        fitted = floor.sample(split["train"], FLOOR_MAX_TRAIN, seed=args.seed)
        val, test = split["validation"], split["test"]
        report.say("floor", f"fitting on {len(fitted)} windows, answering {len(val) + len(test)}")
        probs = floor.fit_answers(
            own_features(notes, fitted),
            y[fitted],
            np.concatenate([own_features(notes, val), own_features(notes, test)]),
            seed=args.seed,
        )
    logp = np.log(np.clip(probs, 1e-12, 1.0))
    offsets = calibrate.fit_offsets(y[val], logp[: len(val)])
    result: dict = {"offsets": offsets.tolist()}
    for when, shift in (("before", np.zeros_like(offsets)), ("after", offsets)):
        window = np.exp(logp[len(val) :] + shift).astype(np.float32)
        answers = StoredAnswers("floor", test, window)
        scored = evaluate_windows(answers, notes, test, torch.device("cpu"))
        result[when] = {
            "window": scored["macro_f1"],
            "mean_after_8": scored["parts"]["8"]["macro_f1"],
            "per_class": scored["per_class"],
        }
        print(f"{when}: window {scored['macro_f1']:.3f}", flush=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
