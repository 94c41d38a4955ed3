"""The run report: ``report.json``, ``report.md`` and its figures, written into the run folder.

Files (each written atomically)::

    confusion_<model>.png   row-normalised confusion matrix of each model (test split)
    training_curves.png     train loss and validation macro-F1 per epoch (models with a history)
    report.json             {"models": {name: metrics}, "data", "config", "teacher_targets",
                            "paper"}
    report.md               Table 2 next to the paper's, the distillation effect, the part-level
                            answers and the students against the floor, what the teacher's soft
                            targets carry, per-class F1, data, figures, config

The figures are written first and the reports last, so a report never links a missing figure.
matplotlib is imported inside the plotting functions (Agg backend), so importing this module
stays light.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from live.taxonomy import CLASSES
from train.files import atomic_write

#: Table 2 of the paper: macro F-measure on the test set. (Its prose once gives AIC 0.72.)
PAPER_F: dict[str, float] = {"AIC": 0.76, "NIC": 0.61, "KDIC": 0.72}
#: What each model sees and learns from: (input, targets). A model entry may say its own.
MODEL_KINDS: dict[str, tuple[str, str]] = {
    "AIC": ("audio", "hard"),
    "NIC": ("notes", "hard"),
    "KDIC": ("notes", "soft (from AIC)"),
    "floor": ("hand statistics", "hard"),
    "lookup": ("exact roll", "memory: its labels in train"),
}
SPLIT_ORDER: tuple[str, ...] = ("train", "validation", "test")
DASH = "—"


def write_report(
    run_dir: Path,
    *,
    models: dict[str, dict],
    data: dict,
    config: dict,
    histories: dict[str, list[dict]] | None = None,
    teacher_targets: dict | None = None,
) -> None:
    """Write the report files of a run into ``run_dir`` (created if missing).

    Args:
        run_dir: the run folder.
        models: model name -> :func:`train.evaluate.evaluate` dict, in table order, optionally
            with ``"input"`` and ``"targets"`` (else :data:`MODEL_KINDS` says them).
        data: the data set summary (``train.data.build`` writes it).
        config: the resolved run config, JSON-able.
        histories: model name -> per-epoch records ``{"epoch", "train_loss", "val_macro_f1",
            "lr"}``; None or empty: no training curves.
        teacher_targets: :func:`train.evaluate.soft_targets` of the teacher on the training
            windows, or None.
    """
    run_dir = Path(run_dir)
    figures = {name: f"confusion_{_file_part(name)}.png" for name in models}
    for name, file in figures.items():
        atomic_write(run_dir / file, plot_confusion(name, models[name]))
    if any("parts" in m for m in models.values()):
        atomic_write(run_dir / "part_curves.png", plot_part_curves(models))
    curves = None
    if any((histories or {}).values()):
        curves = "training_curves.png"
        atomic_write(run_dir / curves, plot_training_curves(histories or {}))
    report = {"models": models, "data": data, "config": config}
    if teacher_targets is not None:
        report["teacher_targets"] = teacher_targets
    report["paper"] = dict(PAPER_F)
    atomic_write(run_dir / "report.json", json.dumps(to_jsonable(report), indent=1) + "\n")
    markdown = render_markdown(models, data, config, figures, curves, teacher_targets)
    atomic_write(run_dir / "report.md", markdown)


def _file_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_") or "model"


def to_jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars and arrays, tuples, Paths; NaN and infinity -> None."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# ---------------------------------------------------------------------------- markdown


def render_markdown(
    models: dict[str, dict],
    data: dict,
    config: dict,
    figures: dict[str, str],
    curves: str | None,
    teacher_targets: dict | None = None,
) -> str:
    """The whole ``report.md`` text."""
    preset = ((config or {}).get("model") or {}).get("preset")
    sections = [
        "# kdlive run report",
        _results_section(models, preset),
        _split_section(data.get("split")),
        _distillation_section(models),
        _parts_section(models),
        _floor_section(models),
        _targets_section(teacher_targets),
        _per_class_section(models, data),
        _data_section(data),
        _figures_section(figures, curves),
        _config_section(config),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> str:
    """A markdown table; ``align`` gives one character per column, "l" or "r" (default "l")."""
    marks = [("---:" if a == "r" else "---") for a in align[: len(header)].ljust(len(header), "l")]
    lines = [header, marks, *rows]
    return "\n".join("| " + " | ".join(str(c) for c in line) + " |" for line in lines)


def _number(value: Any, digits: int = 3) -> str:
    """A metric with ``digits`` decimals, or a dash when missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return DASH
    return f"{float(value):.{digits}f}"


def _kind(name: str, entry: dict) -> tuple[str, str]:
    """(input, targets) of a model: its own keys, else what its name implies."""
    default = MODEL_KINDS.get(name, (DASH, DASH))
    return str(entry.get("input", default[0])), str(entry.get("targets", default[1]))


def _results_section(models: dict[str, dict], preset: str | None) -> str:
    """Table 2, ours next to the paper's."""
    header = ["Model", "Input", "Targets", "macro-F1 (ours)", "accuracy", "paper F"]
    rows = [
        [name, *_kind(name, m), _number(m.get("macro_f1")), _number(m.get("accuracy"))]
        + [_number(PAPER_F.get(name), 2)]
        for name, m in models.items()
    ]
    intro = (
        "## Results (test split)\n\nMacro-F1 is averaged over the classes present in the test "
        "split. The paper's figures are its Table 2 (its prose once gives AIC 0.72)."
    )
    if preset:
        intro += f" Models: the `{preset}` preset."
    return intro + "\n\n" + _table(header, rows, "lllrrr")


def distillation_effect(aic: float, nic: float, kdic: float) -> tuple[float, float | None]:
    """(KDIC − NIC, share of the teacher–student gap closed); the share is None when the
    teacher is no better than the notes-only student (the gap is not positive)."""
    gap = aic - nic
    return kdic - nic, ((kdic - nic) / gap if gap > 0 else None)


def _effect_row(label: str, aic: Any, nic: Any, kdic: Any) -> list[str]:
    """One row of the distillation table, or dashes when a figure is missing."""
    if any(v is None for v in (aic, nic, kdic)):
        return [label, DASH, DASH, DASH]
    gain, share = distillation_effect(float(aic), float(nic), float(kdic))
    closed = f"{share * 100:.1f}%" if share is not None else f"{DASH} (AIC ≤ NIC)"
    return [label, f"{float(aic) - float(nic):+.3f}", f"{gain:+.3f}", closed]


def _distillation_section(models: dict[str, dict]) -> str:
    """KDIC − NIC and the share of the AIC–NIC gap that distillation closed."""
    ours = [models.get(k, {}).get("macro_f1") for k in ("AIC", "NIC", "KDIC")]
    rows = [
        _effect_row("paper", PAPER_F["AIC"], PAPER_F["NIC"], PAPER_F["KDIC"]),
        _effect_row("ours", *ours),
    ]
    header = ["", "AIC − NIC", "KDIC − NIC", "gap closed (KDIC−NIC)/(AIC−NIC)"]
    intro = "## Distillation effect\n\nMacro-F1 differences; the paper reports about 73% closed."
    return intro + "\n\n" + _table(header, rows, "lrrr")


def _parts_section(models: dict[str, dict]) -> str:
    """Contract 2: the running answer, and each part's answer after hearing N bars."""
    with_parts = {name: m for name, m in models.items() if "parts" in m}
    if not with_parts:
        return ""
    bars = sorted({int(b) for m in with_parts.values() for b in m["parts"]})
    header = ["Model", "window", "running", *(f"after {b} bars" for b in bars)]
    answers = [(name, m, m) for name, m in with_parts.items()] + [
        (f"{name}, window answers averaged", m, m["mean"])
        for name, m in with_parts.items()
        if "mean" in m
    ]
    rows = [
        [name, _number(m.get("macro_f1")), _number(r["running"]["macro_f1"])]
        + [_number(r["parts"].get(str(b), {}).get("macro_f1")) for b in bars]
        for name, m, r in answers
    ]
    some = next(iter(with_parts.values()))
    rows.append(
        ["parts scored", "", ""] + [f"{some['parts'].get(str(b), {}).get('n', 0):,}" for b in bars]
    )
    intro = (
        "## Part-level answers (test split)\n\nMacro-F1 of the window answer, of the running "
        "answer at every window (what the part has played so far: the student's state, the "
        "floor's running means of its statistics, or the mean of the window answers for a "
        "model with neither), and of each part's running answer after it has been heard for N "
        "bars (parts at least that long). A model with a running answer of its own is also "
        "scored with its window answers averaged instead: what its history adds over "
        "averaging."
    )
    figure = "![part-level macro-F1 by bars heard](part_curves.png)"
    return intro + "\n\n" + _table(header, rows, "l" + "r" * (len(bars) + 2)) + "\n\n" + figure


#: The students measured against the floor, and the part-level answer beside the window's.
AGAINST_FLOOR: tuple[str, ...] = ("NIC", "KDIC")
FLOOR_BARS = "8"


def _floor_section(models: dict[str, dict]) -> str:
    """Each student minus the floor: window, running, and after :data:`FLOOR_BARS` bars."""
    floor = models.get("floor")
    students = [name for name in AGAINST_FLOOR if name in models]
    if not floor or not students:
        return ""

    def figures(m: dict) -> list[Any]:
        parts = (m.get("parts") or {}).get(FLOOR_BARS) or {}
        return [m.get("macro_f1"), (m.get("running") or {}).get("macro_f1"), parts.get("macro_f1")]

    base = figures(floor)
    rows = [
        [name]
        + [
            DASH if a is None or b is None else f"{a - b:+.3f}"
            for a, b in zip(figures(models[name]), base, strict=True)
        ]
        for name in students
    ]
    header = ["", "window", "running", f"after {FLOOR_BARS} bars"]
    intro = (
        "## Against the floor\n\nMacro-F1 of each student minus the floor's (gradient "
        f"boosting on {floor.get('input', 'hand statistics')}, on the same test windows): a "
        "learned student that does not beat it is not done."
    )
    return intro + "\n\n" + _table(header, rows, "lrrr")


def _targets_section(targets: dict | None) -> str:
    """How much the soft targets say beyond the label, and whether it is what notes confuse."""
    if not targets:
        return ""
    rows = [
        ["teacher accuracy on them", _number(targets.get("accuracy"))],
        ["mean target probability of the label", _number(targets.get("p_label"))],
        ["mean target entropy (nats; uniform 2.079)", _number(targets.get("entropy"))],
    ] + [
        [f"where the off-label mass goes vs {name}'s test confusions (Pearson r)", _number(r, 2)]
        for name, r in (targets.get("alignment") or {}).items()
    ]
    intro = (
        f"## What the teacher's soft targets carry\n\nThe teacher's targets at T = "
        f"{_number(targets.get('temperature'), 1)} on the {targets.get('n', 0):,} training "
        "windows. Distillation can pass on only the probability off the label, and it helps a "
        "notes-only student where that mass falls on classes that are hard to tell apart from "
        "notes (r near 1); a teacher that hears timbre may put it elsewhere."
    )
    return intro + "\n\n" + _table(["", "value"], rows, "lr")


def _per_class_section(models: dict[str, dict], data: dict) -> str:
    """Per-class F1, one column per model (— where a class is not in the test split)."""
    test = (data.get("windows") or {}).get("test") or {}
    names = list(models)
    header = ["Class", *names, "test windows"]
    rows = [
        [c, *(_number((models[m].get("per_class") or {}).get(c)) for m in names)]
        + [f"{test.get(c, 0):,}"]
        for c in CLASSES
    ]
    rows.append(
        ["**macro**", *(_number(models[m].get("macro_f1")) for m in names)]
        + [f"{sum(test.values()):,}"]
    )
    return "## Per-class F1 (test split)\n\n" + _table(header, rows, "l" + "r" * (len(names) + 1))


#: What each ``--split`` means, for the report (train.splits has the details).
SPLIT_MEANING: dict[str, str] = {
    "song": "every window of a song, and of its versions or duplicates, on one side",
    "window": "each window on its own side at random (its neighbours mostly in train)",
    "slakh-orig": "Slakh2100's split as shipped, duplicates across it kept",
}


def _split_section(split: dict | None) -> str:
    """Which split, and how much of the test split a memory of the training rolls covers."""
    if not split:
        return ""
    kind = split.get("kind", "song")
    text = f"## Split\n\n`{kind}`: {SPLIT_MEANING.get(kind, kind)}"
    if split.get("duplicates") is not None:
        text += (
            f"; emulated on a collection: {split['duplicates']:.0%} of the test songs are "
            "also in train"
        )
    leak = split.get("leakage")
    if leak:
        n = max(int(leak["test_windows"]), 1)
        text += (
            f".\n\nOf {int(leak['test_windows']):,} test windows, "
            f"{int(leak['same_roll_and_label']):,} ({leak['same_roll_and_label'] / n:.1%}) have "
            "a training window with the identical roll and the same label, "
            f"{int(leak['same_roll']):,} ({leak['same_roll'] / n:.1%}) the identical roll. "
            "The `lookup` row scores that memory alone: a seen roll gets the labels it had in "
            "train, an unseen one the most common class."
        )
    return text


def _data_section(data: dict) -> str:
    """Scalar facts of the data set, then windows per split and class."""
    facts = [f"- {k}: {_fact(v)}" for k, v in data.items() if k not in ("windows", "split")]
    parts = ["## Data", "\n".join(facts)]
    if data.get("windows"):
        parts.append("Windows per split and class:\n\n" + _windows_table(data["windows"]))
    return "\n\n".join(p for p in parts if p)


def _fact(value: Any) -> str:
    """A data-summary value as text (thousands separators for integers)."""
    if isinstance(value, (dict, list)):
        return json.dumps(to_jsonable(value))
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{int(value):,}"
    return str(value)


def _windows_table(windows: dict[str, dict[str, int]]) -> str:
    """Rows classes (contract order), columns splits, with totals."""
    splits = [s for s in SPLIT_ORDER if s in windows]
    rows = []
    for name in CLASSES:
        cells = [int(windows[s].get(name, 0)) for s in splits]
        rows.append([name, *(f"{c:,}" for c in cells), f"{sum(cells):,}"])
    totals = [sum(windows[s].values()) for s in splits]
    rows.append(["**total**", *(f"{t:,}" for t in totals), f"{sum(totals):,}"])
    return _table(["Class", *splits, "all"], rows, "l" + "r" * (len(splits) + 1))


def _figures_section(figures: dict[str, str], curves: str | None) -> str:
    """Links to the PNGs."""
    lines = [f"![confusion matrix, {name}]({file})" for name, file in figures.items()]
    lines.append(f"![training curves]({curves})" if curves else "No training histories.")
    intro = "## Figures\n\nConfusion matrices are row-normalised (each true class sums to 100%)."
    return intro + "\n\n" + "\n\n".join(lines)


def _config_section(config: dict) -> str:
    """The resolved config as a collapsed JSON block."""
    text = json.dumps(to_jsonable(config), indent=2)
    return (
        "## Config\n\n<details>\n<summary>Resolved run config (JSON)</summary>\n\n"
        f"```json\n{text}\n```\n\n</details>"
    )


# ---------------------------------------------------------------------------- figures


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (imported only when a figure is drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    """A figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    finally:
        _pyplot().close(fig)
    return buffer.getvalue()


def normalise_rows(confusion: Any) -> np.ndarray:
    """Each row divided by its sum (rows of a class with no window stay 0)."""
    counts = np.asarray(confusion, dtype=np.float64)
    sums = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, sums, out=np.zeros_like(counts), where=sums > 0)


def plot_confusion(name: str, entry: dict) -> bytes:
    """PNG of a model's row-normalised confusion matrix, cells annotated with % and count."""
    plt = _pyplot()
    counts = np.asarray(entry["confusion"], dtype=np.int64)
    share = normalise_rows(counts)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    for i, j in np.ndindex(*counts.shape):
        if counts[i].sum() > 0:
            color = "white" if share[i, j] > 0.5 else "black"
            text = f"{share[i, j] * 100:.0f}%\n({counts[i, j]})"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=7)
        elif j == counts.shape[1] // 2:
            ax.text(j - 0.5, i, "no test windows", ha="center", va="center", color="gray")
    ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=45, ha="right")
    ax.set_yticks(range(len(CLASSES)), [f"{c} ({counts[k].sum()})" for k, c in enumerate(CLASSES)])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (test windows)")
    ax.set_title(f"{name}: macro-F1 {_number(entry.get('macro_f1'))}")
    return _png(fig)


def _series(history: Sequence[dict], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of the records that have ``key``; epoch defaults to the position + 1."""
    points = [
        (float(r.get("epoch", i + 1)), float(r[key]))
        for i, r in enumerate(history)
        if r.get(key) is not None
    ]
    return [p[0] for p in points], [p[1] for p in points]


def plot_part_curves(models: dict[str, dict]) -> bytes:
    """PNG: each model's part-level macro-F1 against the bars heard."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, m in models.items():
        if "parts" in m:
            bars = sorted(int(b) for b in m["parts"])
            ax.plot(bars, [m["parts"][str(b)]["macro_f1"] for b in bars], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bars heard")
    ax.set_ylabel("part-level macro-F1 (test)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_training_curves(histories: dict[str, list[dict]]) -> bytes:
    """PNG with train loss and validation macro-F1 per epoch, one line per model."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = (("train_loss", "train loss"), ("val_macro_f1", "validation macro-F1"))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for name, history in histories.items():
            epochs, values = _series(history or [], key)
            if epochs:
                ax.plot(epochs, values, marker="o", markersize=3, label=name)
        ax.set_title(label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return _png(fig)
