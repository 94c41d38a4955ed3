"""The ceiling: how often two versions of one song give the same material the same family.

    nice python experiments/ceiling.py --notes NOTES --workers 2 --out /tmp/ceiling.json
    nice python experiments/ceiling.py --midi MIDI --workers 2 --out /tmp/ceiling.json

``--notes``: a finished notes store (``kdtrain data``); its version groups, and only their
files are parsed. ``--midi``: a folder of General MIDI files, every one parsed and grouped by
the store's own code.

A corpus holds songs in several versions (different files of one song: the version groups of
the notes store, :func:`train.data.notes.group_songs`). Within a group, every two versions A
and B are compared part by part. Each part in the task (the parts the students are scored on:
:func:`train.data.collection.audible_parts` in the 8 classes) becomes its *line*: the top
pitch at each distinct onset, onsets in ticks (so in beats: the file's own grid). A line's
*grams* are its pitch-interval n-grams (intervals clipped to +-24 semitones): transposition
invariant and, holding no time at all, tempo and re-timing invariant. Two parts play the same
material when the Jaccard similarity of their gram sets is at least ``--threshold``; a part
of A and a part of B are *matched* when each is the other's best (highest similarity, then
nearest median pitch). A part needs :data:`MIN_GRAMS` distinct grams to be matched at all.

For the matched pairs, the family of one version is taken as a prediction of the other's,
both ways: counted per part, the confusion matrix is symmetric and each family's F1 equals
its agreement; it is also counted per bar each part plays in, as a student's window score
is. A line's *rhythmic grams* are n-grams of (interval, time to the next onset in twelfths
of a beat).
Pairs are split two ways: by the two whole files, *near-copy songs* when the Jaccard
similarity of the songs' rhythmic grams (over all their lines) is at least ``--near-copy``;
and by the two parts, *same notes* when their own rhythmic grams' Jaccard is at least
``--same-line``, *lines differ* otherwise: the same material, arranged differently. Writes
the JSON to ``--out`` and prints Markdown tables; figures in docs/results.md ("The ceiling").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from live.errors import MidiFileError  # noqa: E402
from live.midifile import Part, load_midi, read_song  # noqa: E402
from live.taxonomy import CLASSES, class_of_program  # noqa: E402
from train.data.collection import audible_parts, check_tempo, in_task  # noqa: E402
from train.data.notes import NotesStore, fingerprint, group_songs  # noqa: E402
from train.errors import DataError  # noqa: E402

N_GRAM = 4
THRESHOLD, THRESHOLDS = 0.3, (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)
MIN_GRAMS = 8
NEAR_COPY, SAME_LINE, CUTS = 0.9, 0.5, (0.3, 0.5, 0.7, 0.9, 0.99)


@dataclass
class Line:
    """One part of the task: its family (index into CLASSES), median pitch and gram sets."""

    family: int
    register: float
    bars: int  # bars in which the part has an onset: about its windows in the notes store
    grams: npt.NDArray[np.int64]  # sorted, unique: pitch-interval n-grams
    rhythm: npt.NDArray[np.int64]  # sorted, unique: (interval, inter-onset) n-grams


@dataclass
class Version:
    file: str
    sha1: str
    lines: list[Line]
    fingerprint: npt.NDArray[np.int64]  # the notes store's MinHash, for grouping


# ------------------------------------------------------------------------------- lines


def top_line(part: Part) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``(onsets, pitches)``: each distinct onset (ticks, ascending) and its highest pitch."""
    onsets, first = np.unique(part.starts, return_index=True)
    return onsets, np.maximum.reduceat(part.pitches, first)


def interval_grams(pitches: npt.ArrayLike, n: int = N_GRAM) -> npt.NDArray[np.int64]:
    """Sorted unique n-grams of the intervals between consecutive pitches (each clipped to
    +-24 semitones, 6 bits): the same for a line transposed or played at any tempo."""
    return _pack(_steps(pitches), 6, n)


def rhythm_grams(
    pitches: npt.ArrayLike, onsets_beats: npt.ArrayLike, n: int = N_GRAM
) -> npt.NDArray[np.int64]:
    """Sorted unique n-grams of (interval, time to the next onset in twelfths of a beat, up to
    5 beats): two lines share most of them only when their notes *and* rhythm agree."""
    gaps = np.clip(np.rint(np.diff(np.asarray(onsets_beats, float)) * 12), 0, 63)
    return _pack(_steps(pitches) << 6 | gaps.astype(np.int64), 12, n)


def _steps(pitches: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Intervals between consecutive pitches, clipped to +-24 and shifted to 0..48."""
    p = np.asarray(pitches, np.int64)
    return np.clip(p[1:] - p[:-1], -24, 24) + 24


def _pack(symbols: npt.NDArray[np.int64], bits: int, n: int) -> npt.NDArray[np.int64]:
    if len(symbols) < n:
        return np.zeros(0, np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(symbols, n)
    return np.unique((windows << (bits * np.arange(n))).sum(axis=1))


def read_version(path: Path) -> Version | None:
    """The lines of one MIDI file's parts in the task, or None for a file the store skips."""
    data = path.read_bytes()
    try:
        song = read_song(load_midi(data))
        check_tempo(song)
    except (MidiFileError, DataError, ValueError):
        return None
    sources, _ = audible_parts(song, path)
    lines = []
    for part in sources:
        if not in_task(part):
            continue
        onsets, pitches = top_line(part)
        family = CLASSES.index(str(class_of_program(part.program)))
        bars = len(np.unique(np.searchsorted(song.bars.starts, onsets, side="right")))
        lines.append(
            Line(
                family,
                float(np.median(part.pitches)),
                bars,
                interval_grams(pitches),
                rhythm_grams(pitches, onsets / song.ticks_per_beat),
            )
        )
    return Version(str(path), hashlib.sha1(data).hexdigest(), lines, fingerprint(sources))


# ---------------------------------------------------------------------------- matching


def jaccard(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> float:
    """|a & b| / |a | b| of two sorted unique arrays (0 when both are empty)."""
    both = len(np.intersect1d(a, b, assume_unique=True))
    union = len(a) + len(b) - both
    return both / union if union else 0.0


def match_lines(
    a: list[Line], b: list[Line], min_grams: int = MIN_GRAMS
) -> list[tuple[int, int, float]]:
    """``(i, j, similarity)`` for every part i of ``a`` and j of ``b`` that are each other's
    best match: highest gram Jaccard, ties broken by the nearer median pitch. Parts with fewer
    than ``min_grams`` grams match nothing; pairs of similarity 0 are dropped."""
    ok_a = [i for i, x in enumerate(a) if len(x.grams) >= min_grams]
    ok_b = [j for j, y in enumerate(b) if len(y.grams) >= min_grams]
    if not ok_a or not ok_b:
        return []
    sim = np.array([[jaccard(a[i].grams, b[j].grams) for j in ok_b] for i in ok_a])
    gap = np.array([[abs(a[i].register - b[j].register) for j in ok_b] for i in ok_a])
    score = sim * 1000 - np.minimum(gap, 127) / 128  # similarity first, register second
    best_b, best_a = score.argmax(axis=1), score.argmax(axis=0)
    return [
        (ok_a[r], ok_b[c], float(sim[r, c]))
        for r, c in enumerate(best_b)
        if best_a[c] == r and sim[r, c] > 0
    ]


def song_similarity(a: Version, b: Version) -> float:
    """Jaccard of the two songs' rhythmic grams over all their lines: 1 for the same notes."""

    def all_grams(v: Version) -> npt.NDArray[np.int64]:
        return np.unique(np.concatenate([x.rhythm for x in v.lines] or [np.zeros(0, np.int64)]))

    return jaccard(all_grams(a), all_grams(b))


@dataclass
class Match:
    """One matched pair of parts of two versions of a song."""

    families: tuple[int, int]
    bars: tuple[int, int]
    similarity: float
    songs: float  # the two versions' song_similarity
    lines: float  # Jaccard of the two parts' rhythmic grams: 1 when they play the same notes


def version_matches(
    versions: list[Version], groups: list[list[int]]
) -> tuple[list[Match], list[float]]:
    """Every matched pair of parts over every two versions of every group, and each version
    pair's song similarity."""
    matches, songs = [], []
    for members in groups:
        for p, q in combinations(members, 2):
            a, b = versions[p], versions[q]
            songs.append(song_similarity(a, b))
            for i, j, s in match_lines(a.lines, b.lines):
                x, y = a.lines[i], b.lines[j]
                same = jaccard(x.rhythm, y.rhythm)
                matches.append(Match((x.family, y.family), (x.bars, y.bars), s, songs[-1], same))
    return matches, songs


# ---------------------------------------------------------------------------- scoring


def agreement(matches: list[Match], *, by_bars: bool = False) -> dict:
    """Each version's family taken as the prediction of the other's, both ways: the share that
    agree, each family's F1 and their macro mean over the families present. Each part counts
    once, or (``by_bars``) once per bar it plays in, as windows count in a student's score.
    Counted per part, the confusion is symmetric and a family's F1 is its agreement."""
    k = len(CLASSES)
    confusion = np.zeros((k, k))
    for m in matches:
        (x, y), (bx, by) = m.families, m.bars
        confusion[x, y] += bx if by_bars else 1
        confusion[y, x] += by if by_bars else 1
    support = confusion.sum(axis=1)
    present = support > 0
    both = support + confusion.sum(axis=0)
    f1 = np.divide(2 * np.diag(confusion), both, out=np.zeros(k), where=both > 0)
    return {
        "pairs": len(matches),
        "agree": float(np.trace(confusion) / max(1, confusion.sum())),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_family": {c: round(float(f1[i]), 4) for i, c in enumerate(CLASSES) if present[i]},
        "support": {c: int(support[i]) for i, c in enumerate(CLASSES)},
    }


SUBSETS = ("all", "near-copy songs", "songs differ", "same notes", "lines differ")


def subsets(matches: list[Match], near_copy: float, same_line: float) -> dict[str, list[Match]]:
    """The matches of all version pairs; split by the two songs' similarity (near-copies or
    not); split by the two parts' (the same notes, or lines that differ)."""
    return {
        "all": matches,
        "near-copy songs": [m for m in matches if m.songs >= near_copy],
        "songs differ": [m for m in matches if m.songs < near_copy],
        "same notes": [m for m in matches if m.lines >= same_line],
        "lines differ": [m for m in matches if m.lines < same_line],
    }


def sweep(matches: list[Match], thresholds: tuple[float, ...], **cuts: float) -> dict:
    """Per threshold and subset, :func:`agreement` of the matches at least that similar, per
    part and per bar."""
    out: dict = {}
    for t in thresholds:
        kept = [m for m in matches if m.similarity >= t]
        out[str(t)] = {
            name: {"parts": agreement(sub), "bars": agreement(sub, by_bars=True)}
            for name, sub in subsets(kept, **cuts).items()
        }
    return out


def cut_sweep(matches: list[Match], threshold: float) -> dict:
    """Per cut, the agreement of the part pairs (at ``threshold``) below it, by song
    similarity and by the two parts' own similarity: how the figures move with the cut."""
    kept = [m for m in matches if m.similarity >= threshold]
    return {
        by: {str(c): agreement([m for m in kept if getattr(m, by) < c]) for c in CUTS}
        for by in ("songs", "lines")
    }


# ---------------------------------------------------------------------------- corpus


def read_versions(files: list[Path], workers: int) -> list[Version]:
    """Parse the files (``workers`` processes), one version per distinct content."""
    with ProcessPoolExecutor(max_workers=workers) as pool:
        parsed = list(pool.map(read_version, files, chunksize=8))
    seen: set[str] = set()
    out = []
    for v in parsed:
        if v is not None and v.sha1 not in seen:
            seen.add(v.sha1)
            out.append(v)
    return out


def store_groups(notes: Path) -> dict[str, str]:
    """File -> version group (the store's ``song_key``) of every song of a finished notes
    store that is in a group of 2 or more."""
    store = NotesStore(notes)
    keys, sizes = [str(k) for k in store.song_key], dict[str, int]()
    for key in keys:
        sizes[key] = sizes.get(key, 0) + 1
    return {s["file"]: k for s, k in zip(store.songs, keys, strict=True) if sizes[k] > 1}


def version_groups(versions: list[Version], keys: dict[str, str] | None) -> list[list[int]]:
    """Groups (2 or more) of versions: by the store's ``keys``, or without a store by the
    store's own grouping (:func:`group_songs`) of the versions' fingerprints."""
    if keys is None:
        group = [str(g) for g in group_songs(np.stack([v.fingerprint for v in versions]))]
    else:
        group = [keys[v.file] for v in versions]
    members: dict[str, list[int]] = {}
    for i, g in enumerate(group):
        members.setdefault(g, []).append(i)
    return [m for m in members.values() if len(m) > 1]


def table(result: dict) -> str:
    """Markdown: per subset at the chosen threshold, the threshold sweep, the cut sweep."""
    rows = [
        "| pairs of parts | pairs | agree | macro-F1 | macro-F1 per bar | "
        + " | ".join(CLASSES)
        + " |",
        "|---" + "|---:" * (4 + len(CLASSES)) + "|",
    ]
    for name, by in result["sweep"][str(result["threshold"])].items():
        a, w = by["parts"], by["bars"]
        fam = " | ".join(f"{a['per_family'].get(c, float('nan')):.2f}" for c in CLASSES)
        rows.append(
            f"| {name} | {a['pairs']} | {a['agree']:.3f} | {a['macro_f1']:.3f} | "
            f"{w['macro_f1']:.3f} | {fam} |"
        )
    rows += ["", "| threshold | " + " | ".join(SUBSETS) + " |", "|---:" + "|---:" * len(SUBSETS)]
    rows[-1] += "|"
    for t, by in result["sweep"].items():
        cells = [_cell(by[n]["parts"]) for n in SUBSETS]
        rows.append(f"| {t} | " + " | ".join(cells) + " |")
    rows += ["", "| cut | songs below it | parts below it |", "|---:|---:|---:|"]
    for cut in result["cuts"]["songs"]:
        songs, lines = result["cuts"]["songs"][cut], result["cuts"]["lines"][cut]
        rows.append(f"| {cut} | {_cell(songs)} | {_cell(lines)} |")
    return "\n".join(rows)


def _cell(a: dict) -> str:
    """``pairs, agree, macro-F1``."""
    return f"{a['pairs']}, {a['agree']:.3f}, {a['macro_f1']:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--midi", type=Path, help="a folder of General MIDI files (no store)")
    p.add_argument("--notes", type=Path, help="a finished notes store: its groups' files")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threshold", type=float, default=THRESHOLD)
    p.add_argument("--near-copy", type=float, default=NEAR_COPY)
    p.add_argument("--same-line", type=float, default=SAME_LINE)
    p.add_argument("--out", type=Path, default=Path("/tmp/ceiling.json"))
    args = p.parse_args()
    if (args.midi is None) == (args.notes is None):
        p.error("give --midi FOLDER (parse and group every file) or --notes STORE (its groups)")
    t0 = time.perf_counter()
    keys = store_groups(args.notes) if args.notes else None
    files = sorted(map(Path, keys)) if keys else sorted(args.midi.rglob("*.mid"))
    versions = read_versions(files, args.workers)
    groups = version_groups(versions, keys)
    matches, songs = version_matches(versions, groups)
    cuts = {"near_copy": args.near_copy, "same_line": args.same_line}
    result = {
        "files": len(files),
        "versions": len(versions),
        "groups": len(groups),
        "songs_in_groups": sum(map(len, groups)),
        "parts_in_groups": sum(len(versions[i].lines) for g in groups for i in g),
        "version_pairs": len(songs),
        "near_copy_version_pairs": sum(s >= args.near_copy for s in songs),
        "mutual_best_pairs": len(matches),
        "n_gram": N_GRAM,
        "min_grams": MIN_GRAMS,
        "threshold": args.threshold,
        **cuts,
        "sweep": sweep(matches, tuple(sorted({*THRESHOLDS, args.threshold})), **cuts),
        "cuts": cut_sweep(matches, args.threshold),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
