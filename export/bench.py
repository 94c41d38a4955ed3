"""`kdexport bench`: inference latency of a bundle per backend, beside the paper's student.

For every backend that runs here (TensorRT engine, ONNX Runtime CUDA, ONNX Runtime CPU with
``threads`` threads), at batch 1 and batch 16, after warm-up: p50, p99, max and mean of
``Model.predict`` (what the daemon calls: input checks, inference, softmax), timed one call at
a time with ``perf_counter_ns``. The same is measured in the same run for a ``paper``-preset
student (Table 1; random weights, which do not change its speed) so the ratio is like for like.
Where PyTorch sees a CUDA GPU, the student's PyTorch latency timed with CUDA events is added as
the reference a TensorRT engine should beat.

A streaming student (:mod:`live.stream`) is timed as the daemon meets it: the windows heard
before but for each one's last step, new at every call (it computed the rest ahead); beside
that, with a bar's 8 steps new (``batch16_new_bar``) and with every step new
(``batch16_cold``).

Goals: the export issue's, the default student on ONNX Runtime CPU, 1 thread, batch 1, has
p99 <= 0.2 ms and is >= 5x faster than the paper student; issue 16's, one bar line of 16 busy
channels (batch 16: every window's answer and state update) has p99 <= 1 ms on that thread.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.onnx import export_onnx, random_inputs
from live.bundle import MANIFEST_NAME, ONNX_NAME, make_manifest, read_bundle
from live.contracts import V1, V2
from live.errors import BackendError
from live.latency import machine, summary
from live.model import Model
from live.stream import StreamRunner
from train.files import atomic_write
from train.models import build_student, count_macs, count_params, model_from_description

GOAL_P99_MS = 0.2
GOAL_RATIO = 5.0
GOAL_BAR_LINE_P99_MS = 1.0
BATCHES = (1, 16)


def time_calls(
    fn: Callable[[np.ndarray], object], x: np.ndarray, *, iters: int, warmup: int
) -> dict:
    """Latency statistics (ms) of ``fn(x)`` over ``iters`` timed calls after ``warmup``."""
    for _ in range(warmup):
        fn(x)
    t = np.empty(iters, np.int64)
    clock = time.perf_counter_ns
    for i in range(iters):
        t0 = clock()
        fn(x)
        t[i] = clock() - t0
    return {**summary(t / 1e6, mean=True), "iters": iters}


def bench_bundle(
    bundle_dir: Path,
    *,
    threads: int = 1,
    iters: tuple[int, int] = (3000, 750),
    backends: tuple[str, ...] = ("tensorrt", "cuda", "cpu"),
) -> dict:
    """Per backend, per batch size (``iters`` timed calls at batch 1 and at batch 16):
    latency statistics; a backend that cannot run here says why. A student with a state is
    timed on what a bar line costs the daemon: every window's answer and state update
    (``Model.step``; batch 16 is 16 busy channels)."""
    out: dict = {}
    for backend in backends:
        try:
            model = Model(bundle_dir, backend=backend, threads=threads)
        except BackendError as exc:
            out[backend] = {"available": False, "reason": str(exc)}
            continue
        x_all = random_inputs(max(BATCHES), model.contract, seed=3)
        state = np.zeros((max(BATCHES), model.state_size), np.float32)

        def call(x: np.ndarray, model: Model = model, state: np.ndarray = state) -> object:
            return model.step(x, state[: len(x)]) if model.state_size else model.predict(x)

        entry: dict = {"available": True, "runner": model.backend}
        entry["contract"] = model.contract.version
        streaming = isinstance(model.runner, StreamRunner)
        for b, n in zip(BATCHES, iters, strict=True):
            if streaming:  # as the daemon meets it: each window's last step new
                entry[f"batch{b}"] = time_streamed(call, x_all[:b], 1, iters=n)
            else:
                entry[f"batch{b}"] = time_calls(call, x_all[:b], iters=n, warmup=min(300, n))
        if streaming:
            for name, new in (("batch16_new_bar", 8), ("batch16_cold", 16)):
                entry[name] = time_streamed(call, x_all, new, iters=iters[1])
        out[backend] = entry
    return out


def time_streamed(
    call: Callable[[np.ndarray], object], x: np.ndarray, new: int, *, iters: int
) -> dict:
    """A streaming student's bar line: the windows ``x`` heard before, moved on by ``new``
    steps, new at every call (fresh random steps, never cached). ``new`` = 1 is
    the bar line after the daemon computed ahead (``live.ahead``); 8, one where it could not
    (a window hops by a bar, so its first bar is the last window's second); 16, nothing known
    (what an unstreamed student always costs)."""
    rng = np.random.default_rng(7)
    warmup = min(300, iters)
    call(x)
    t = np.empty(iters, np.int64)
    clock = time.perf_counter_ns
    for i in range(warmup + iters):
        # The windows move on by ``new`` steps: the rest was heard at the last call.
        x = np.concatenate([x[..., new:], fresh_steps(rng, len(x), new)], axis=3)
        t0 = clock()
        call(x)
        if i >= warmup:
            t[i - warmup] = clock() - t0
    return {**summary(t / 1e6, mean=True), "iters": iters, "new_steps": new}


def fresh_steps(rng: np.random.Generator, n: int, new: int) -> np.ndarray:
    """``new`` random contract-2 steps for ``n`` windows, ``[n, 5, 128, new]``: notes sounding
    on 3 % of the keys (never none), onsets with velocities on half of them, a sparse ensemble
    and drums; 640 random cells, so none repeats an earlier one."""
    x = np.zeros((n, *V2.input_shape[:2], new), np.float32)
    x[:, 0] = rng.random((n, V2.input_shape[1], new)) < 0.03
    x[:, 0, 60] = 1.0
    x[:, 1] = x[:, 0] * (rng.random(x[:, 0].shape) < 0.5)
    x[:, 2] = x[:, 1] * rng.integers(1, 128, x[:, 1].shape)
    x[:, 3:] = rng.random((n, 2, V2.input_shape[1], new)) < 0.03
    return x


def paper_student_bundle(folder: Path) -> Path:
    """A bundle holding an untrained ``paper``-preset student (for timing only)."""
    torch.manual_seed(0)
    model = build_student("paper").eval()
    folder.mkdir(parents=True, exist_ok=True)
    export_onnx(model, folder / ONNX_NAME)
    manifest = make_manifest(
        folder / ONNX_NAME,
        preset="paper",
        model={
            "parameters": count_params(model),
            "macs": count_macs(model, (1, *V1.input_shape)),
            "note": "untrained: for latency only",
        },
        data={},
        metrics={},
        source="train.models.build_student('paper')",
    )
    atomic_write(folder / MANIFEST_NAME, json.dumps(manifest))
    return folder


def torch_cuda_reference(bundle_dir: Path, iters: int = 2000) -> dict | None:
    """The student's latency in PyTorch on the GPU, timed with CUDA events (None without one)."""
    if not torch.cuda.is_available():
        return None
    bundle = read_bundle(bundle_dir)
    desc = bundle.manifest.get("model", {}).get("description")
    if desc is None:
        return None
    model = model_from_description(desc).eval().cuda()  # weights do not change the speed
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(0)}
    for b in BATCHES:
        x = torch.from_numpy(random_inputs(b, bundle.contract, seed=3)).cuda()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times = []
        with torch.inference_mode():
            for i in range(iters + 200):
                start.record()
                model(x)
                end.record()
                end.synchronize()
                if i >= 200:
                    times.append(start.elapsed_time(end))
        out[f"batch{b}"] = {**summary(times), "iters": iters}
    return out


def run_bench(
    bundle_dir: Path,
    *,
    threads: int = 1,
    iters: int = 3000,
    paper: bool = True,
    say: Callable[[str], None] = print,
) -> dict:
    """The whole benchmark as one JSON-able dict (see the module docstring)."""
    bundle = read_bundle(bundle_dir)
    result: dict = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "bundle": str(bundle.dir),
        "model": {k: bundle.manifest.get("model", {}).get(k) for k in ("parameters", "macs")},
        "threads": threads,
        "method": "Model.predict per call (input checks + inference + softmax), perf_counter_ns, "
        "after 300 warm-up calls; random binary rolls",
    }
    Model(bundle.dir, backend="cpu", warmup=False)  # a bundle ONNX Runtime cannot load fails now
    say(f"timing {bundle.dir}")
    result["student"] = bench_bundle(
        bundle.dir, threads=threads, iters=(iters, max(50, iters // 4))
    )
    if paper:
        with tempfile.TemporaryDirectory() as tmp:
            say("timing the paper-preset student")
            folder = paper_student_bundle(Path(tmp) / "paper")
            result["paper_student"] = bench_bundle(
                folder,
                threads=threads,
                iters=(max(50, iters // 5), max(20, iters // 30)),
                backends=("cuda", "cpu"),
            )
            result["paper_student"]["model"] = json.loads(
                (folder / "kdlive-model.json").read_text()
            )["model"]
    ref = torch_cuda_reference(bundle.dir)
    if ref is not None:
        result["torch_cuda_reference"] = ref
    cpu = result["student"].get("cpu", {})
    if cpu.get("available") and paper and result["paper_student"]["cpu"].get("available"):
        mine, theirs = cpu["batch1"], result["paper_student"]["cpu"]["batch1"]
        result["goal"] = {
            "p99_ms_batch1_cpu": mine["p99_ms"],
            "p99_limit_ms": GOAL_P99_MS,
            "speedup_p50": theirs["p50_ms"] / mine["p50_ms"],
            "speedup_p99": theirs["p99_ms"] / mine["p99_ms"],
            "speedup_min": GOAL_RATIO,
        }
        g = result["goal"]
        g["met"] = bool(g["p99_ms_batch1_cpu"] <= GOAL_P99_MS and g["speedup_p50"] >= GOAL_RATIO)
        g["p99_ms_bar_line_cpu"] = cpu["batch16"]["p99_ms"]
        g["bar_line_limit_ms"] = GOAL_BAR_LINE_P99_MS
        g["bar_line_met"] = bool(cpu["batch16"]["p99_ms"] <= GOAL_BAR_LINE_P99_MS)
    return result
