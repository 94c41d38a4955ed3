"""Data-pipeline throughput against FluidSynth alone on the same tracks, in the same run.

Usage::

    python benchmarks/data_throughput.py --songs 30          # writes benchmarks/results/...
    python benchmarks/data_throughput.py --cluster-case --songs 200 --midi DIR

1. Sample ``--songs`` MIDI files, every k-th of the sorted corpus, and copy them into a fresh
   work folder (default corpus: ``../shared/corpora/lakhlike-pop-9490.tar.xz``, unpacked once
   into ``/tmp/kdlive-bench/lakhlike``).
2. Run the whole pipeline, :func:`train.data.build`, with ``--workers`` processes. Stage
   boundaries are read off the ``progress`` callback: a stage starts at its first call (the
   ``done=0`` call) and ends at its last (``done == total``). What lies outside the two stages
   (planning, the Slakh scan, the summary) counts in the total only.
3. The reference: every stem the pipeline kept (its ``MIDI/Snn.mid``, with the soundfont named
   in ``metadata.yaml``) rendered again with exactly :func:`train.data.render.fluidsynth_command`
   into a throw-away raw file, ``--workers`` FluidSynth processes at a time, longest stem first
   (the best schedule FluidSynth alone can get, so the ratio is not flattered). The pipeline
   itself may render in-process through libfluidsynth; ``pipeline.renderer`` says which.

``--cluster-case``: instead, the engine's overhead: the notes store of the same songs built
twice, by the process pool and by a local Dask cluster (``--cluster local:N``) with the same
number of workers, each timed (songs per second), and the two stores checked byte for byte.

Both phases run with the soundfonts already in the page cache (read once before timing).
``cpu.other_processes_cpu_s`` (busy CPU in /proc/stat minus ours) shows whether anything else
shared the cores during a phase: on a shared machine, compare ratios, not absolute speeds.
Throughput is stem audio seconds (the FLACs' durations) per wall-clock second; the goal is the
whole pipeline at >= 0.7x FluidSynth alone. Writes JSON and prints a summary; not a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile
import yaml

from live.latency import machine
from train.config import DataConfig
from train.data import collection
from train.data.build import build
from train.data.render import fluidsynth_command, fluidsynth_path
from train.data.soundfonts import find_soundfonts

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpora" / "lakhlike-pop-9490.tar.xz"
UNPACKED = Path("/tmp/kdlive-bench/lakhlike")
CORPUS_SUBDIR = Path("mid") / "data_D-Full"
DEFAULT_JSON = REPO / "benchmarks" / "results" / "data_throughput.json"
CLUSTER_JSON = REPO / "benchmarks" / "results" / "data_throughput_cluster.json"
#: The collection docs/data.md sizes a cluster for: the Lakh MIDI data set's full set.
LAKH_FILES = 176_000
GOAL_RATIO = 0.7


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    midi_dir = args.midi if args.midi is not None else _unpacked_corpus()
    files = collection.find_midi_files([midi_dir])
    if not files:
        sys.exit(f"no MIDI files under {midi_dir}")
    sample, step = _sample(files, args.songs)
    if args.cluster_case:
        return cluster_case(args, midi_dir, files, sample, step)
    soundfonts = find_soundfonts()
    _warm_page_cache(soundfonts)

    work = Path(tempfile.mkdtemp(prefix="kdlive-bench-"))
    try:
        songs_dir = work / "midi"
        songs_dir.mkdir()
        for i, path in enumerate(sample):
            shutil.copyfile(path, songs_dir / f"{i:03d}_{path.name}")
        out = work / "out"
        print(f"{len(sample)} songs (every {step}th of {len(files)}) -> {work}", file=sys.stderr)

        cpu0 = _cpu_seconds()
        pipeline = _run_pipeline(DataConfig(out=out, midi=[songs_dir], workers=args.workers))
        cpu1 = _cpu_seconds()
        children_after_pipeline = _maxrss_mib(resource.RUSAGE_CHILDREN)
        self_after_pipeline = _maxrss_mib(resource.RUSAGE_SELF)

        stems = _rendered_stems(out / "slakh", soundfonts)
        audio_sec = sum(s["seconds"] for s in stems)
        print(f"FluidSynth alone: {len(stems)} stems, {audio_sec / 60:.1f} min", file=sys.stderr)
        reference = _run_fluidsynth(stems, work / "raw", args.workers)
        cpu2 = _cpu_seconds()
        pipeline["cpu"] = _cpu_use(cpu0, cpu1)
        reference["cpu"] = _cpu_use(cpu1, cpu2)

        result = _report(
            args,
            midi_dir,
            files,
            sample,
            step,
            out,
            pipeline,
            reference,
            stems,
            children_after_pipeline,
            self_after_pipeline,
        )
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    _print_summary(result, args.json)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--midi",
        type=Path,
        default=None,
        help=f"folder of MIDI files (default: {CORPUS.name}, unpacked to {UNPACKED})",
    )
    p.add_argument("--songs", type=int, default=30, help="songs to sample (every k-th file)")
    p.add_argument("--workers", type=int, default=2, help="processes, pipeline and reference")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the result")
    p.add_argument("--keep", action="store_true", help="keep the work folder (printed)")
    p.add_argument(
        "--cluster-case",
        action="store_true",
        help="time the notes store on the pool and on a local Dask cluster instead "
        f"(default JSON: {CLUSTER_JSON.name})",
    )
    args = p.parse_args(argv)
    if args.cluster_case and args.json == DEFAULT_JSON:
        args.json = CLUSTER_JSON
    if args.songs < 1 or args.workers < 1:
        p.error("--songs and --workers must be at least 1")
    return args


def _unpacked_corpus() -> Path:
    """The default corpus, unpacked once (into a temporary sibling, then renamed)."""
    folder = UNPACKED / CORPUS_SUBDIR
    if folder.is_dir():
        return folder
    if not CORPUS.is_file():
        sys.exit(f"corpus not found: {CORPUS} (pass --midi DIR)")
    UNPACKED.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="unpack-", dir=UNPACKED.parent))
    print(f"unpacking {CORPUS} -> {UNPACKED}", file=sys.stderr)
    # tar is a child process: its peak RSS (~10 MiB) is far below a pipeline worker's.
    subprocess.run(["tar", "xJf", str(CORPUS), "-C", str(tmp)], check=True)
    shutil.rmtree(UNPACKED, ignore_errors=True)
    tmp.rename(UNPACKED)
    return folder


def _sample(files: list[Path], songs: int) -> tuple[list[Path], int]:
    """Every k-th file of the sorted list, so the sample spans the corpus; and k."""
    files = sorted(files)
    step = max(1, len(files) // songs)
    return files[::step][:songs], step


def _warm_page_cache(paths: list[Path]) -> None:
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


def _run_pipeline(config: DataConfig) -> dict:
    """Run :func:`build`, timestamping each stage's first and last progress call."""
    marks: dict[str, list[float]] = {}
    last_print = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        marks.setdefault(stage, [now, now])[1] = now
        if done in (0, total) or now - last_print[0] > 10:
            last_print[0] = now
            print(f"  {stage}: {done}/{total}", file=sys.stderr)

    t0 = time.perf_counter()
    summary = build(config, progress)
    t1 = time.perf_counter()
    render, windows = marks.get("render", [t0, t0]), marks.get("windows", [t1, t1])
    return {
        "summary": summary,
        "total_wall_s": t1 - t0,
        "render_wall_s": render[1] - render[0],
        "windows_wall_s": windows[1] - windows[0],
        "before_render_s": render[0] - t0,  # finding files, hashing, planning
        "between_stages_s": windows[0] - render[1],  # reading skip logs, scanning the layout
        "after_windows_s": t1 - windows[1],  # closing the store, the summary
    }


def _rendered_stems(root: Path, soundfonts: list[Path]) -> list[dict]:
    """Every stem the pipeline wrote: its MIDI file, soundfont path and audio duration."""
    by_name = {p.name: p for p in soundfonts}
    stems = []
    for meta_path in sorted(root.glob("*/Track*/metadata.yaml")):
        folder = meta_path.parent
        meta = yaml.safe_load(meta_path.read_text())
        for stem_id, info in sorted(meta["stems"].items()):
            audio = folder / "stems" / f"{stem_id}.flac"
            stems.append(
                {
                    "midi": folder / "MIDI" / f"{stem_id}.mid",
                    "soundfont": by_name[info["plugin_name"]],
                    "seconds": soundfile.info(str(audio)).duration,
                }
            )
    return stems


def _run_fluidsynth(stems: list[dict], folder: Path, workers: int) -> dict:
    """Render every stem with the pipeline's exact FluidSynth command, ``workers`` at a time."""
    folder.mkdir()
    order = sorted(range(len(stems)), key=lambda i: -stems[i]["seconds"])

    def one(i: int) -> int:
        out = folder / f"{i:05d}.raw"
        cmd = fluidsynth_command(stems[i]["midi"], stems[i]["soundfont"], out)
        code = subprocess.run(cmd, capture_output=True, check=False).returncode
        ok = code == 0 and out.exists()
        out.unlink(missing_ok=True)  # float32 stereo is ~10 MB a minute: keep none
        return 0 if ok else 1

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        failures = sum(pool.map(one, order))
    return {"wall_s": time.perf_counter() - t0, "failures": failures}


def _report(
    args: argparse.Namespace,
    midi_dir: Path,
    files: list[Path],
    sample: list[Path],
    step: int,
    out: Path,
    pipeline: dict,
    reference: dict,
    stems: list[dict],
    children_after_pipeline: float,
    self_after_pipeline: float,
) -> dict:
    summary = pipeline["summary"]
    audio_sec = sum(s["seconds"] for s in stems)
    windows = sum(sum(by_label.values()) for by_label in summary["windows"].values())
    frames = sum(d["frames"] for d in _jsonl(out / "windows" / "done.jsonl"))
    skipped = _jsonl(out / "skipped.jsonl")
    pipe_rate = audio_sec / pipeline["total_wall_s"]
    render_rate = audio_sec / pipeline["render_wall_s"]
    fs_rate = audio_sec / reference["wall_s"]
    return {
        "goal": {"ratio_min": GOAL_RATIO, "met": pipe_rate / fs_rate >= GOAL_RATIO},
        "pipeline": {
            "total_wall_s": round(pipeline["total_wall_s"], 2),
            "render_stage_wall_s": round(pipeline["render_wall_s"], 2),
            "windows_stage_wall_s": round(pipeline["windows_wall_s"], 2),
            "outside_stages_wall_s": {
                k: round(pipeline[k], 2)
                for k in ("before_render_s", "between_stages_s", "after_windows_s")
            },
            "stem_sec_per_wall_sec": round(pipe_rate, 2),
            "render_stage_stem_sec_per_wall_sec": round(render_rate, 2),
            "windows_per_sec": round(windows / pipeline["windows_wall_s"], 1),
            "windows_stage_stems_per_sec": round(len(stems) / pipeline["windows_wall_s"], 2),
            "windows_stage_stem_sec_per_wall_sec": round(audio_sec / pipeline["windows_wall_s"], 2),
            "renderer": _renderer(),
            "cpu": pipeline["cpu"],
        },
        "fluidsynth_alone": {
            "wall_s": round(reference["wall_s"], 2),
            "stem_sec_per_wall_sec": round(fs_rate, 2),
            "failures": reference["failures"],
            "processes": args.workers,
            "order": "longest stem first",
            "command": "train.data.render.fluidsynth_command (the fluidsynth program)",
            "cpu": reference["cpu"],
        },
        "ratio_pipeline_over_fluidsynth": round(pipe_rate / fs_rate, 3),
        "ratio_render_stage_over_fluidsynth": round(render_rate / fs_rate, 3),
        "counts": {
            "songs_sampled": len(sample),
            "songs_rendered": len({s["midi"].parent.parent for s in stems}),
            "songs_with_windows": summary["songs"],
            "stems_rendered": len(stems),
            "stems_with_windows": summary["stems"],
            "tracks_rendered_then_dropped_silent": sum(
                r["reason"] == "track renders silent" for r in skipped
            ),
            "skip_records": len(skipped),
            "windows": windows,
            "mel_frames": frames,
            "stem_audio_sec": round(audio_sec, 1),
        },
        "memory": {
            "peak_rss_self_mib": round(_maxrss_mib(resource.RUSAGE_SELF), 1),
            "peak_rss_self_mib_after_pipeline": round(self_after_pipeline, 1),
            "peak_rss_children_mib": round(_maxrss_mib(resource.RUSAGE_CHILDREN), 1),
            "peak_rss_children_mib_after_pipeline": round(children_after_pipeline, 1),
            "note": "getrusage ru_maxrss. 'children' is the largest single waited-for "
            "descendant (a pool worker, or a FluidSynth it ran), not a sum; 'after_pipeline' "
            "excludes the FluidSynth-alone phase. Linux keeps a process's peak across exec, "
            "so a program started from this process counts at least this process's peak: "
            "the final children figure is a bound, not FluidSynth's own footprint",
        },
        "corpus": {
            "midi_dir": str(midi_dir),
            "files": len(files),
            "every_kth": step,
            "sample": [p.name for p in sample],
        },
        "workers": args.workers,
        "machine": machine(),
        "fluidsynth_version": _fluidsynth_version(),
        "git_commit": _git_commit(),
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]),
        "method": "stage walls from build()'s progress callback (first to last call per stage); "
        "stem seconds from the FLACs the pipeline wrote; soundfonts page-cached first",
    }


def cluster_case(
    args: argparse.Namespace, midi_dir: Path, files: list[Path], sample: list[Path], step: int
) -> int:
    """The notes store of ``sample`` built by ``--workers`` pool processes, then by a local
    Dask cluster of as many workers; songs per second each, and whether the bytes agree."""
    from train.data.notes import build_notes
    from train.data.workers import connect

    work = Path(tempfile.mkdtemp(prefix="kdlive-bench-cluster-"))
    runs: dict[str, dict] = {}
    try:
        for name in ("pool", "cluster"):
            cluster = f"local:{args.workers}" if name == "cluster" else None
            cpu0 = _cpu_seconds()
            t0 = time.perf_counter()
            with connect(cluster) as client:
                t1 = time.perf_counter()
                summary = build_notes(sample, work / name, workers=args.workers, client=client)
                t2 = time.perf_counter()
            runs[name] = {
                "engine_start_s": round(t1 - t0, 2),
                "build_wall_s": round(t2 - t1, 2),
                "songs_per_s": round(len(sample) / (t2 - t1), 2),
                "songs_per_s_per_worker": round(len(sample) / (t2 - t1) / args.workers, 3),
                "windows": sum(sum(c.values()) for c in summary["windows"].values()),
                "cpu": _cpu_use(cpu0, _cpu_seconds()),
            }
            print(f"  {name}: {runs[name]['songs_per_s']} songs/s", file=sys.stderr)
        same = all(
            (work / "pool" / f).read_bytes() == (work / "cluster" / f).read_bytes()
            for f in ("windows.i32", "cells.u16", "values.u8", "songs.jsonl", "meta.json")
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rate = runs["cluster"]["songs_per_s_per_worker"]
    result = {
        "what": "notes store (contract 2) of the same songs: process pool vs local Dask cluster",
        "workers": args.workers,
        "pool": runs["pool"],
        "cluster": runs["cluster"] | {"spec": f"local:{args.workers}"},
        "cluster_over_pool": round(runs["cluster"]["songs_per_s"] / runs["pool"]["songs_per_s"], 3),
        "stores_byte_identical": same,
        "lakh_176k_hours_at_measured_per_worker_rate": {
            str(n): round(LAKH_FILES / (rate * n) / 3600, 2) for n in (2, 64, 256, 1024)
        },
        "corpus": {"midi_dir": str(midi_dir), "files": len(files), "every_kth": step},
        "songs": len(sample),
        "machine": machine(),
        "git_commit": _git_commit(),
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]),
        "method": "wall time of build_notes alone (the engine started before the clock); "
        "cpu.other_processes_cpu_s shows what else shared the cores",
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps({k: result[k] for k in ("pool", "cluster", "cluster_over_pool")}, indent=1))
    print(f"wrote {args.json}")
    return 0


def _renderer() -> str:
    """What :func:`train.data.render.render` uses here (libfluidsynth or the program)."""
    try:
        from train.data import fluid
    except ImportError:
        return "fluidsynth program"
    if os.environ.get("KDLIVE_FLUIDSYNTH") == "program" or fluid.library() is None:
        return "fluidsynth program"
    return "libfluidsynth in-process"


def _cpu_seconds() -> tuple[float, float]:
    """(CPU seconds of this process and its reaped descendants, busy CPU seconds of the
    whole machine from /proc/stat), to tell whether other work shared the cores."""
    ours = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        use = resource.getrusage(who)
        ours += use.ru_utime + use.ru_stime
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
        machine = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        machine = float("nan")
    return ours, machine


def _cpu_use(before: tuple[float, float], after: tuple[float, float]) -> dict:
    ours, machine = after[0] - before[0], after[1] - before[1]
    return {
        "cpu_s": round(ours, 1),
        "machine_busy_cpu_s": round(machine, 1),
        "other_processes_cpu_s": round(machine - ours, 1),
    }


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _maxrss_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def _fluidsynth_version() -> str:
    proc = subprocess.run([fluidsynth_path(), "--version"], capture_output=True, text=True)
    lines = (proc.stdout or proc.stderr).splitlines()
    return lines[0].strip() if lines else "unknown"


def _git_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def _print_summary(r: dict, path: Path) -> None:
    p, f, c = r["pipeline"], r["fluidsynth_alone"], r["counts"]
    print(
        f"\n{c['songs_rendered']}/{c['songs_sampled']} songs, {c['stems_rendered']} stems, "
        f"{c['stem_audio_sec'] / 60:.1f} min of stems, {c['windows']} windows, "
        f"{r['workers']} workers"
    )
    print(
        f"pipeline        {p['total_wall_s']:8.1f} s  "
        f"{p['stem_sec_per_wall_sec']:6.1f} x realtime  (render {p['render_stage_wall_s']:.1f} s, "
        f"windows {p['windows_stage_wall_s']:.1f} s"
        f" = {p['windows_per_sec']:.0f} windows/s)"
    )
    print(f"FluidSynth alone{f['wall_s']:8.1f} s  {f['stem_sec_per_wall_sec']:6.1f} x realtime")
    print(
        f"ratio {r['ratio_pipeline_over_fluidsynth']:.2f} (render stage alone "
        f"{r['ratio_render_stage_over_fluidsynth']:.2f}); goal >= {GOAL_RATIO}: "
        f"{'met' if r['goal']['met'] else 'NOT met'}"
    )
    m = r["memory"]
    print(
        f"peak RSS: this process {m['peak_rss_self_mib']:.0f} MiB, "
        f"largest child {m['peak_rss_children_mib']:.0f} MiB"
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
