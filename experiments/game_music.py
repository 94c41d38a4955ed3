"""Does game music in training help on other game music? The floor learns one set, scores the other.

    OMP_NUM_THREADS=1 nice python experiments/game_music.py --notes D/notes \\
        --ood freedoom=R/ood/freedoom/notes --ood demo=R/ood/demo/notes --out game_music.json

The student scores 0.33 and 0.37 per window on the two game-music sets against 0.52 in domain,
and no cue of its input is to blame (docs/results.md): game music writes its parts otherwise.
The lever left is data written that way, of which there are only these two small labelled
sets. So, cheaply, with the floor as the learner (gradient boosting on the window's hand
statistics, :mod:`train.floor`; the student is an hour per run): for each set, fitted on

- the corpus alone (``--max-train-windows`` windows of the first ``--train-songs`` training
  songs, as ``experiments/floor.py`` draws them),
- the same with every window of the *other* game set added, repeated so that it makes
  ``--share`` of the rows (each share a fit),
- the other game set alone,

and scored on every window of the set (window macro-F1 and F1 per class). Writes the JSON and
prints a Markdown table.
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

from floor import fit_pool, n_songs, predict, say, song_split, take_songs, timed_fit  # noqa: E402
from window_length import scores, window_features  # noqa: E402

from live.taxonomy import CLASSES  # noqa: E402
from train import floor  # noqa: E402
from train.data.notes import NotesStore  # noqa: E402

Features = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int64]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--notes", type=Path, required=True)
    p.add_argument("--ood", action="append", required=True, help="NAME=NOTES_STORE, twice")
    p.add_argument("--train-songs", type=int, default=1800)
    p.add_argument("--max-train-windows", type=int, default=200_000)
    p.add_argument("--share", type=float, nargs="+", default=[0.1, 0.3])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    sets = dict(s.split("=", 1) for s in args.ood)
    if len(sets) != 2:
        p.error("--ood twice: each set is scored with the other one in training")
    notes = NotesStore(args.notes)
    split, sha1 = song_split(notes)
    train = floor.sample(
        take_songs(split["train"], sha1, args.train_songs), args.max_train_windows, seed=args.seed
    )
    x, y = window_features(notes, train), notes.labels[train]
    games = {name: NotesStore(Path(path)) for name, path in sets.items()}
    game = {
        name: (window_features(s, np.arange(len(s.labels))), s.labels) for name, s in games.items()
    }
    result: dict = {
        "notes": str(args.notes),
        "train": {"windows": len(train), "songs": n_songs(train, notes)},
        "sets": {
            name: {"windows": len(s.labels), "songs": len(s.songs)} for name, s in games.items()
        },
        "models": {},
    }
    say(
        f"corpus: {len(train):,} windows; "
        + ", ".join(f"{k} {len(v[1]):,}" for k, v in game.items())
    )

    fits: dict[str, tuple[Features, Labels]] = {"the corpus": (x, y)}
    for other, (gx, gy) in game.items():
        for share in args.share:
            mx, my = mixed(x, y, gx, gy, share)
            fits[f"the corpus + {other} ({1 - len(y) / len(my):.0%} of rows)"] = (mx, my)
        fits[f"{other} alone"] = (gx, gy)
    with fit_pool() as pool:  # two fits side by side, one thread each
        futures = {
            name: pool.submit(timed_fit, fx, fy, args.seed) for name, (fx, fy) in fits.items()
        }
        for name, future in futures.items():
            model, seconds = future.result()
            entry: dict = {"rows": len(fits[name][1]), "fit_seconds": round(seconds, 1)}
            for target, (gx, gy) in game.items():
                if target not in name:  # a set is never scored by a model that learnt it
                    entry[target] = scores(gy, predict(model, gx).argmax(1))
            result["models"][name] = entry
            args.out.write_text(json.dumps(result, indent=1) + "\n")
            say(
                f"{name}: "
                + ", ".join(f"{t} {entry[t]['macro_f1']:.3f}" for t in game if t in entry)
            )
    print(table(result))


def mixed(
    x: Features, y: Labels, gx: Features, gy: Labels, share: float
) -> tuple[Features, Labels]:
    """``x, y`` with ``gx, gy`` repeated (a whole number of times, at least once) so that they
    make about ``share`` of the rows."""
    times = max(1, round(share / (1 - share) * len(y) / len(gy)))
    return np.concatenate([x, np.tile(gx, (times, 1))]), np.concatenate([y, np.tile(gy, times)])


def table(result: dict) -> str:
    """Markdown: per model, each set's window macro-F1 and F1 per class."""
    rows = ["| trained on | scored on | rows | window | " + " | ".join(CLASSES) + " |"]
    rows.append("|---|---|---:|---:|" + "---:|" * len(CLASSES))
    for name, m in result["models"].items():
        for target in result["sets"]:
            if target in m:
                per = " | ".join(f"{m[target]['per_class'][c]:.3f}" for c in CLASSES)
                rows.append(
                    f"| {name} | {target} | {m['rows']:,} | {m[target]['macro_f1']:.3f} | {per} |"
                )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
