"""What ``student.calibrate`` gives a student already trained: its test figures before and
after per-class offsets fitted on validation (train.calibrate), in domain and out of domain.

    python experiments/calibration.py --data D --variant budget --seed 0 RUN \\
        --ood freedoom=../shared/corpora/freedoom-music --ood demo=DEMO --out calibration.json

``RUN`` is a run folder that ``experiments/levers.py --notes-only`` trained with ``--variants
VARIANT --seed SEED`` (its NIC is loaded, not trained again: the settings must be the ones it
was trained with). The offsets are fitted on every validation window and applied to the loaded
model only; nothing in ``RUN`` changes. Results are added to ``--out`` under ``RUN``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "experiments"))

from levers import VARIANTS, add_ood_option, notes_only, ood_store  # noqa: E402

from train.config import override, preset_config  # noqa: E402
from train.pipeline import Run  # noqa: E402
from train.progress import reporter  # noqa: E402
from train.steps import ce_loss  # noqa: E402
from train.students import evaluate_windows  # noqa: E402


def brief(result: dict) -> dict:
    """Window, running and after-8-bars macro-F1, and the five classes' running accuracy."""
    return {
        "window": result["macro_f1"],
        "running": result["running"]["macro_f1"],
        "after_8": result["parts"]["8"]["macro_f1"],
        "five": result["running"]["five_classes"]["accuracy"],
        "per_class": result["per_class"],
    }


def main() -> None:
    args = parse()
    out = json.loads(args.out.read_text()) if args.out.exists() else {}
    settings = [s for v in args.variant.split("+") for s in VARIANTS[v]]
    with reporter() as report:
        ood = {n: ood_store(n, f, args.run.parent, report) for n, f in args.ood}
        sets = [f"run={args.run}", f"data.out={args.data}", f"seed={args.seed}", *settings]
        cfg = override(preset_config("fast"), sets)
        run = Run(cfg, report, notes_only(cfg))
        nic = run.student("nic", ce_loss(cfg.student))  # current: loaded

        def figures() -> dict:
            got = {"in_domain": brief(run.evaluate(nic))}
            for name, store in ood.items():
                every = np.arange(len(store), dtype=np.int64)
                got[name] = brief(evaluate_windows(nic, store, every, run.device))
            return got

        before = figures()
        fitted = run.students.calibrate(nic, run.device)
        out[str(args.run)] = {"before": before, "after": figures(), "fitted": fitted}
    args.out.write_text(json.dumps(out, indent=1))
    for when in ("before", "after"):
        d = out[str(args.run)][when]
        line = ", ".join(f"{k} {v:.3f}" for k, v in d["in_domain"].items() if k != "per_class")
        line += "".join(f", {n} {d[n]['window']:.3f}" for n in ood)
        print(f"{when}: {line}")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", type=Path, help="the run folder levers.py trained")
    p.add_argument("--data", type=Path, required=True, help="the data folder (DATA/notes)")
    p.add_argument("--variant", default="budget", help="its levers.py variant (a+b together)")
    p.add_argument("--seed", type=int, default=0)
    add_ood_option(p)
    p.add_argument("--out", type=Path, default=Path("calibration.json"))
    args = p.parse_args()
    for variant in args.variant.split("+"):
        if variant not in VARIANTS:
            p.error(f"unknown variant {variant!r}: choose among {', '.join(VARIANTS)}")
    return args


if __name__ == "__main__":
    main()
