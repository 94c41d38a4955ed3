"""Score finished runs' students out of domain, beside their in-domain report.

    python experiments/score.py /tmp/final/s0 /tmp/final/s1 --out /tmp/final/scores.json \\
        --ood freedoom=/tmp/levers/ood/freedoom/notes --ood demo=/tmp/levers/ood/demo/notes

For each run folder (``kdtrain all`` finished, contract 2), NIC and KDIC: window macro-F1, the
running answer's, and part-level macro-F1 after 2, 4, 8 and 16 bars on every window of each
out-of-domain notes store (built by ``experiments/levers.py``), with the run's in-domain figures
from ``report.json``. Writes the JSON and prints a Markdown table with the mean and spread over
the runs.
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

from train.checkpoints import load_model  # noqa: E402
from train.data.notes import NotesStore  # noqa: E402
from train.students import evaluate_windows  # noqa: E402

FIGURES = (
    ("window", lambda m: m["macro_f1"]),
    ("running", lambda m: m["running"]["macro_f1"]),
    ("after 8 bars", lambda m: m["parts"]["8"]["macro_f1"]),
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--ood", action="append", default=[], type=lambda s: tuple(s.split("=", 1)))
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    stores = {name: NotesStore(Path(folder)) for name, folder in args.ood}
    scores: dict = {}
    for run in args.runs:
        report = json.loads((run / "report.json").read_text())
        for name in ("NIC", "KDIC"):
            entry = {"in domain": report["models"][name]}
            model = load_model(run / f"{name.lower()}.pt")
            for ood, store in stores.items():
                every = np.arange(len(store), dtype=np.int64)
                entry[ood] = evaluate_windows(model, store, every, torch.device("cpu"))
            scores[f"{run.name}/{name}"] = entry
            args.out.write_text(json.dumps(scores, indent=1))
    print(table(scores))


def table(scores: dict) -> str:
    """Markdown: per model, per data set and figure, the mean +- std over the runs."""
    sets = ["in domain", *sorted({k for e in scores.values() for k in e} - {"in domain"})]
    head = ["model", *(f"{s}: {f}" for s in sets for f, _ in FIGURES)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in ("NIC", "KDIC"):
        runs = [e for k, e in scores.items() if k.endswith("/" + name)]
        cells = [name]
        for s in sets:
            for _, get in FIGURES:
                values = [get(e[s]) for e in runs if s in e]
                spread = np.std(values, ddof=1) if len(values) > 1 else 0.0
                cells.append(f"{np.mean(values):.3f} ± {spread:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
