"""Issue 26: when another *song* plays the same line, does it give it the same family?

The ceiling (``experiments/ceiling.py``) compares versions of one song; what it cannot see is
the same line given to a flute in one song and a violin in another, which no notes-only model
can tell apart. This probe measures that: each test part (the students' test songs) is matched
to the training part of another song whose line is most alike, and that part's family is its
answer (a nearest-neighbour lookup across songs, on the same split as the students).

    python experiments/crosssong.py --notes NOTES [--run RUN] [--out crosssong.json]

``NOTES``: a notes store (``kdtrain data``). A part's *line* is its top pitch at each
eighth-note step where a note starts (the store's onset channel, each bar read once); its
*grams* the set of pitch-interval 4-grams of that line (intervals clipped to +-24:
transposition- and tempo-free, as the ceiling's). Parts with fewer than :data:`MIN_GRAMS`
distinct grams are left out. Similarity: the Jaccard of two parts' gram sets.

With ``--run`` (a run folder whose ``kdic.pt`` learnt from this store, on its split), the
student is scored on the same test parts, apart for those whose line recurs at its register
in a training song (Jaccard at least :data:`RECURS`) and the others: per window, and each
part's running answer after 8 bars, beside the lookup's answer on the same parts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import sparse

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from live.taxonomy import CLASSES  # noqa: E402
from train.data.notes import NotesStore  # noqa: E402
from train.evaluate import evaluate  # noqa: E402

MIN_GRAMS = 8
GRAM = 4
PLANE = 128 * 16  # one channel of a window's cells
ONSET = 1
#: Semitones between two parts' registers that still count as the same register.
REGISTER = 6
#: A line "recurs" in another song when its match there is at least this alike.
RECURS = 0.5
THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)


def part_lines(store: NotesStore, chunk: int = 200_000) -> tuple[npt.NDArray, ...]:
    """``(part, step, pitch)`` of every onset of each part's first bar of each window (so
    every bar once), ``part`` a number per (song, part) and ``step`` in eighths from bar 0."""
    key = store.index["song"].astype(np.int64) * 4096 + store.index["part"]
    parts, part_of = np.unique(key, return_inverse=True)
    out: list[tuple[npt.NDArray, ...]] = []
    for s in range(0, len(store), chunk):
        idx = np.arange(s, min(s + chunk, len(store)))
        rows, cells, _ = store.window_cells(idx)
        cells = cells.astype(np.int64)
        keep = (cells // PLANE == ONSET) & (cells % 16 < 8)
        rows, cells = rows[keep], cells[keep] % PLANE
        w = idx[rows]
        out.append(
            (part_of[w], store.index["bar"][w].astype(np.int64) * 8 + cells % 16, cells // 16)
        )
    part, step, pitch = (np.concatenate(a) for a in zip(*out, strict=True))
    return parts, part, step, pitch


def gram_sets(
    part: npt.NDArray,
    step: npt.NDArray,
    pitch: npt.NDArray,
    n_parts: int,
    *,
    rhythm: bool = False,
) -> tuple[sparse.csr_matrix, npt.NDArray]:
    """Parts x grams, 1 where the part's line holds the gram; and each part's register (the
    median pitch of its line, -1 without one). With ``rhythm``, each of a gram's intervals
    carries the time to the next onset (eighths, 1 to 16): the same line in the same rhythm."""
    order = np.lexsort((-pitch, step, part))
    part, step, pitch = part[order], step[order], pitch[order]
    top = np.ones(len(part), bool)
    top[1:] = (part[1:] != part[:-1]) | (step[1:] != step[:-1])
    part, step, pitch = part[top], step[top], pitch[top]
    register = np.full(n_parts, -1.0)
    starts = np.flatnonzero(np.r_[True, part[1:] != part[:-1]])
    for a, b in zip(starts, np.r_[starts[1:], len(part)], strict=True):
        register[part[a]] = np.median(pitch[a:b])
    iv = np.clip(np.diff(pitch), -24, 24) + 24  # 0..48
    if rhythm:
        iv = iv * 16 + np.clip(np.diff(step), 1, 16) - 1
    base = 49 * (16 if rhythm else 1)
    same = part[1:] == part[:-1]
    n = len(iv) - GRAM + 1
    ok = np.ones(n, bool)
    code = np.zeros(n, np.int64)
    for k in range(GRAM):
        ok &= same[k : k + n]
        code = code * base + iv[k : k + n]
    rows = part[:n][ok]
    grams, col = np.unique(code[ok], return_inverse=True)
    m = sparse.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, col)), shape=(n_parts, len(grams))
    )
    m.sum_duplicates()
    m.data[:] = 1.0  # a set: a gram counts once
    return m, register


def nearest(
    q: sparse.csr_matrix,
    ref: sparse.csr_matrix,
    registers: tuple[npt.NDArray, npt.NDArray] | None = None,
    block: int = 256,
) -> tuple[npt.NDArray, npt.NDArray]:
    """Each row of ``q``'s most alike row of ``ref`` and their Jaccard; with ``registers``
    (of ``q``'s rows and ``ref``'s), among the rows whose register is within
    :data:`REGISTER` semitones only."""
    size_q = np.asarray(q.sum(axis=1)).ravel()
    size_r = np.asarray(ref.sum(axis=1)).ravel()
    ref_t = ref.T.tocsc()
    best = np.zeros(q.shape[0], np.int64)
    score = np.zeros(q.shape[0], np.float64)
    for s in range(0, q.shape[0], block):
        inter = (q[s : s + block] @ ref_t).toarray()
        jac = inter / (size_q[s : s + block, None] + size_r[None, :] - inter)
        if registers is not None:
            far = np.abs(registers[0][s : s + block, None] - registers[1][None, :]) > REGISTER
            jac[far] = 0.0
        best[s : s + block] = jac.argmax(axis=1)
        score[s : s + block] = jac[np.arange(len(jac)), best[s : s + block]]
    return best, score


def scores(
    y_all: npt.NDArray, guess: npt.NDArray, score: npt.NDArray, bars: npt.NDArray, mode: str
) -> dict:
    """Per threshold on the match's Jaccard: the test parts matched at least that well, how
    often their match's family is theirs, macro-F1 by part and by bar, F1 per family."""
    out = {}
    for t in THRESHOLDS:
        m = score >= t
        if not m.any():
            continue
        y, g, w = y_all[m], guess[m], bars[m]
        scored = evaluate(y, np.eye(len(CLASSES))[g])
        per_bar = evaluate(np.repeat(y, w), np.eye(len(CLASSES))[np.repeat(g, w)])
        r = out[str(t)] = {
            "parts": int(m.sum()),
            "share": float(m.mean()),
            "agree": scored["accuracy"],
            "macro_f1": scored["macro_f1"],
            "macro_f1_per_bar": per_bar["macro_f1"],
            "per_class": scored["per_class"],
            "support": scored["support"],
        }
        print(
            f"{mode}, jaccard >= {t}: {r['parts']} parts ({r['share']:.3f}), agree "
            f"{r['agree']:.3f}, macro-F1 {r['macro_f1']:.3f} "
            f"(per bar {r['macro_f1_per_bar']:.3f}); "
            + " ".join(f"{c} {v:.2f}" for c, v in r["per_class"].items() if v is not None),
            flush=True,
        )
    return out


def student_scores(
    run: Path,
    store: NotesStore,
    pid: npt.NDArray,
    recurs: npt.NDArray[np.bool_],
    lookup: npt.NDArray,
) -> dict:
    """The run's student on the test parts whose line recurs in a training song and on the
    others: window macro-F1, and the running answer's after 8 bars beside the lookup's."""
    import torch

    from export.bundle import load_student
    from train.batches import NotesSource
    from train.history import running_answers
    from train.models import PartStudent

    model, _ = load_student(run / "kdic.pt")
    if not isinstance(model, PartStudent):
        raise SystemExit(f"{run}/kdic.pt is not a contract-2 student (PartStudent)")
    idx = store.split("test")
    window, running = running_answers(
        model, NotesSource(store, cells=True), store, idx, torch.device("cpu")
    )
    y, part = store.labels[idx], pid[idx]
    # Each part's running answer after 8 bars: its 7th window in bar order.
    order = np.lexsort((store.index["bar"][idx], part))
    start = np.flatnonzero(np.r_[True, part[order][1:] != part[order][:-1]])
    nth = start + 6
    after8 = order[nth[nth < np.r_[start[1:], len(order)]]]
    out = {}
    for name, where in (("recurs", recurs), ("does_not_recur", ~recurs)):
        w = where[part]
        a = after8[where[part[after8]]]
        lk = lookup[part[a]]
        known = lk >= 0
        out[name] = {
            "windows": int(w.sum()),
            "window_macro_f1": evaluate(y[w], window[w])["macro_f1"],
            "parts_after_8": int(len(a)),
            "after_8_macro_f1": evaluate(y[a], running[a])["macro_f1"],
            "parts_with_a_line": int(known.sum()),
            "student_on_those": evaluate(y[a][known], running[a][known])["macro_f1"],
            "lookup_on_those": evaluate(y[a][known], np.eye(len(CLASSES))[lk[known]])["macro_f1"],
        }
        print(name, out[name], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notes", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("crosssong.json"))
    ap.add_argument("--run", type=Path, help="a run folder: score its kdic.pt on the same parts")
    args = ap.parse_args()
    store = NotesStore(args.notes)
    parts, part, step, pitch = part_lines(store)
    grams, register = gram_sets(part, step, pitch, len(parts))
    song = parts // 4096
    pid = np.searchsorted(parts, store.index["song"].astype(np.int64) * 4096 + store.index["part"])
    label = np.zeros(len(parts), np.int64)
    at, first = np.unique(pid, return_index=True)
    label[at] = store.labels[first]
    bars = np.bincount(pid, minlength=len(parts))  # windows, a bar each
    split = store.song_split[song]
    enough = np.asarray(grams.sum(axis=1)).ravel() >= MIN_GRAMS
    test = np.flatnonzero((split == "test") & enough)
    train = np.flatnonzero((split == "train") & enough)
    result: dict = {
        "parts": {
            "test": int(len(test)),
            "train": int(len(train)),
            "test_left_out": int(((split == "test") & ~enough).sum()),
        },
        "min_grams": MIN_GRAMS,
        "register_semitones": REGISTER,
    }
    rhythmic, _ = gram_sets(part, step, pitch, len(parts), rhythm=True)
    at_register = (register[test], register[train])
    matches = {}
    for mode, sets, registers in (
        ("line", grams, None),
        ("line_and_register", grams, at_register),
        ("line_rhythm_and_register", rhythmic, at_register),
    ):
        best, score = matches[mode] = nearest(sets[test], sets[train], registers)
        result[mode] = scores(label[test], label[train[best]], score, bars[test], mode)
    if args.run:
        best, score = matches["line_and_register"]
        recurs = np.zeros(len(parts), bool)
        recurs[test[score >= RECURS]] = True
        lookup = np.full(len(parts), -1)
        lookup[test] = label[train[best]]
        result["student"] = student_scores(args.run, store, pid, recurs, lookup)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
