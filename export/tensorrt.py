"""`kdexport tensorrt`: build a TensorRT engine from a bundle's ONNX on the machine that runs it.

Engines are tied to the GPU model, the TensorRT version and the OS they were built on, so this
runs where the daemon will run. Bundles of both input contracts build: contract 1
(``roll -> logits``) and contract 2 (``inputs`` and ``state`` in; ``logits``, ``part_logits``
and ``state_out`` out). The engine has one optimisation profile on **every** input, batch 1 ..
``max_batch`` and optimised for ``max_batch`` (16: a bar line of 16 channels), its shapes taken
from the bundle (:func:`profile_shapes`). The build first runs the CPU pre-flight
(:mod:`export.preflight`) and stops on what it says would fail; it reuses a timing cache kept
in the bundle, and the engine is kept only if all its outputs match ONNX Runtime's on the CPU
(:func:`verify_engine`: tolerance 1e-3 in fp32, 5e-2 in fp16, argmax agreement >= 99 % in fp16).

This has never run on an NVIDIA GPU in this project (none here can install TensorRT): it is
written against TensorRT 10's documented Python API and tested with a stand-in for TensorRT
and CUDA (``tests/export/trtfake.py``); see ``docs/export.md``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx

from export.errors import ExportError
from export.onnx import random_inputs
from export.preflight import preflight
from live.bundle import Bundle, read_bundle
from live.trt import TrtRunner, bundle_io, current_gpu, engine_stem, tensorrt_module
from train.files import atomic_write

TIMING_CACHE = "timing.cache"
#: A bar line of 16 busy channels: the batch the daemon runs most and the profile's default.
BAR_LINE = 16

Shape = tuple[int, ...]


def profile_shapes(bundle: Bundle, *, max_batch: int = BAR_LINE) -> dict[str, tuple[Shape, ...]]:
    """``{input name: (min, opt, max) shape}`` of the engine's optimisation profile: every
    input of the bundle's ONNX graph, batch 1, ``max_batch`` and ``max_batch``, per-example
    shapes from the bundle (its input shape and state size). Raises :class:`ExportError`
    when the graph's inputs are not the ones the manifest names."""
    if max_batch < 1:
        raise ExportError("--max-batch must be at least 1")
    proto = onnx.load(str(bundle.onnx_path), load_external_data=False)
    initializers = {t.name for t in proto.graph.initializer}
    graph_inputs = [i.name for i in proto.graph.input if i.name not in initializers]
    shapes, _ = bundle_io(bundle)
    if sorted(graph_inputs) != sorted(shapes):
        raise ExportError(
            f"{bundle.onnx_path} takes {graph_inputs}, its manifest names {list(shapes)}: "
            "re-export the bundle with `kdexport bundle`"
        )
    return {
        name: ((1, *shapes[name]), (max_batch, *shapes[name]), (max_batch, *shapes[name]))
        for name in graph_inputs
    }


def build_engine(
    bundle_dir: Path,
    *,
    fp16: bool = False,
    max_batch: int = BAR_LINE,
    workspace_mib: int = 256,
    say: Callable[[str], None] = print,
) -> Path:
    """Build, verify and save the engine; returns its path inside ``BUNDLE/engines/``."""
    bundle = read_bundle(bundle_dir)
    profile = profile_shapes(bundle, max_batch=max_batch)
    report = preflight(bundle.onnx_path)
    if not report.passed:
        raise ExportError(
            f"{bundle.onnx_path} would not build with TensorRT {report.tensorrt}: "
            + "; ".join(report.blockers)
        )
    trt = tensorrt_module()
    gpu = current_gpu()
    if not trt.__version__.startswith(report.tensorrt + "."):
        say(
            f"note: the pre-flight's list is for TensorRT {report.tensorrt}, "
            f"this is {trt.__version__}"
        )
    # The parser must outlive the build (the network refers to its weights).
    builder, network, _parser, config = _network(trt, bundle, workspace_mib)
    if fp16:
        if not builder.platform_has_fast_fp16:
            say(f"note: {gpu.name} has no fast fp16; building anyway")
        config.set_flag(trt.BuilderFlag.FP16)
    bundle.engine_dir.mkdir(exist_ok=True)
    cache_path = bundle.engine_dir / TIMING_CACHE
    _configure(builder, config, profile, cache_path)
    say(
        f"building for {gpu.name} (sm{gpu.major}{gpu.minor}), TensorRT {trt.__version__}, "
        f"{'fp16' if fp16 else 'fp32'}, batch 1..{max_batch} on {', '.join(profile)}"
    )
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT failed to build the engine (see its log above)")
    path = bundle.engine_dir / f"{engine_stem(gpu, trt.__version__, fp16)}.engine"
    meta: dict[str, Any] = {
        "gpu": gpu.name,
        "compute_capability": f"{gpu.major}.{gpu.minor}",
        "tensorrt": trt.__version__,
        "precision": "fp16" if fp16 else "fp32",
        "max_batch": max_batch,
        "profile": {name: [list(s) for s in shapes] for name, shapes in profile.items()},
        "onnx_sha256": bundle.manifest["onnx"]["sha256"],
    }
    atomic_write(path, bytes(serialized))
    _keep_if_verified(bundle_dir, path, meta, fp16=fp16)
    atomic_write(cache_path, bytes(config.get_timing_cache().serialize()))
    return path


def _network(trt: Any, bundle: Bundle, workspace_mib: int) -> tuple[Any, Any, Any, Any]:
    """Builder, the parsed ONNX network, its parser, and a builder config with the workspace
    limit."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(bundle.onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {bundle.onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    return builder, network, parser, config


def _configure(
    builder: Any, config: Any, profile: dict[str, tuple[Shape, ...]], cache_path: Path
) -> None:
    """Add the optimisation profile (every input) and the bundle's timing cache to ``config``."""
    trt_profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.items():
        trt_profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(trt_profile)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=True)


def _keep_if_verified(bundle_dir: Path, path: Path, meta: dict[str, Any], *, fp16: bool) -> None:
    """Write the engine's metadata beside it, verify the engine from the files as the daemon
    will load them, and remove both if it disagrees with ONNX Runtime."""
    meta_path = path.with_suffix(".json")
    atomic_write(meta_path, json.dumps(meta, indent=1))
    try:
        meta["verification"] = verify_engine(bundle_dir, path, fp16=fp16)
    except BaseException:
        path.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        raise
    atomic_write(meta_path, json.dumps(meta, indent=1))


def verify_engine(bundle_dir: Path, engine_path: Path, *, fp16: bool) -> dict[str, Any]:
    """Compare every output of the engine with ONNX Runtime's on the CPU, on 1,000 random
    inputs of the bundle's contract (with random states where it has one), in batches of
    ``max_batch`` and of 1; raise :class:`ExportError` if they differ."""
    from live.model import OrtRunner

    bundle = read_bundle(bundle_dir)
    feeds = verify_feeds(bundle, 1000)
    runner, ort_runner = TrtRunner(engine_path, bundle), OrtRunner(bundle, "cpu")
    # Each batching against ONNX Runtime's in the same batches: a student whose parts attend
    # to each other answers a batch (one bar line's channels) as a whole.
    first = [f[:64] for f in feeds]
    want = _outputs(ort_runner, feeds, runner.max_batch)
    got = _outputs(runner, feeds, runner.max_batch)
    want1, got1 = _outputs(ort_runner, first, 1), _outputs(runner, first, 1)
    names = [t.name for t in runner.outputs]
    diffs = {
        name: float(max(np.abs(g - w).max(), np.abs(g1 - w1).max()))
        for name, g, g1, w, w1 in zip(names, got, got1, want, want1, strict=True)
    }
    n_class_outputs = 2 if len(names) == 3 else 1  # window and running answer; not the state
    agree = min(
        float((got[k].argmax(1) == want[k].argmax(1)).mean()) for k in range(n_class_outputs)
    )
    tol, min_agree = (5e-2, 0.99) if fp16 else (1e-3, 1.0)
    diff = max(diffs.values())
    result = {
        "windows": len(feeds[0]),
        "max_abs_diff": diffs,
        "argmax_agreement": agree,
        "tolerance": tol,
    }
    if diff > tol or agree < min_agree:
        worst = max(diffs, key=lambda k: diffs[k])
        raise ExportError(
            f"engine disagrees with ONNX Runtime: max |Δ {worst}| {diff:.2e} "
            f"(limit {tol:.0e}), argmax agreement {agree:.2%}"
        )
    return result


def verify_feeds(bundle: Bundle, n: int, seed: int = 1) -> list[npt.NDArray[np.float32]]:
    """Random inputs ``[n, *input_shape]`` of the bundle's contract and, for a student with
    a state, states ``[n, S]`` in (-1, 1) with every 7th one fresh (zeros)."""
    feeds = [random_inputs(n, bundle.contract, seed)]
    if bundle.state_size:
        h = np.random.default_rng(seed + 1).uniform(-1, 1, (n, bundle.state_size))
        h[::7] = 0
        feeds.append(h.astype(np.float32))
    return feeds


def _outputs(runner: Any, feeds: list[npt.NDArray[np.float32]], batch: int) -> list[np.ndarray]:
    """The runner's outputs over ``feeds`` in chunks of ``batch``: ``[logits]``, or
    ``[logits, part_logits, state_out]`` with a state."""
    runs = []
    for s in range(0, len(feeds[0]), batch):
        chunk = [f[s : s + batch] for f in feeds]
        runs.append(list(runner.step(*chunk)) if len(chunk) == 2 else [runner.logits(chunk[0])])
    return [np.concatenate(parts) for parts in zip(*runs, strict=True)]
