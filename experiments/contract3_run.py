"""A run trained on the controller copy of a notes store (``experiments/controller_store.py``,
at commit ``9b987bc``) is a contract-3 run: check that, then write it as one, for ``kdexport
bundle``.

    python experiments/contract3_run.py RUN OUT --store D3 [--windows 0]

The copy's windows hold, in the drums plane's rows 0-7, what contract 3 puts there
(:mod:`live.controls`); the student trained on it is the contract-3 student of its config,
weights and all. This checks it window by window, against the store ``kdtrain data`` builds
now (``D3/notes``, read as contract 3): the same windows (song, part, bar), and in each the same
cells with the same values (``--windows N``: a random N of them; 0, every one). Then it writes
``OUT``: the run's config with ``model.contract = 3`` and ``data.out = D3``, its report, and
its students' checkpoints with ``controls`` in their model descriptions (what
:func:`train.models.build_part_student` records for a contract-3 student). The weights are not
touched. Nothing is written if one window differs. With ``--ood NAME=NOTES`` (repeatable),
the relabelled student is scored on every window of those notes stores, read as contract 3
(``OUT/ood.json``; the run's own out-of-domain figures, if its stores kept no controllers,
read them as contract 2).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from live.contracts import V2, V3  # noqa: E402
from train import checkpoints  # noqa: E402
from train.data.notes import NotesStore  # noqa: E402
from train.students import evaluate_windows  # noqa: E402

STUDENTS = ("nic.pt", "kdic.pt")


def window_keys(notes: NotesStore) -> npt.NDArray[np.int64]:
    """A key per window that names it in any store of the same songs: (song, part, bar), the
    song by the rank of its hash."""
    sha1 = np.array([s["sha1"] for s in notes.songs])
    rank = np.argsort(np.argsort(sha1))[notes.index["song"]].astype(np.int64)
    return (rank << 24) | (notes.index["part"].astype(np.int64) << 16) | notes.index["bar"]


def sorted_cells(notes: NotesStore, idx: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The windows' cells as one array of (row, cell, value) codes, in ascending order."""
    rows, cells, values = notes.window_cells(idx)
    code = (rows.astype(np.int64) << 24) | (cells.astype(np.int64) << 8) | values
    return np.sort(code)


def check(copy: NotesStore, store: NotesStore, n: int, *, block: int = 50_000) -> int:
    """Windows compared; :class:`SystemExit` at the first that differs."""
    a, b = window_keys(copy), window_keys(store)
    if len(a) != len(b) or not np.array_equal(np.sort(a), np.sort(b)):
        raise SystemExit(f"the stores hold different windows ({len(a)} and {len(b)})")
    order_a, order_b = np.argsort(a), np.argsort(b)
    pick = np.arange(len(a))
    if n:
        pick = np.sort(np.random.default_rng(0).choice(len(a), min(n, len(a)), replace=False))
    for s in range(0, len(pick), block):
        at = pick[s : s + block]
        ia, ib = order_a[at], order_b[at]
        for column in ("label", "valid_steps"):
            if not np.array_equal(copy.index[column][ia], store.index[column][ib]):
                raise SystemExit(f"windows differ in {column} (block at {s})")
        if not np.array_equal(sorted_cells(copy, ia), sorted_cells(store, ib)):
            raise SystemExit(f"windows differ in their cells (block at {s})")
        print(f"{s + len(at)}/{len(pick)} windows the same", flush=True)
    return len(pick)


def relabel(blob: dict, config: dict) -> dict:
    """A student checkpoint as contract 3's: ``controls`` in its description, the new config."""
    kwargs = blob["description"]["kwargs"]
    if blob["description"].get("class") != "PartStudent":
        raise SystemExit(f"not a contract-2 student: {blob['description'].get('class')}")
    blob["description"]["kwargs"] = kwargs | {"controls": True}
    blob["config"] = config
    model = checkpoints.model_from_checkpoint(blob)
    if model.contract is not V3:
        raise SystemExit("the relabelled student does not read contract 3")
    return blob


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--store", type=Path, required=True, help="the data folder built by kdtrain")
    p.add_argument("--windows", type=int, default=0, help="windows to compare (0: all)")
    p.add_argument("--ood", action="append", default=[], help="NAME=NOTES: score it there")
    args = p.parse_args()
    config = json.loads((args.run / "config.json").read_text())
    if config["model"]["contract"] != 2:
        raise SystemExit(f"{args.run} is not a contract-2 run")
    copy = NotesStore(Path(config["data"]["out"]) / "notes", contract=V2)
    store = NotesStore(args.store / "notes", contract=V3)
    compared = check(copy, store, args.windows)
    config["model"]["contract"] = 3
    config["data"]["out"] = str(args.store)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "config.json").write_text(json.dumps(config, indent=1))
    for name in ("report.json", "floor_outputs.pt"):
        if (args.run / name).exists():
            shutil.copy(args.run / name, args.out / name)
    for name in STUDENTS:
        if (args.run / name).exists():
            blob = relabel(checkpoints.load(args.run / name), config)
            checkpoints.save(blob, args.out / name)
    ood = {}
    for name, folder in (o.split("=", 1) for o in args.ood):
        model = checkpoints.load_model(args.out / "kdic.pt").eval()
        notes = NotesStore(Path(folder), contract=V3)
        every = np.arange(len(notes), dtype=np.int64)
        ood[name] = evaluate_windows(model, notes, every, torch.device("cpu"))
        print(name, round(ood[name]["macro_f1"], 4), flush=True)
    if ood:
        (args.out / "ood.json").write_text(json.dumps(ood, indent=1))
    print(json.dumps({"windows_compared": compared, "out": str(args.out)}))


if __name__ == "__main__":
    main()
