"""The model bundle: what ``kdexport bundle`` writes and what the daemon loads.

A bundle is a folder::

    BUNDLE/
      student.onnx          the student, dynamic batch axis (below)
      steps.onnx, head.onnx the same student split step by step, if its encoder streams
                            (:mod:`live.stream`; the manifest's ``"stream"``)
      kdlive-model.json     the manifest (below)
      engines/              TensorRT engines built on the machine that runs them (optional)

The student's graph is its input contract's (``contract_version``, :mod:`live.contracts`):
``roll -> logits`` for contract 1, ``inputs [+ state] -> logits [+ part_logits, state_out]``
for contract 2; the manifest's ``"state"`` gives the state's size S (0: no history).

The manifest says what the ONNX file is and what it was made from: format version, class names
in contract order, window spec, input and output names and shapes, preset, training data
summary and test metrics, and the sha256 of ``student.onnx``. :func:`read_bundle` checks all of
that before anything runs, so a bundle that does not fit this version of kdlive fails with one
line that says what is wrong and what to do. Torch-free: reading is json and hashlib only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from live.contract import WINDOW
from live.contracts import CONTRACTS, OUTPUT_NAME, V1, Contract, contract
from live.errors import BundleError, ContractError
from live.taxonomy import CLASSES

#: Bumped when the manifest's meaning changes; readers refuse other versions.
FORMAT_VERSION = 1
MANIFEST_NAME = "kdlive-model.json"
ONNX_NAME = "student.onnx"
ENGINE_DIR = "engines"
#: A streaming student's two graphs (the manifest's ``"stream"``; :mod:`live.stream`).
STREAM_STEPS = "steps.onnx"
STREAM_HEAD = "head.onnx"
#: The steps graph's input (one step of the contract's input) and output (its embedding),
#: which is also the head graph's first input.
STEPS_INPUT = "inputs"
STEPS_OUTPUT = "steps"

_REEXPORT = "re-export it with `kdexport bundle RUN --out DIR`"


@dataclass(frozen=True)
class Bundle:
    """A checked bundle: its folder and its manifest."""

    dir: Path
    manifest: dict[str, Any]

    @property
    def onnx_path(self) -> Path:
        return self.dir / ONNX_NAME

    @property
    def engine_dir(self) -> Path:
        return self.dir / ENGINE_DIR

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.manifest["classes"])

    @property
    def input_name(self) -> str:
        return str(self.manifest["input"]["name"])

    @property
    def output_name(self) -> str:
        return str(self.manifest["output"]["name"])

    @property
    def contract(self) -> Contract:
        """The student's input contract (:mod:`live.contracts`)."""
        return contract(self.manifest["contract_version"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Per-example input shape: ``(channels, 128, 16)``, the contract's."""
        return self.contract.input_shape

    @property
    def state_size(self) -> int:
        """The size of the student's state (contract 2 with a history), else 0."""
        return int((self.manifest.get("state") or {}).get("size", 0))

    @property
    def history_share(self) -> float:
        """The running answer's share of the student's history (contract 2 with a state): the
        rest is the mean of the part's window answers so far. The manifest's
        ``state.history_share``; 1 (the history alone) where it has none."""
        return float((self.manifest.get("state") or {}).get("history_share", 1.0))

    @property
    def stream_paths(self) -> tuple[Path, Path] | None:
        """The streaming graphs (steps, head) of a student that streams, else None."""
        stream = self.manifest.get("stream")
        if not stream:
            return None
        return self.dir / stream["steps"]["file"], self.dir / stream["head"]["file"]


def default_bundle_dir() -> Path:
    """The bundle shipped inside the package (a student trained on the Lakh-like corpus)."""
    return Path(__file__).resolve().parent / "assets" / "bundle"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_manifest(
    onnx_path: Path,
    *,
    preset: str,
    model: dict[str, Any],
    data: dict[str, Any],
    metrics: dict[str, Any],
    source: str,
    contract: Contract = V1,
    state: int = 0,
) -> dict[str, Any]:
    """The manifest of a bundle whose ONNX file is ``onnx_path`` (already written), for a
    student of input contract ``contract`` with a state of size ``state`` (contract 2)."""
    logits = {
        "shape": ["batch", len(CLASSES)],
        "dtype": "float32",
        "values": "logits, classes in contract order; softmax gives probabilities",
    }
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "contract_version": contract.version,
        "classes": list(CLASSES),
        "window": asdict(WINDOW),
        "input": contract.manifest_input(),
        "output": {"name": OUTPUT_NAME, **logits},
    }
    if state:  # a contract without a state refuses one
        (_, state_in), (_, part, state_out) = contract.inputs(state), contract.outputs(state)
        manifest["state"] = {
            "name": state_in,
            "output": state_out,
            "size": state,
            "values": "the part's history: zeros for its first window",
        }
        manifest["part_output"] = {"name": part, **logits}
    return manifest | {
        "preset": preset,
        "model": model,
        "training_data": data,
        "test_metrics": metrics,
        "source": source,
        "onnx": {
            "file": ONNX_NAME,
            "sha256": sha256_file(onnx_path),
            "bytes": onnx_path.stat().st_size,
        },
    }


def read_bundle(path: Path | str | None = None, *, verify_hash: bool = True) -> Bundle:
    """Open and check a bundle (the shipped one when ``path`` is None).

    Raises :class:`BundleError` with a one-line message for a missing folder or manifest, a
    manifest that is not JSON, an unknown format or contract version, a class list or window
    that differs from this kdlive's contract, and an ONNX file that is missing or whose sha256
    differs from the manifest's (changed or truncated).
    """
    folder = Path(path) if path is not None else default_bundle_dir()
    if path is None and not (folder / MANIFEST_NAME).exists():
        raise BundleError(
            "this installation has no shipped model bundle: train one with `kdtrain all` and "
            "pass --model RUN/bundle"
        )
    if not folder.exists():
        raise BundleError(
            f"no model bundle at {folder}: pass --model with a folder written by "
            "`kdexport bundle` (or `kdtrain all`, which writes RUN/bundle)"
        )
    if folder.is_file():
        folder = folder.parent if folder.name in (MANIFEST_NAME, ONNX_NAME) else folder
        if not folder.is_dir():
            raise BundleError(f"{path} is a file: --model takes the bundle folder")
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.exists():
        raise BundleError(
            f"{folder} has no {MANIFEST_NAME}: it is not a kdlive bundle; {_REEXPORT}"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path} is not valid JSON ({exc}): {_REEXPORT}") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{manifest_path} is not a kdlive manifest: {_REEXPORT}")
    _check_manifest(folder, manifest)
    onnx_path = folder / ONNX_NAME
    if not onnx_path.exists():
        raise BundleError(f"{folder} has no {ONNX_NAME}: {_REEXPORT}")
    files = [(onnx_path, manifest["onnx"].get("sha256"))]
    for part in ("steps", "head") if manifest.get("stream") else ():
        entry = manifest["stream"].get(part) or {}
        path = folder / str(entry.get("file", f"{part}.onnx"))
        if not path.exists():
            raise BundleError(f"{folder} has no {path.name} (its streaming {part}): {_REEXPORT}")
        files.append((path, entry.get("sha256")))
    for path, want in files if verify_hash else ():
        got = sha256_file(path)
        if want != got:
            raise BundleError(
                f"{path} does not match its manifest (sha256 {got[:12]}…, expected "
                f"{str(want)[:12]}…): the file was changed or truncated; {_REEXPORT}"
            )
    return Bundle(folder, manifest)


def _check_manifest(folder: Path, m: dict[str, Any]) -> None:
    version = m.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        hint = "upgrade kdlive (`pip install -U kdlive`)" if newer else _REEXPORT
        raise BundleError(
            f"{folder}: bundle format version {version!r}, this kdlive reads "
            f"version {FORMAT_VERSION}: {hint}"
        )
    try:
        found = contract(m.get("contract_version"))
    except ContractError:
        raise BundleError(
            f"{folder}: made for input contract {m.get('contract_version')!r}, this kdlive "
            f"reads {' and '.join(map(str, CONTRACTS))}: retrain or upgrade"
        ) from None
    if list(m.get("classes") or []) != list(CLASSES):
        raise BundleError(
            f"{folder}: its classes {m.get('classes')} differ from the contract's "
            f"{list(CLASSES)}: retrain with this kdlive"
        )
    if m.get("window") != asdict(WINDOW):
        raise BundleError(
            f"{folder}: its window {m.get('window')} differs from the contract's "
            f"{asdict(WINDOW)}: retrain with this kdlive"
        )
    shape = list((m.get("input") or {}).get("shape") or [])[1:]
    if shape != list(found.input_shape):
        raise BundleError(f"{folder}: its input shape {shape} is not its contract's: {_REEXPORT}")
    share = (m.get("state") or {}).get("history_share", 1.0)
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        raise BundleError(
            f"{folder}: its state's history_share {share!r} is not a number from 0 to 1: "
            "set it so (or remove it: the history alone) or re-export"
        )
    for key, field in (("input", "name"), ("output", "name"), ("onnx", "sha256")):
        if not isinstance(m.get(key), dict) or field not in m[key]:
            raise BundleError(f"{folder}: manifest lacks {key!r}: {_REEXPORT}")
