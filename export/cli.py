"""`kdexport`: model bundles, TensorRT engines and latency benchmarks.

Every command fails on bad input with one line saying what is wrong and what to do (exit
status 1, no traceback).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from live.console import clean_errors

app = typer.Typer(
    help="Export a trained kdlive student.", no_args_is_help=True, add_completion=False
)


@app.callback()
def main() -> None:
    """Export a trained kdlive student: bundle, TensorRT engine, latency benchmark."""


def _say(msg: str) -> None:
    typer.echo(msg, err=True)


@app.command()
def bundle(
    source: Annotated[Path, typer.Argument(help="Run folder (its kdic.pt) or student checkpoint.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle folder to write (replaced).")],
    student: Annotated[
        str, typer.Option(help="Which student of a run folder: kdic or nic.")
    ] = "kdic",
) -> None:
    """Export a student to ONNX, run the parity gauntlet and the TensorRT pre-flight, and write
    the bundle (the pre-flight's problems are printed, one line each)."""
    if student not in ("kdic", "nic"):
        raise typer.BadParameter("--student must be kdic or nic")
    with clean_errors():
        from export.bundle import write_bundle

        b, report = write_bundle(source, out, which=student, say=_say)
    pre = b.manifest["export"]["tensorrt_preflight"]
    problems = len(pre["blockers"])
    verdict = f"TensorRT {pre['tensorrt']} " + (
        f"would not build it: {problems} problem(s) above" if problems else "pre-flight passed"
    )
    typer.echo(
        f"bundle: {b.dir}  ({report['windows']} windows, max |Δ logit| "
        f"{report['max_abs_logit_diff']:.1e}, argmax identical; {verdict})"
    )


@app.command()
def check(bundle_dir: Annotated[Path, typer.Argument(metavar="BUNDLE")]) -> None:
    """Check a bundle (manifest, hash, classes) and load it on every backend available."""
    with clean_errors():
        from live.bundle import read_bundle
        from live.errors import BackendError
        from live.model import Model

        b = read_bundle(bundle_dir)
        f1 = b.manifest.get("test_metrics", {}).get("macro_f1")
        typer.echo(
            f"{b.dir}: format {b.manifest['format_version']}, preset "
            f"{b.manifest.get('preset')}, test macro-F1 "
            f"{'n/a' if f1 is None else f'{f1:.3f}'}"
            + (", streams step by step" if b.stream_paths else "")
        )
        for backend in ("tensorrt", "cuda", "cpu"):
            try:
                typer.echo(f"  {backend}: ok ({Model(b.dir, backend=backend).backend})")
            except BackendError as exc:
                typer.echo(f"  {backend}: unavailable ({exc})")


@app.command()
def tensorrt(
    bundle_dir: Annotated[Path, typer.Argument(metavar="BUNDLE")],
    fp16: Annotated[bool, typer.Option("--fp16", help="Allow fp16 kernels.")] = False,
    max_batch: Annotated[
        int, typer.Option("--max-batch", help="Largest batch of the profile.")
    ] = 16,
) -> None:
    """Build a TensorRT engine for this GPU into BUNDLE/engines/ (verified before it is kept).

    Needs an NVIDIA GPU and `pip install 'kdlive[tensorrt]'`; contract-1 and contract-2
    bundles, one profile of batch 1..--max-batch on every input."""
    with clean_errors():
        from export.tensorrt import build_engine

        path = build_engine(bundle_dir, fp16=fp16, max_batch=max_batch, say=_say)
    typer.echo(f"engine: {path}")


@app.command()
def bench(
    bundle_dir: Annotated[Path, typer.Argument(metavar="BUNDLE")],
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="Write the results here as JSON."),
    ] = None,
    threads: Annotated[int, typer.Option(help="ONNX Runtime CPU threads.")] = 1,
    iters: Annotated[
        int, typer.Option(help="Timed calls at batch 1 (batch 16: a quarter).")
    ] = 3000,
    paper: Annotated[
        bool, typer.Option(help="Also time a paper-preset student, for the ratio.")
    ] = True,
) -> None:
    """Latency per backend at batch 1 and 16 (p50, p99, max), beside the paper's student."""
    with clean_errors():
        from export.bench import run_bench

        result = run_bench(bundle_dir, threads=threads, iters=iters, paper=paper, say=_say)
    _print_bench(result, typer.echo)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=1))
        typer.echo(f"results: {json_path}")


def _print_bench(result: dict, echo: Callable[[str], None]) -> None:
    echo(f"{'model':<14} {'backend':<10} {'batch':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for label in ("student", "paper_student"):
        for backend, entry in result.get(label, {}).items():
            if not isinstance(entry, dict) or "available" not in entry:
                continue
            if not entry["available"]:
                echo(f"{label:<14} {backend:<10} unavailable: {entry['reason']}")
                continue
            rows = [(key[5:], entry[key]) for key in ("batch1", "batch16")]
            rows += [  # a streaming student: a bar line with 8 or 16 new steps per window
                (f"16/{entry[key]['new_steps']}", entry[key])
                for key in ("batch16_new_bar", "batch16_cold")
                if key in entry
            ]
            for batch, s in rows:
                echo(
                    f"{label:<14} {backend:<10} {batch:>5} {s['p50_ms']:8.3f} "
                    f"{s['p99_ms']:8.3f} {s['max_ms']:8.3f}"
                )
    if "goal" in result:
        g = result["goal"]
        echo(
            f"goal: p99 {g['p99_ms_batch1_cpu']:.3f} ms (<= {g['p99_limit_ms']}), "
            f"{g['speedup_p50']:.1f}x faster than the paper student (>= {g['speedup_min']}): "
            f"{'met' if g['met'] else 'NOT met'}"
        )
        echo(
            f"goal: a bar line of 16 channels, p99 {g['p99_ms_bar_line_cpu']:.3f} ms "
            f"(<= {g['bar_line_limit_ms']}): {'met' if g['bar_line_met'] else 'NOT met'}"
        )
