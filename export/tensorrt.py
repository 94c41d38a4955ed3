"""`kdexport tensorrt`: build a TensorRT engine from a bundle's ONNX on the machine that runs it.

Engines are tied to the GPU model, the TensorRT version and the OS they were built on, so this
runs where the daemon will run. The engine has one optimisation profile for batch 1 ..
``max_batch`` (optimised for batch 1, the daemon's usual case), reuses a timing cache kept in
the bundle (rebuilds take seconds), and is kept only if its logits match ONNX Runtime's on the
gauntlet's windows (tolerance 1e-3 in fp32, 5e-2 in fp16, argmax agreement >= 99 % in fp16).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from export.errors import ExportError
from export.onnx import random_rolls
from live.bundle import read_bundle
from live.trt import TrtRunner, current_gpu, engine_stem, tensorrt_module
from train.files import atomic_write

TIMING_CACHE = "timing.cache"


def build_engine(
    bundle_dir: Path,
    *,
    fp16: bool = False,
    max_batch: int = 16,
    workspace_mib: int = 256,
    say: Callable[[str], None] = print,
) -> Path:
    """Build, verify and save the engine; returns its path inside ``BUNDLE/engines/``."""
    if max_batch < 1:
        raise ExportError("--max-batch must be at least 1")
    bundle = read_bundle(bundle_dir)
    trt = tensorrt_module()
    gpu = current_gpu()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(bundle.onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {bundle.onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if fp16:
        if not builder.platform_has_fast_fp16:
            say(f"note: {gpu.name} has no fast fp16; building anyway")
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    shape = bundle.input_shape
    profile.set_shape(bundle.input_name, (1, *shape), (1, *shape), (max_batch, *shape))
    config.add_optimization_profile(profile)
    bundle.engine_dir.mkdir(exist_ok=True)
    cache_path = bundle.engine_dir / TIMING_CACHE
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=True)
    say(
        f"building for {gpu.name} (sm{gpu.major}{gpu.minor}), TensorRT {trt.__version__}, "
        f"{'fp16' if fp16 else 'fp32'}, batch 1..{max_batch}"
    )
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT failed to build the engine (see its log above)")
    stem = engine_stem(gpu, trt.__version__, fp16)
    path = bundle.engine_dir / f"{stem}.engine"
    meta = {
        "gpu": gpu.name,
        "compute_capability": f"{gpu.major}.{gpu.minor}",
        "tensorrt": trt.__version__,
        "precision": "fp16" if fp16 else "fp32",
        "max_batch": max_batch,
        "onnx_sha256": bundle.manifest["onnx"]["sha256"],
    }
    meta_path = path.with_suffix(".json")
    # Verify from the files, as the daemon will load them; a failed engine is removed.
    atomic_write(path, bytes(serialized))
    atomic_write(meta_path, json.dumps(meta, indent=1))
    try:
        meta["verification"] = verify_engine(bundle_dir, path, fp16=fp16)
    except BaseException:
        path.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        raise
    atomic_write(meta_path, json.dumps(meta, indent=1))
    atomic_write(cache_path, bytes(config.get_timing_cache().serialize()))
    return path


def verify_engine(bundle_dir: Path, engine_path: Path, *, fp16: bool) -> dict:
    """Compare the engine's logits with ONNX Runtime's on random rolls; raise if they differ."""
    from live.model import OrtRunner

    bundle = read_bundle(bundle_dir)
    x = random_rolls(1000, seed=1)
    want = OrtRunner(bundle, "cpu").logits(x)
    runner = TrtRunner(engine_path, bundle)
    got = np.concatenate([runner.logits(x[s : s + 16]) for s in range(0, len(x), 16)])
    got1 = np.concatenate([runner.logits(x[s : s + 1]) for s in range(64)])
    diff = float(max(np.abs(got - want).max(), np.abs(got1 - want[:64]).max()))
    agree = float((got.argmax(1) == want.argmax(1)).mean())
    tol, min_agree = (5e-2, 0.99) if fp16 else (1e-3, 1.0)
    result = {
        "windows": len(x),
        "max_abs_logit_diff": diff,
        "argmax_agreement": agree,
        "tolerance": tol,
    }
    if diff > tol or agree < min_agree:
        raise ExportError(
            f"engine disagrees with ONNX Runtime: max |Δ logit| {diff:.2e} "
            f"(limit {tol:.0e}), argmax agreement {agree:.2%}"
        )
    return result
