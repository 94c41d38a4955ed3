"""What the contract drops: do a part's controllers (sustain pedal, pitch bend, modulation,
expression) say its family where its notes do not?

    OMP_NUM_THREADS=1 nice python experiments/controllers.py --notes /work/data/notes \\
        --train-songs 1800 --test-songs 600 --out controllers.json

The contract's inputs are notes on an eighth-note grid: a DAW also sends each channel's
controllers, which kdlive ignores. This probe measures what they would add, with the floor
(gradient boosting, :mod:`train.floor`) as the learner, on the same windows, fitted three
ways: on the floor's own statistics, with the **performance** controllers beside them (what a
player or a programmer writes into a part: sustain pedal CC 64, pitch bend, modulation CC 1,
expression CC 11, breath CC 2, portamento CC 5/65, soft pedal and sostenuto CC 66/67), and
with the **mixer** controllers too (volume CC 7, pan CC 10, reverb CC 91, chorus CC 93: what
a General MIDI file sets per track and a DAW usually keeps in its mixer instead of sending).

Each window's controller statistics read only what a daemon could know at the window's end:
the events of the part's MIDI channel (every track on it) inside the window, the value each
controller holds at its end, and how many of each the channel has sent since the song began.
Never the program or the bank. Songs: the first N training and K test songs of the notes
store's song split, in the stable order :mod:`experiments.floor` takes them in; every window
of those songs. Also written: per family, the share of parts whose channel uses each
controller at all
(a performance controller above zero at least once, expression at two values or more).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import mido
import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiments.floor import fit_pool, predict, say, score, side_arguments, sides, timed_fit  # noqa: E402
from live.errors import MidiFileError  # noqa: E402
from live.midifile import load_midi, read_song  # noqa: E402
from live.taxonomy import CLASSES  # noqa: E402
from live.windows import window_bounds  # noqa: E402
from train import floor  # noqa: E402
from train.data.notes import NotesStore  # noqa: E402
from train.students import StoredAnswers, floor_features  # noqa: E402

#: Controllers a performance writes, by name: the CC numbers (``"bend"``: pitch bend).
PERFORMANCE = {
    "pedal": (64,),
    "bend": ("bend",),
    "modulation": (1,),
    "expression": (11,),
    "breath": (2,),
    "portamento": (5, 65),
    "soft": (66, 67),
}
#: Controllers a General MIDI file sets per track, which a DAW keeps in its mixer.
MIXER = {"volume": (7,), "pan": (10,), "reverb": (91,), "chorus": (93,)}
#: Per performance controller: events in the window, the window's largest value, the value
#: held at its end, events since the song began (log1p).
PERF_STATS = ("events", "max", "held", "so_far")
MIX_STATS = ("events", "held")


def feature_names() -> list[str]:
    perf = [f"{c}_{s}" for c in PERFORMANCE for s in PERF_STATS]
    return perf + [f"{c}_{s}" for c in MIXER for s in MIX_STATS]


N_PERF = len(PERFORMANCE) * len(PERF_STATS)


def channel_events(midi: mido.MidiFile) -> dict[int, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per MIDI channel (0-15), per controller name: its events' ticks and values (0-1;
    pitch bend as |bend| / 8192), in time order, from every track."""
    raw: dict[int, dict[str, list[tuple[int, float]]]] = {}
    names = {cc: name for name, ccs in (PERFORMANCE | MIXER).items() for cc in ccs}
    for track in midi.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "control_change" and msg.control in names:
                key, value = names[msg.control], msg.value / 127.0
            elif msg.type == "pitchwheel":
                key, value = "bend", abs(msg.pitch) / 8192.0
            else:
                continue
            raw.setdefault(msg.channel, {}).setdefault(key, []).append((tick, value))
    out: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for ch, per in raw.items():
        out[ch] = {}
        for key, ev in per.items():
            ev.sort(key=lambda e: e[0])
            out[ch][key] = (np.array([e[0] for e in ev]), np.array([e[1] for e in ev]))
    return out


def _stats(
    events: tuple[np.ndarray, np.ndarray] | None, t0: int, t1: int, perf: bool
) -> list[float]:
    if events is None:
        return [0.0, 0.0, -1.0, 0.0] if perf else [0.0, -1.0]
    ticks, values = events
    lo, hi = np.searchsorted(ticks, [t0, t1])
    held = float(values[hi - 1]) if hi else -1.0  # -1: never sent
    if not perf:
        return [float(hi - lo), held]
    inside = values[lo:hi]
    return [float(hi - lo), float(inside.max()) if hi > lo else 0.0, held, float(np.log1p(hi))]


def used(per: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[str]:
    """The controllers a channel really uses: a performance controller sent above zero at
    least once (expression: at two values or more), not only reset; a mixer one sent at all."""
    out = []
    for key, (_, values) in per.items():
        if key in MIXER or (
            len(np.unique(values)) > 1 if key == "expression" else values.max() > 0
        ):
            out.append(key)
    return sorted(out)


def song_controllers(job: tuple[str, list[int], list[int], list[int]]) -> dict:
    """Controller statistics of the windows ``(part, bar)`` of one song; with the share of
    each part's channel's use of each controller."""
    path, parts_channel, want_part, want_bar = job
    try:
        midi = load_midi(path)
        song = read_song(midi)
    except (MidiFileError, ValueError) as exc:
        return {"error": str(exc)}
    events = channel_events(midi)
    bounds = {bar: (t0, t1) for bar, t0, t1 in window_bounds(song.bars)}
    rows = []
    for part, bar in zip(want_part, want_bar, strict=True):
        per = events.get(parts_channel[part], {})
        t0, t1 = bounds[bar]
        row: list[float] = []
        for name in PERFORMANCE:
            row += _stats(per.get(name), t0, t1, True)
        for name in MIXER:
            row += _stats(per.get(name), t0, t1, False)
        rows.append(row)
    uses = {str(p): used(events.get(ch, {})) for p, ch in enumerate(parts_channel)}
    return {"rows": rows, "uses": uses}


def controller_features(
    notes: NotesStore, idx: npt.NDArray[np.int64], workers: int
) -> tuple[npt.NDArray[np.float32], dict]:
    """The controller statistics of windows ``idx`` (in ``idx``'s order), and per family the
    share of parts whose channel sends each controller."""
    song = notes.index["song"][idx]
    jobs, where = [], []
    for s in np.unique(song):
        rows = np.flatnonzero(song == s)
        rec = notes.songs[s]
        channels = [p["channel"] - 1 for p in rec["parts"]]
        jobs.append(
            (
                rec["file"],
                channels,
                notes.index["part"][idx[rows]].tolist(),
                notes.index["bar"][idx[rows]].tolist(),
            )
        )
        where.append((s, rows))
    out = np.zeros((len(idx), len(feature_names())), np.float32)
    out[:, [i for i, n in enumerate(feature_names()) if n.endswith("_held")]] = -1.0
    use_count: dict[str, dict[str, int]] = {c: {} for c in CLASSES}
    parts_count = dict.fromkeys(CLASSES, 0)
    failed = 0
    with ProcessPoolExecutor(workers) as pool:
        for (s, rows), result in zip(
            where, pool.map(song_controllers, jobs, chunksize=8), strict=True
        ):
            if "error" in result:
                failed += 1
                continue
            out[rows] = np.array(result["rows"], np.float32)
            rec = notes.songs[s]
            for p in rec["targets"]:
                family = rec["parts"][p]["class"]
                parts_count[family] += 1
                for key in result["uses"][str(p)]:
                    use_count[family][key] = use_count[family].get(key, 0) + 1
    share = {
        c: {k: round(v / max(parts_count[c], 1), 3) for k, v in sorted(use_count[c].items())}
        | {"parts": parts_count[c]}
        for c in CLASSES
    }
    return out, {"share_of_parts": share, "songs_failed": failed}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    side_arguments(p, test_songs=600)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    notes = NotesStore(args.notes)
    test, train_all, train = sides(
        notes, args.train_songs, args.test_songs, args.max_train_windows, args.seed
    )
    say(
        f"train {len(train):,} windows of {len(np.unique(notes.index['song'][train])):,} songs; "
        f"test {len(test):,} of {len(np.unique(notes.index['song'][test])):,}"
    )
    t0 = time.perf_counter()
    c_train, _ = controller_features(notes, train, args.workers)
    c_test, uses = controller_features(notes, test, args.workers)
    say(f"controllers: {time.perf_counter() - t0:.0f} s")
    f_train = floor_features(notes, train_all, train)
    f_test = floor_features(notes, test)
    say(f"floor features: {time.perf_counter() - t0:.0f} s")
    own = len(floor.FEATURE_NAMES)
    y = notes.labels[train]
    result: dict = {
        "notes": str(args.notes),
        "train": {"windows": len(train), "songs": int(len(np.unique(notes.index["song"][train])))},
        "test": {"windows": len(test), "songs": int(len(np.unique(notes.index["song"][test])))},
        "features": feature_names(),
        **uses,
        "models": {},
    }
    inputs = {
        "floor": (f_train[:, :own], f_test[:, :own], f_train, f_test),
        "floor + performance": (
            np.hstack([f_train[:, :own], c_train[:, :N_PERF]]),
            np.hstack([f_test[:, :own], c_test[:, :N_PERF]]),
            np.hstack([f_train, c_train[:, :N_PERF]]),
            np.hstack([f_test, c_test[:, :N_PERF]]),
        ),
        "floor + performance + mixer": (
            np.hstack([f_train[:, :own], c_train]),
            np.hstack([f_test[:, :own], c_test]),
            np.hstack([f_train, c_train]),
            np.hstack([f_test, c_test]),
        ),
    }
    for name, (xw, xw_test, xr, xr_test) in inputs.items():
        with fit_pool() as pool:  # window and running model side by side
            a = pool.submit(timed_fit, xw, y, args.seed)
            b = pool.submit(timed_fit, xr, y, args.seed)
            (mw, tw), (mr, tr) = a.result(), b.result()
        answers = StoredAnswers(name, test, predict(mw, xw_test), predict(mr, xr_test))
        entry = score(answers, notes, test) | {"fit_seconds": [round(tw), round(tr)]}
        result["models"][name] = entry
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        parts = entry["parts"].get("8", {})
        say(
            f"{name}: window {entry['macro_f1']:.3f}, running {entry['running']['macro_f1']:.3f}, "
            f"after 8 {parts.get('macro_f1', float('nan')):.3f}; per class "
            + " ".join(f"{c} {v:.2f}" for c, v in entry["per_class"].items() if v is not None)
        )


if __name__ == "__main__":
    main()
