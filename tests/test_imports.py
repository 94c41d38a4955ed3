"""Imports flow one way: live -> nothing of ours, train -> live, export -> train and live, and
the application (``kdapp``, the three console scripts) -> all three; nothing imports ``kdapp``.

The rule has no exemption: the command-line modules (``live.cli``, ``train.cli``,
``export.cli``) follow their package's rule like every other module. The graph is read from the
source (every ``import``, those inside functions included; only ``if TYPE_CHECKING:`` blocks are
left out, since they never run), so an import moved into a function to dodge a cycle, or to
slip torch into a ``live`` command, is still seen.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("live", "train", "export", "kdapp")
#: Package -> the packages of ours its modules may import. Nobody may import kdapp.
MAY_IMPORT = {
    "live": {"live"},
    "train": {"train", "live"},
    "export": {"export", "train", "live"},
    "kdapp": {"live", "train", "export"},
}
#: The console scripts (pyproject.toml) and the module each one starts.
SCRIPTS = {"kdtrain": "kdapp.kdtrain", "kdexport": "kdapp.kdexport", "kdlive": "kdapp.kdlive"}
#: What only the `train` and `cluster` extras install (and our other packages): never
#: imported by live.
FORBIDDEN_IN_LIVE = (
    "torch",
    "librosa",
    "pretty_midi",
    "sklearn",
    "onnx",
    "matplotlib",
    "soundfile",
    "yaml",
    "dask",
    "distributed",
    "train",
    "export",
)


def our_modules() -> dict[str, Path]:
    """Module name -> file, for every module of our packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported_names(path: Path, name: str, modules: set[str]) -> set[str]:
    """Every module that ``path`` (module ``name``) imports, anywhere in it: ours as their
    module's name, others as written (``pythonosc.udp_client``)."""
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
    return found


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """Our modules that ``path`` (module ``name``) imports, anywhere in it."""
    return {m for m in imported_names(path, name, modules) if m in modules and m != name}


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


def against_the_rule(graph: dict[str, set[str]]) -> list[str]:
    """``module -> target`` for every import of ``graph`` that :data:`MAY_IMPORT` forbids."""
    return [
        f"{module} -> {target}"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if target.split(".")[0] not in MAY_IMPORT[module.split(".")[0]]
    ]


def forbidden_in_live() -> list[str]:
    """``module -> name`` for every import in a ``live`` module (inside functions too) of
    something that only the train extra installs, or of our other packages."""
    modules = our_modules()
    return [
        f"{name} -> {imported}"
        for name, path in modules.items()
        if name.split(".")[0] == "live"
        for imported in sorted(imported_names(path, name, set(modules)))
        if imported.split(".")[0] in FORBIDDEN_IN_LIVE
    ]


def test_the_graph_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import train.models\n"
        "def f():\n    from export.bundle import write_bundle\n    import live.model\n"
        "    import torch.nn\n"
    )
    modules = {"export.bundle", "live.model", "train.models"}
    assert imports_of(module, "m", modules) == {"export.bundle", "live.model"}
    assert "torch.nn" in imported_names(module, "m", modules)


def test_the_rule_has_no_exemption_for_command_lines() -> None:
    """A command-line module is held to its package's rule like any other."""
    graph = {
        "live.cli": {"live.model", "export.bundle"},
        "train.cli": {"train.pipeline", "export.bundle"},
        "export.cli": {"export.bundle", "kdapp.kdtrain"},
        "kdapp.kdtrain": {"train.cli", "export.bundle", "live.console"},
    }
    assert against_the_rule(graph) == [
        "export.cli -> kdapp.kdtrain",
        "live.cli -> export.bundle",
        "train.cli -> export.bundle",
    ]


def test_the_module_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 40 and "train.pipeline" in graph["train.cli"]
    assert "export.bundle" in graph["kdapp.kdtrain"]  # kdtrain all ends with a bundle
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_packages_import_one_way() -> None:
    graph = import_graph()
    assert {"live.cli", "train.cli", "export.cli", *SCRIPTS.values()} <= set(graph)
    wrong = against_the_rule(graph)
    assert not wrong, wrong


def test_live_imports_no_training_extra_anywhere() -> None:
    """Not even inside a function: ``kdlive`` runs in an install without the train extra."""
    wrong = forbidden_in_live()
    assert not wrong, wrong


def test_the_live_tests_import_only_the_live_runtime() -> None:
    """tests/live and the root conftest import nothing that the base install and the dev extra
    lack (``.ci/run`` runs them in a venv without the train extra), nor other folders' tests."""
    modules = set(our_modules())
    files = [REPO / "tests" / "conftest.py", *sorted((REPO / "tests" / "live").rglob("*.py"))]
    other = ("kdapp.kdtrain", "kdapp.kdexport", "tests.train", "tests.export", "tests.integration")
    wrong = [
        f"{path.relative_to(REPO)} -> {imported}"
        for path in files
        for imported in sorted(
            imported_names(path, ".".join(path.relative_to(REPO).with_suffix("").parts), modules)
        )
        if imported.split(".")[0] in FORBIDDEN_IN_LIVE or imported.startswith(other)
    ]
    assert len(files) > 10 and not wrong, wrong


def test_kdlive_starts_only_live() -> None:
    """Everything the ``kdlive`` script's module reaches, directly or not, is ``live``."""
    graph = import_graph()
    reached, todo = set(), [SCRIPTS["kdlive"]]
    while todo:
        for target in graph[todo.pop()] - reached:
            reached.add(target)
            todo.append(target)
    outside = sorted(m for m in reached if m.split(".")[0] != "live")
    assert "live.cli" in reached and not outside, outside


def test_the_console_scripts_are_kdapps() -> None:
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {name: f"{module}:app" for name, module in SCRIPTS.items()}


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


def test_kdlive_runs_without_the_train_extra() -> None:
    """The ``kdlive`` script answers with torch, librosa, ..., train and export all made
    unimportable, as in an install of the live runtime alone."""
    code = (
        "import sys, json\n"
        f"for m in {FORBIDDEN_IN_LIVE!r}:\n    sys.modules[m] = None\n"
        "from typer.testing import CliRunner\n"
        f"from {SCRIPTS['kdlive']} import app\n"
        "out = []\n"
        "for args in (['--help'], ['contract'], ['replay', '--help']):\n"
        "    r = CliRunner().invoke(app, args)\n"
        "    out.append([r.exit_code, r.output])\n"
        "print(json.dumps(out))\n"
    )
    results = _run(code)
    assert all(code_ == 0 for code_, _ in results), results
    assert json.loads(results[1][1])["classes"][0] == "Piano"


def test_kdtrain_help_is_light() -> None:
    """``kdtrain --help`` imports neither torch nor librosa."""
    code = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        f"from {SCRIPTS['kdtrain']} import app\n"
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
    [(SCRIPTS["kdtrain"], ["all", "--run", "RUN"]), (SCRIPTS["kdexport"], ["bench", "BUNDLE"])],
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
