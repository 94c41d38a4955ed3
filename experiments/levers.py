"""Issue 16's ablation: each lever of contract 2 alone and together, against the v1 student.

Trains NIC (hard labels) for each variant on one data folder (one song-level split) and scores
it in domain (the store's test songs) and out of domain (every song of each ``--ood`` folder):
window macro-F1, the running answer's, and part-level macro-F1 after 2, 4, 8 and 16 bars.

    python experiments/levers.py --data /tmp/d600 --runs /tmp/levers \\
        --set data.midi=/tmp/midi600 --set data.notes_midi=/tmp/lakhlike/mid/data_D-Full \\
        --ood freedoom=../shared/corpora/freedoom-music --ood demo=DEMO [--variants v1,all]

``DEMO`` is the demo corpus (the Debian packages' folders). Issue 26's levers (``shipped``,
``budget``, ``long``, ``wide``, ``stats``; ``a+b`` together) run on the
notes store alone::

    python experiments/levers.py --notes-only --data D --runs R --variants shipped,budget \\
        --ood freedoom=../shared/corpora/freedoom-music --ood demo=DEMO

(``D/notes`` the notes store of the Lakh-like corpus, built by ``kdtrain data`` or
``train.data.notes.build_notes``). Writes ``RUNS/<variant>/`` (the run
folder: config, checkpoint), ``RUNS/levers.json`` and ``RUNS/levers.md``. A finished variant is
kept (its checkpoint is current), so the script can be stopped and run again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from live.contracts import contract  # noqa: E402
from train.config import RunConfig, fingerprint, override, preset_config  # noqa: E402
from train.data.build import demo_dirs  # noqa: E402
from train.data.collection import find_midi_files  # noqa: E402
from train.data.notes import NotesStore, build_notes  # noqa: E402
from train.pipeline import Run  # noqa: E402
from train.progress import Reporter, reporter  # noqa: E402
from train.steps import ce_loss, kd_loss  # noqa: E402
from train.students import Data, evaluate_windows  # noqa: E402

#: Each lever alone and together (contract-2 channels: 0 sounding, 1 onset, 2 velocity,
#: 3 ensemble, 4 drums; state: the history).
VARIANTS = {
    "v1": ["model.inputs=0", "model.state=0", "model.encoder=cnn"],
    "dynamics": ["model.inputs=0,1,2", "model.state=0", "model.encoder=cnn"],
    "ensemble": ["model.inputs=0,3,4", "model.state=0", "model.encoder=cnn"],
    "history": ["model.inputs=0", "model.state=64", "model.encoder=cnn"],
    "all-but-history": ["model.inputs=0,1,2,3,4", "model.state=0", "model.encoder=cnn"],
    "all": ["model.inputs=0,1,2,3,4", "model.state=64", "model.encoder=cnn"],
    # The window encoder built for latency (train.models.StepCNN), with every lever: the
    # product's default (what `kdtrain all` trains).
    "all-steps": ["model.inputs=0,1,2,3,4", "model.state=64", "model.encoder=steps"],
    # Issue 26's levers, each on top of the shipped recipe (the fast preset as it is: the
    # steps encoder, every channel, the history learnt second), then together.
    "shipped": [],
    # A budget that sees the training windows: 30 epochs of 131,072 windows (3.9 M draws,
    # about one pass over the 3.7 M training windows; the shipped recipe draws 330 k).
    "budget": ["student.epochs=30", "student.samples_per_epoch=131072", "student.patience=30"],
    # Where the budget's validation peaked (about 800 k draws), annealed there: 20 epochs of
    # 40,960 windows.
    "long": ["student.epochs=20", "student.samples_per_epoch=40960"],
    "wide": ["model.scale=2"],
    # The streaming encoder (train.models.StreamCNN): a pitch CNN per step, then convolutions
    # over the steps; 5x the steps encoder's multiply-adds, most of them computable ahead.
    "stream": ["model.encoder=stream"],
    "stats": ["model.stats=true"],
    # Two convolutions over the steps instead of one: the window hears rhythms of 5 steps
    # before its mean and max over time (a line's rhythm is what tells its family across
    # songs: experiments/crosssong.py).
    "deep": ["model.depth=2"],
    # The ensemble as structure: each part's window embedding attends to the other parts'
    # at the same bar (train.ensemble), learnt from whole groups.
    "attend": ["model.attend=true"],
    # Against the over-fitting the budget showed (validation peaked at epoch 6 of 30):
    # weight decay 500x the preset's, and label smoothing.
    "decay": ["student.weight_decay=0.05"],
    "smooth": ["student.label_smoothing=0.1"],
    # Stop 6 epochs after the best (the budget's best windows came by epoch 8 of 30).
    "patient6": ["student.patience=6"],
    # KDIC from the floor (gradient boosting on the window's hand statistics), which
    # generalises to new songs better than the student: the paper's distillation with a
    # teacher that knows more.
    "floorkd": ["distill.teacher=floor"],
    # Per-class offsets on the answers, fitted on validation (train.calibrate).
    "calibrated": ["student.calibrate=true"],
    # The floor's answers at temperature 1 (the preset distils at 2).
    "t1": ["distill.temperature=1"],
}


def main() -> None:
    args = parse()
    args.runs.mkdir(parents=True, exist_ok=True)
    results_path = args.runs / "levers.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    with reporter() as report:
        ood = {name: ood_store(name, folder, args.runs, report) for name, folder in args.ood}
        for variant in args.variants:
            folder = args.runs / (variant if args.seed == 0 else f"{variant}-s{args.seed}")
            sets = [f"run={folder}", f"data.out={args.data}", f"seed={args.seed}"]
            settings = [s for v in variant.split("+") for s in VARIANTS[v]]
            cfg = override(preset_config("fast"), [*sets, *args.set, *settings])
            start = time.monotonic()
            run = Run(cfg, report, notes_only(cfg) if args.notes_only else None)
            if cfg.distill.teacher == "floor":  # KDIC from the floor: no audio needed
                logits, taught = run.floor_logits()
                student = "kdic"
                nic = run.student(student, kd_loss(logits, cfg.distill, run.device, taught))
            else:
                student = "nic"
                nic = run.student(student, ce_loss(cfg.student))
            result = {"in_domain": run.evaluate(nic), "minutes": (time.monotonic() - start) / 60}
            for name, store in ood.items():
                every = np.arange(len(store), dtype=np.int64)
                view = store.view(contract(cfg.model.contract))  # the student's contract
                result[name] = evaluate_windows(nic, view, every, run.device)
            result["settings"] = settings
            # What `kdexport bundle RUN --student nic` (or kdic) puts in a bundle's manifest.
            models = {student.upper(): result["in_domain"]}
            report_json = {"models": models, "data": run.data.summary}
            (folder / "report.json").write_text(json.dumps(report_json, indent=1))
            results[f"{variant}/seed{args.seed}"] = result
            results_path.write_text(json.dumps(results, indent=1))
            report.say(variant, summary_line(result))
    (args.runs / "levers.md").write_text(table(results))
    print(table(results))


def notes_only(cfg: RunConfig) -> Data:
    """The run's data when its students learn from the notes store alone (``DATA/notes``, as
    ``kdtrain data`` builds it): no audio store, so no teacher (NIC and the floor only)."""
    summary = {"notes": NotesStore(Path(cfg.data.out) / "notes").summary()}
    fp = fingerprint("notes only", summary, cfg.model.contract, cfg.train_fraction, cfg.split)
    return Data(None, None, summary, fp)  # type: ignore[arg-type]  # no audio store


def ood_store(name: str, folder: str, runs: Path, report: Reporter) -> NotesStore:
    """The notes store of an out-of-domain collection (built once, beside the runs)."""
    folders = demo_dirs() if folder == "DEMO" else [Path(folder)]
    out = runs / "ood" / name / "notes"
    build_notes(find_midi_files(folders), out, workers=2, progress=report.progress)
    return NotesStore(out)


def summary_line(result: dict) -> str:
    parts = result["in_domain"]["parts"]
    return (
        f"window {result['in_domain']['macro_f1']:.3f}, running "
        f"{result['in_domain']['running']['macro_f1']:.3f}, after 8 bars "
        f"{parts.get('8', {}).get('macro_f1', float('nan')):.3f}, "
        + ", ".join(
            f"{k} {v['macro_f1']:.3f}"
            for k, v in result.items()
            if isinstance(v, dict) and "parts" in v and k != "in_domain"
        )
    )


def table(results: dict) -> str:
    """Markdown: one row per variant and seed."""
    sets = sorted(
        {k for r in results.values() for k in r if isinstance(r[k], dict) and "parts" in r[k]}
        - {"in_domain"}
    )
    head = [
        "variant",
        "window",
        "running",
        "after 2",
        "4",
        "8",
        "16",
        "after 8, window answers averaged",
        *(f"{s} window" for s in sets),
        *(f"{s} after 8" for s in sets),
        "min",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, r in results.items():
        d = r["in_domain"]
        row = [key, f"{d['macro_f1']:.3f}", f"{d['running']['macro_f1']:.3f}"]
        row += [
            f"{d['parts'][b]['macro_f1']:.3f}" if b in d["parts"] else "—"
            for b in ("2", "4", "8", "16")
        ]
        mean = d.get("mean", {}).get("parts", {}).get("8")
        row.append(f"{mean['macro_f1']:.3f}" if mean else "—")
        row += [f"{r[s]['macro_f1']:.3f}" if s in r else "—" for s in sets]
        row += [
            f"{r[s]['parts']['8']['macro_f1']:.3f}" if s in r and "8" in r[s]["parts"] else "—"
            for s in sets
        ]
        row.append(f"{r.get('minutes', 0):.0f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument(
        "--variants",
        type=lambda s: s.split(","),
        default=list(VARIANTS),
        help="comma-separated; a+b is the levers a and b together",
    )
    p.add_argument(
        "--notes-only",
        action="store_true",
        help="the students learn from DATA/notes alone (no audio store is built or read)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], help="KEY=VALUE for every variant")
    add_ood_option(p)
    return p.parse_args()


def add_ood_option(p: argparse.ArgumentParser) -> None:
    """``--ood NAME=FOLDER`` (repeatable): a collection scored out of domain."""
    p.add_argument(
        "--ood",
        action="append",
        default=[],
        type=lambda s: tuple(s.split("=", 1)),
        help="NAME=FOLDER of MIDI files scored out of domain (FOLDER DEMO: the demo corpus)",
    )


if __name__ == "__main__":
    main()
