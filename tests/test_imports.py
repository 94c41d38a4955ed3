"""Imports flow one way: live -> nothing of ours, train -> live, export -> train and live.

The graph is read from the source (every ``import``, those inside functions included; only
``if TYPE_CHECKING:`` blocks are left out, since they never run), so an import moved into a
function to dodge a cycle is still seen. The three command-line modules are entry points on top
of the graph: nothing imports them, and ``train.cli`` composes ``train`` and ``export`` for
``kdtrain all``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("live", "train", "export")
MAY_IMPORT = {"live": {"live"}, "train": {"train", "live"}, "export": {"export", "train", "live"}}
ENTRY_POINTS = {"live.cli", "train.cli", "export.cli"}
#: What only the `train` extra installs (and our other packages): never imported by live.
FORBIDDEN_IN_LIVE = (
    "torch",
    "librosa",
    "pretty_midi",
    "sklearn",
    "onnx",
    "matplotlib",
    "soundfile",
    "yaml",
    "train",
    "export",
)


def our_modules() -> dict[str, Path]:
    """Module name -> file, for every module of the three packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """Our modules that ``path`` (module ``name``) imports, anywhere in it."""
    tree = ast.parse(path.read_text())
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = our_modules()
    return {name: imports_of(path, name, set(modules)) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_sees_a_cycle_and_only_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import train.models\n"
        "def f():\n    from export.bundle import write_bundle\n    import live.model\n"
    )
    modules = {"export.bundle", "live.model", "train.models"}
    assert imports_of(module, "m", modules) == {"export.bundle", "live.model"}


def test_the_module_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 40 and "train.pipeline" in graph["train.cli"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_packages_import_one_way() -> None:
    wrong = [
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if target in ENTRY_POINTS
        or (
            module not in ENTRY_POINTS
            and target.split(".")[0] not in MAY_IMPORT[module.split(".")[0]]
        )
    ]
    assert not wrong, wrong


def _loaded_after_importing(modules: list[str], forbidden: tuple[str, ...]) -> dict:
    """Import ``modules`` one by one in a fresh interpreter; which forbidden top-level
    modules each one brought in."""
    code = (
        "import importlib, json, sys\n"
        f"out = {{}}\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
        f"    out[m] = sorted(f for f in {forbidden!r} if f in sys.modules)\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_every_live_module_is_torch_free() -> None:
    """The base install (the live runtime) needs none of the training extra."""
    modules = sorted(m for m in our_modules() if m.split(".")[0] == "live")
    loaded = _loaded_after_importing(modules, FORBIDDEN_IN_LIVE)
    assert len(loaded) >= 16 and not any(loaded.values()), loaded


def _run(code: str) -> list:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_kdlive_help_does_not_import_torch() -> None:
    code = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "from live.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        f"print(json.dumps(sorted(m for m in {FORBIDDEN_IN_LIVE!r} if m in sys.modules)))\n"
    )
    assert _run(code) == []


def test_kdtrain_help_is_light() -> None:
    """``kdtrain --help`` imports neither torch nor librosa."""
    code = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "from train.cli import app\n"
        "for args in (['--help'], ['all', '--help'], ['data', '--help']):\n"
        "    r = CliRunner().invoke(app, args)\n"
        "    assert r.exit_code == 0, r.output\n"
        "print(json.dumps(sorted(m for m in ('torch', 'librosa') if m in sys.modules)))\n"
    )
    assert _run(code) == []


def test_live_model_runs_without_torch() -> None:
    """Loading a bundle and predicting needs onnxruntime and numpy, never torch or onnx."""
    code = (
        "import sys, json, numpy as np\n"
        "from live.model import Model\n"
        "from live.bundle import default_bundle_dir\n"
        "m = Model(default_bundle_dir())\n"
        "x = np.zeros((2, *m.input_shape), np.float32)\n"
        "m.predict(x)\n"
        "m.step(x, np.zeros((2, m.state_size), np.float32)) if m.state_size else None\n"
        f"print(json.dumps(sorted(m for m in {FORBIDDEN_IN_LIVE!r} if m in sys.modules)))\n"
    )
    assert _run(code) == []


@pytest.mark.parametrize(
    ("cli", "args"),
    [("train.cli", ["all", "--run", "RUN"]), ("export.cli", ["bench", "BUNDLE"])],
)
def test_a_missing_extra_is_one_line_naming_it(cli: str, args: list[str], tmp_path: Path) -> None:
    """Without the `train` extra (torch blocked here), kdtrain and kdexport say what to
    install instead of a traceback."""
    args = [str(tmp_path) if a in ("RUN", "BUNDLE") else a for a in args]
    code = (
        "import sys, json\n"
        "sys.modules['torch'] = None  # as if the train extra were not installed\n"
        "from typer.testing import CliRunner\n"
        f"from {cli} import app\n"
        f"r = CliRunner().invoke(app, {args!r})\n"
        "print(json.dumps([r.exit_code, r.output]))\n"
    )
    code_, output = _run(code)
    assert code_ == 1 and "pip install 'kdlive[train]'" in output, output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1
