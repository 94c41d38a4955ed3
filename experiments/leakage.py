"""What each split leaks, without training anything: memory's share of a score.

    python experiments/leakage.py --midi /tmp/midi600 --data /tmp/d600 --out leakage.json
    python experiments/leakage.py ... --set model.contract=2 --set data.notes_midi=LAKHLIKE

For every ``--split`` of ``kdtrain all`` (song, window, slakh-orig) on a built data folder:
the students' windows per side, how many test windows have a training window with the
identical roll (and label), and the macro-F1 of the lookup table of exact rolls (what a run's
report shows in its ``lookup`` row), with the gradient-boosting baseline (the run's floor,
:meth:`train.pipeline.Run.floor`) beside it unless ``--no-baseline``. Writes the JSON and
prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from train.config import SPLITS, DataConfig, override, preset_config  # noqa: E402
from train.pipeline import Run  # noqa: E402
from train.progress import Silent  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--midi", type=Path, action="append", required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--set", dest="sets", action="append", default=["model.contract=1"])
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    base = preset_config("fast")
    base = replace(base, data=DataConfig(out=args.data, midi=args.midi, workers=2))
    base = override(base, args.sets)
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in SPLITS:
            t0 = time.perf_counter()
            run = Run(replace(base, split=kind, run=Path(tmp) / kind), Silent())
            leak, lookup = run.leakage_and_lookup()
            entry = {
                "windows": {s: len(v) for s, v in run.students.windows.split.items()},
                "leakage": leak,
                "lookup": run.evaluate(lookup)["macro_f1"],
            }
            if not args.no_baseline:
                entry["baseline"] = run.evaluate(run.floor())["macro_f1"]  # the floor (issue 26)
            entry["seconds"] = round(time.perf_counter() - t0, 1)
            results[kind] = entry
            args.out.write_text(json.dumps(results, indent=1) + "\n")
            print(kind, json.dumps(entry), flush=True)
    print(table(results))


def table(results: dict) -> str:
    rows = [
        "| split | test windows | identical roll and label in train | lookup macro-F1 | baseline |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind, e in results.items():
        leak = e["leakage"]
        share = leak["same_roll_and_label"] / max(leak["test_windows"], 1)
        base = f"{e['baseline']:.3f}" if "baseline" in e else "—"
        rows.append(
            f"| {kind} | {leak['test_windows']:,} | {leak['same_roll_and_label']:,} "
            f"({share:.1%}) | {e['lookup']:.3f} | {base} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
