"""experiments/running_mix.py: the running answer made of the history and the mean."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from live.bundle import default_bundle_dir, read_bundle
from live.model import Model
from tests.train.experiments import load

running_mix = load("running_mix")


def test_the_share_weighs_the_history_against_the_mean() -> None:
    rng = np.random.default_rng(0)
    history, mean = rng.dirichlet(np.ones(8), size=(2, 6)).astype(np.float32)
    np.testing.assert_array_equal(running_mix.mixed(history, mean, 1.0), history)
    np.testing.assert_array_equal(running_mix.mixed(history, mean, 0.0), mean)
    quarter = running_mix.mixed(history, mean, 0.25)
    np.testing.assert_allclose(quarter, 0.25 * history + 0.75 * mean, rtol=1e-6)
    np.testing.assert_allclose(quarter.sum(1), 1, rtol=1e-6)


def test_the_chosen_share_goes_into_the_bundle_with_its_figures(tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(default_bundle_dir(), tmp_path / "bundle"))
    before = read_bundle(bundle).manifest
    test = {"running": {"macro_f1": 0.9}, "parts": {"8": {"macro_f1": 0.8}}, "macro_f1": 0.1}
    running_mix.write_share(bundle, 0.25, test, {"by": "a test"})
    after = read_bundle(bundle).manifest
    assert Model(bundle, backend="cpu", warmup=False).history_share == 0.25
    assert after["state"]["history_share_chosen"] == {"by": "a test"}
    assert after["test_metrics"]["running"] == {"macro_f1": 0.9}
    assert after["test_metrics"]["parts"] == {"8": {"macro_f1": 0.8}}
    # the window answer's figures and everything else stay
    assert after["test_metrics"]["macro_f1"] == before["test_metrics"]["macro_f1"]
    assert after["onnx"] == before["onnx"] and after["model"] == before["model"]


def test_the_paired_bootstrap_sees_a_gain_and_no_gain() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 8, 4000)
    song = np.repeat(np.arange(100), 40)
    base = np.where(rng.random(4000) < 0.5, y, rng.integers(0, 8, 4000))
    same = running_mix.paired_bootstrap(y, song, base, base, draws=50)
    assert same == {"gain": 0.0, "95%": [0.0, 0.0]}
    better = np.where(rng.random(4000) < 0.5, y, base)  # right where base was, and more
    gain = running_mix.paired_bootstrap(y, song, base, better, draws=200)
    assert gain["gain"] > 0.1 and 0 < gain["95%"][0] < gain["gain"] < gain["95%"][1]
