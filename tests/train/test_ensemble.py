"""The ensemble as structure (``model.attend``): attention over the parts of a window gives
the same answer whatever the order of the channels, reads only its own group, and trains and
scores on whole groups of the notes store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from live.testing.songs import write_song
from train import ensemble, history
from train.batches import NotesSource
from train.data.notes import NotesStore, build_notes
from train.models import ChannelAttention, build_part_student, describe


def _trained_attention(dim: int = 16, seed: int = 0) -> ChannelAttention:
    """An attention layer with every weight random (a fresh one's output starts at zero)."""
    torch.manual_seed(seed)
    layer = ChannelAttention(dim)
    torch.nn.init.normal_(layer.out.weight, std=0.3)
    return layer


def test_the_answer_does_not_depend_on_the_order_of_the_channels() -> None:
    layer = _trained_attention()
    emb = torch.randn(7, 16)
    perm = torch.randperm(7)
    with torch.no_grad():
        out, shuffled = layer(emb), layer(emb[perm])
    torch.testing.assert_close(shuffled, out[perm], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out, emb, atol=1e-3)  # it did read the others
    # and the student's answers, channel by channel, the same way
    student = build_part_student(
        "tiny", inputs=(0, 1, 2, 3, 4), state=8, encoder="steps", attend=True
    ).eval()
    torch.nn.init.normal_(student.context.out.weight, std=0.3)
    x = (torch.rand(5, 5, 128, 16) < 0.05).float()
    h = torch.randn(5, 8)
    p = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        a, b = student.step(x, h), student.step(x[p], h[p])
    for one, two in zip(a, b, strict=True):
        torch.testing.assert_close(two, one[p], rtol=1e-5, atol=1e-6)


def test_a_channel_reads_its_own_group_only() -> None:
    layer = _trained_attention()
    emb = torch.randn(6, 16)
    group = torch.tensor([0, 0, 1, 1, 1, 0])
    with torch.no_grad():
        together = layer(emb, group)
        first = layer(emb[group == 0])
        other = emb.clone()
        other[group == 1] += 5.0  # another song's parts change
        again = layer(other, group)
    torch.testing.assert_close(together[group == 0], first, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(again[group == 0], together[group == 0])
    assert not torch.allclose(again[group == 1], together[group == 1])


def test_a_fresh_attention_passes_the_embedding_through_and_off_leaves_the_recipe() -> None:
    emb = torch.randn(4, 16)
    assert torch.equal(ChannelAttention(16)(emb), emb)
    plain = build_part_student("fast", inputs=(0, 1, 2, 3, 4), state=64, encoder="steps")
    assert "attend" not in describe(plain)["kwargs"]  # fingerprints of earlier runs stand
    with pytest.raises(ValueError, match="heads"):
        ChannelAttention(18)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> NotesStore:
    from tests.train.test_notes import BAND

    folder = tmp_path_factory.mktemp("band")
    write_song(folder / "band.mid", BAND)
    build_notes([folder / "band.mid"], folder / "notes", workers=1)
    return NotesStore(folder / "notes")


def test_groups_expand_each_draw_to_the_parts_playing_at_its_bar(store: NotesStore) -> None:
    idx = np.arange(len(store))
    groups = ensemble.Groups(store, idx)
    song, bar = store.index["song"], store.index["bar"]
    anchors = np.array([0, 5, 0, len(store) - 1])
    windows, group = groups.expand(anchors)
    for k, a in enumerate(anchors):
        got = np.sort(windows[group == k])
        want = np.flatnonzero((song == song[a]) & (bar == bar[a]))
        assert np.array_equal(got, want) and a in got
    assert len(set(store.index["part"][windows[group == 0]])) > 1  # a band: several parts
    with pytest.raises(ValueError, match="anchor"):
        ensemble.Groups(store, idx[:3]).expand(np.array([len(store) - 1]))


def test_class_weights_count_every_class_alike_in_whole_groups(store: NotesStore) -> None:
    idx = np.arange(len(store))
    groups = ensemble.Groups(store, idx)
    weight, size = ensemble.class_weights(groups, idx, store.labels)
    windows, _ = groups.expand(idx)
    assert size > 1
    counts = np.bincount(store.labels[windows], minlength=8)
    present = counts > 0
    assert np.all(weight[~present] == 0)
    # balanced draws bring the classes of their groups: weighed, about even again
    rng = np.random.default_rng(1)
    from train.batches import balanced_sample

    drawn, _ = groups.expand(idx[balanced_sample(store.labels, 20_000, rng)])
    mass = np.bincount(store.labels[drawn], weights=weight[store.labels[drawn]], minlength=8)
    mass = mass[present] / mass[present].sum()
    np.testing.assert_allclose(mass, 1 / present.sum(), rtol=0.1)


def test_scoring_attends_within_groups_whatever_the_block(store: NotesStore) -> None:
    torch.manual_seed(0)
    model = build_part_student(
        "tiny", inputs=(0, 1, 2, 3, 4), state=8, encoder="steps", attend=True
    ).eval()
    torch.nn.init.normal_(model.context.out.weight, std=0.3)
    idx = np.random.default_rng(0).permutation(len(store))
    source = NotesSource(store, cells=True)
    whole = ensemble.attended_embeddings(model, source, store, idx, torch.device("cpu"))
    small = ensemble.attended_embeddings(model, source, store, idx, torch.device("cpu"), block=3)
    torch.testing.assert_close(small, whole)
    # one group by hand
    song, bar = store.index["song"][idx], store.index["bar"][idx]
    rows = np.flatnonzero((song == song[0]) & (bar == bar[0]))
    with torch.no_grad():
        emb = model.embed(source(idx[rows])[0])
        torch.testing.assert_close(whole[rows], model.attended(emb), rtol=1e-5, atol=1e-6)
    # and the running answers read the attended embeddings
    window, _ = history.running_answers(model, source, store, idx, torch.device("cpu"))
    with torch.no_grad():
        want = torch.softmax(model.head(whole), 1).numpy()
    np.testing.assert_allclose(window, want, rtol=1e-5, atol=1e-6)


def test_group_and_cached_history_steps_train_the_parts_they_should(
    store: NotesStore,
) -> None:
    from train.config import OptimConfig
    from train.steps import ce_loss

    torch.manual_seed(0)
    model = build_part_student(
        "tiny", inputs=(0, 1, 2, 3, 4), state=8, encoder="steps", attend=True
    )
    idx = np.arange(len(store))
    groups = ensemble.Groups(store, idx)
    weight, _ = ensemble.class_weights(groups, idx, store.labels)
    source = NotesSource(store, cells=True)
    step = ensemble.group_step(source, ce_loss(OptimConfig()), groups, weight, torch.device("cpu"))
    named = step(model, idx[:4])
    named["loss"].backward()
    assert model.context.out.weight.grad is not None
    assert model.context.out.weight.grad.abs().sum() > 0
    # the history over the cache: only the recurrent head moves
    model.zero_grad()
    model.freeze_window()
    cache = ensemble.attended_embeddings(model, source, store, idx, torch.device("cpu"))
    row = np.arange(len(store))
    nxt = history.successors(store)
    hstep = history.cached_history_step(cache, row, store.labels, nxt, 4, torch.device("cpu"))
    hstep(model, idx[:6])["loss"].backward()
    assert model.history.x_gates.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.context.parameters())
