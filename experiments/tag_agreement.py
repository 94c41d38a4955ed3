"""Does `kdlive tag` give back the family a file had? (issue 27)

    nice python experiments/tag_agreement.py                      # demo corpus + freedoom
    nice python experiments/tag_agreement.py --corpus mine=/path/to/midi --json out.json
    nice python experiments/tag_agreement.py --bundle my-bundle --json out.json

For every file: strip every Program Change, run `kdlive tag --all` on the stripped copy (the
shipped model, CPU) and compare, per part (a channel with notes, not 10), the family of the
program `tag` wrote with the family the file had: the family of the program under which most
of the channel's notes played. Parts whose channel never set a program (General MIDI's default
piano is no one's choice), set only programs outside the 8 families, or got no window are left
out and counted. Prints agreement and macro-F1 over parts per corpus, each family's precision,
recall and F1, and the agreement of always answering the corpus's most common family.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import mido

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from live.errors import MidiFileError  # noqa: E402
from live.midifile import load_midi, read_song  # noqa: E402
from live.model import Model  # noqa: E402
from live.tag import read_channels, tag_file  # noqa: E402
from live.taxonomy import CLASSES, class_of_program  # noqa: E402
from live.testing.songs import demo_midi_files  # noqa: E402

FREEDOOM = Path("/work/shared/corpora/freedoom-music")


def truth(midi: mido.MidiFile) -> tuple[dict[int, str], Counter]:
    """Each scored channel's family (1-16 -> class), and why the others were left out."""
    channels, _ = read_channels(midi)
    notes: dict[int, Counter] = {}
    for part in read_song(midi).parts:
        notes.setdefault(part.channel + 1, Counter())[part.program] += len(part)
    out, left = {}, Counter()
    for ch, c in channels.items():
        if not c.notes or ch == 10:
            continue
        if not c.programs:
            left["never set a program"] += 1
            continue
        family = class_of_program(notes[ch].most_common(1)[0][0])
        if family is None:
            left["program outside the 8 families"] += 1
        else:
            out[ch] = family
    return out, left


def stripped(midi: mido.MidiFile, path: Path) -> Path:
    """``midi`` without its Program Changes (their delta times folded into what follows)."""
    for track in midi.tracks:
        kept, carry = [], 0
        for msg in track:
            if msg.type == "program_change":
                carry += msg.time
                continue
            kept.append(msg.copy(time=msg.time + carry))
            carry = 0
        track[:] = kept
    midi.save(path)
    return path


def written(path: Path) -> dict[int, str]:
    """The family of the first Program Change of each channel in ``path``."""
    out: dict[int, str] = {}
    for track in mido.MidiFile(path).tracks:
        for msg in track:
            if msg.type == "program_change":
                family = class_of_program(msg.program)
                if family is not None:
                    out.setdefault(msg.channel + 1, family)
    return out


def score(pairs: list[tuple[str, str]]) -> dict:
    """Agreement, macro-F1 (over the families that occur, as truth or answer) and each
    family's support, precision, recall and F1."""
    per = {}
    for k in CLASSES:
        tp = sum(t == k and p == k for t, p in pairs)
        support, said = sum(t == k for t, _ in pairs), sum(p == k for _, p in pairs)
        if support or said:
            prec, rec = tp / said if said else 0.0, tp / support if support else 0.0
            f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
            per[k] = {"support": support, "precision": prec, "recall": rec, "f1": f1}
    top = Counter(t for t, _ in pairs).most_common(1)
    return {
        "parts": len(pairs),
        "agreement": sum(t == p for t, p in pairs) / max(1, len(pairs)),
        "macro_f1": sum(v["f1"] for v in per.values()) / max(1, len(per)),
        "most_common_family": top[0][0] if top else None,
        "most_common_agreement": top[0][1] / max(1, len(pairs)) if top else 0.0,
        "families": per,
    }


def run(files: list[Path], model: Model, tmp: Path) -> tuple[list[tuple[str, str]], Counter]:
    pairs: list[tuple[str, str]] = []
    left: Counter = Counter()
    for f in files:
        try:
            midi = load_midi(f)
            want, why = truth(midi)
            left.update(why)
            src = stripped(midi, tmp / "in.mid")
            tag_file(src, tmp / "out.mid", model, only_missing=False)
        except MidiFileError as exc:
            left[f"unreadable file ({exc})"] += 1
            continue
        got = written(tmp / "out.mid")
        for ch, family in want.items():
            if ch in got:
                pairs.append((family, got[ch]))
            else:
                left["no window"] += 1
    return pairs, left


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", action="append", default=[], help="NAME=FOLDER (repeatable)")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    ap.add_argument("--bundle", type=Path, help="the model bundle (default: the shipped one)")
    args = ap.parse_args()
    corpora = {"demo": demo_midi_files(), "freedoom": sorted(FREEDOOM.glob("*.mid"))}
    for item in args.corpus:
        name, _, folder = item.partition("=")
        corpora[name] = sorted(p for p in Path(folder).rglob("*.mid*") if p.is_file())
    model = Model(args.bundle, backend="cpu")
    results, everything = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for name, files in corpora.items():
            pairs, left = run(files, model, Path(tmp))
            everything += pairs
            results[name] = {"files": len(files), **score(pairs), "left_out": dict(left)}
    results["all"] = score(everything)
    print("| corpus | files | parts | agreement | macro-F1 | most common family (its share) |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        files = r.get("files", sum(x.get("files", 0) for x in results.values() if x is not r))
        print(
            f"| {name} | {files} | {r['parts']} | {r['agreement']:.1%} | {r['macro_f1']:.3f} | "
            f"{r['most_common_family']} ({r['most_common_agreement']:.1%}) |"
        )
    print("\n| family | parts | precision | recall | F1 |\n|---|---|---|---|---|")
    for k, v in results["all"]["families"].items():
        print(
            f"| {k} | {v['support']} | {v['precision']:.2f} | {v['recall']:.2f} | {v['f1']:.2f} |"
        )
    for name, r in results.items():
        if r.get("left_out"):
            print(f"\n{name}, left out: {r['left_out']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
