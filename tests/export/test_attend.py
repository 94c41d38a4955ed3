"""A bundle whose student's parts attend to each other (``model.attend``): it answers a bar
line's channels together, as PyTorch does, and the same whatever the order of the channels,
whole graph or streamed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from export.bundle import write_bundle
from export.onnx import random_inputs
from live.contracts import V2
from live.model import Model
from train.models import build_part_student
from train.testing import save_checkpoint


@pytest.fixture(scope="module", params=["steps", "stream"])
def bundle(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_part_student(
        "tiny", inputs=(0, 1, 2, 3, 4), state=8, encoder=request.param, attend=True
    )
    assert model.context is not None
    nn.init.normal_(model.context.out.weight, std=3.0)  # as trained: it reads the others
    folder = tmp_path_factory.mktemp(f"attend-{request.param}")
    ckpt = save_checkpoint(model.eval(), folder / "kdic.pt", preset="tiny", role="student")
    write_bundle(ckpt, folder / "b")
    return folder


def test_a_bar_line_is_answered_together_whatever_the_order_of_its_channels(
    bundle: Path,
) -> None:
    from train.checkpoints import load_model

    torch_model = load_model(bundle / "kdic.pt").eval()
    model = Model(bundle / "b")
    x = random_inputs(9, V2, seed=3)
    h = np.random.default_rng(4).uniform(-1, 1, (9, 8)).astype(np.float32)
    got = model.step(x, h)
    with torch.no_grad():
        want = torch_model.step(torch.from_numpy(x), torch.from_numpy(h))
    np.testing.assert_allclose(got[0], torch.softmax(want[0], 1).numpy(), atol=1e-5)
    np.testing.assert_allclose(got[1], torch.softmax(want[1], 1).numpy(), atol=1e-5)
    np.testing.assert_allclose(got[2], want[2].numpy(), atol=1e-5)
    for seed in range(3):
        p = np.random.default_rng(seed).permutation(9)
        again = model.step(x[p], h[p])
        for g, a in zip(got, again, strict=True):
            np.testing.assert_allclose(a, g[p], atol=1e-5)
    # the channels do read each other: a channel alone answers otherwise
    alone = model.step(x[:1], h[:1])
    assert max(np.abs(a - g[:1]).max() for a, g in zip(alone, got, strict=True)) > 1e-3
