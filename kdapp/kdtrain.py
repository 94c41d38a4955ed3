"""The ``kdtrain`` console script: ``train``'s command line, whose ``all`` ends by exporting the
distilled student (KDIC) as a model bundle for ``kdlive``: ``RUN/bundle``.

This is the one place that composes training and export; ``export`` is imported inside the
stage, so ``kdtrain --help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path

from train.cli import LastStage, build_app
from train.progress import Reporter


def export_bundle(run: Path, report: Reporter) -> str:
    """Write ``run/bundle`` from the run's ``kdic.pt`` (export's whole gauntlet); the line that
    says where it is and how ``kdlive`` uses it."""
    from export.bundle import write_bundle

    bundle = run / "bundle"
    report.say("bundle", f"exporting KDIC to {bundle}")
    write_bundle(run, bundle, which="kdic", say=lambda message: report.say("bundle", message))
    return f"bundle: {bundle}  (kdlive listen --model {bundle})"


app = build_app(LastStage("bundle", export_bundle))

if __name__ == "__main__":
    app()
