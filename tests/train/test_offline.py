"""The offline notes teacher (train.offline): bidirectional over a part, trained and kept as a
stage, and KDIC's targets from it, from the audio teacher or from both."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from live.testing.songs import Track, melody, write_song
from train.batches import NotesSource
from train.config import ConfigError, override, preset_config
from train.data.collection import split_of
from train.data.notes import NotesStore, build_notes
from train.models import NotesTeacher, PartStudent
from train.offline import Parts, combine, log_probs, teacher_logits, train_notes_teacher
from train.pipeline import fingerprints
from train.steps import kd_loss
from train.students import Data, NotesStudents

CPU = torch.device("cpu")


class Said:
    """A reporter that keeps what was said, and can stop a run at a progress line."""

    def __init__(self, stop_at: str | None = None) -> None:
        self.lines: list[str] = []
        self.stop_at = stop_at

    def say(self, stage: str, message: str) -> None:
        self.lines.append(f"{stage}: {message}")

    def progress(self, task: str, done: int, total: int, info: str = "") -> None:
        if self.stop_at is not None and task == self.stop_at:
            raise KeyboardInterrupt(task)


@pytest.fixture(scope="module")
def notes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A notes store of songs of three parts (lead, bass, pad) in every split."""
    root = tmp_path_factory.mktemp("offline")
    found = {"train": 0, "validation": 0, "test": 0}
    files, i = [], 0
    while min(found.values()) < 1 or found["train"] < 3:
        tracks = [
            Track("Lead", 73, 0, melody(8, low=74, seed=3 * i)),
            Track("Bass", 33, 1, melody(8, low=33, step=0.5, seed=3 * i + 1)),
            Track("Pad", 48, 2, melody(8, low=60, step=2.0, seed=3 * i + 2)),
        ]
        path = write_song(root / "midi" / f"song{i:03d}.mid", tracks, bpm=100 + 5 * i)
        split = split_of(hashlib.sha1(path.read_bytes()).hexdigest())
        if found[split] >= 3:
            path.unlink()
        else:
            found[split] += 1
            files.append(path)
        i += 1
    build_notes(files, root / "data" / "notes", workers=1)
    return root / "data"


def students_of(data_dir: Path, *settings: str) -> NotesStudents:
    """Contract-2 students of the store, as a notes-only runner builds them (no audio)."""
    cfg = override(preset_config("tiny"), [f"data.out={data_dir}", *settings])
    return NotesStudents(Data(store=None, rolls=None, summary={}, fingerprint=""), cfg)  # type: ignore[arg-type]


def test_the_sparse_embedding_is_the_dense_one(notes_dir: Path) -> None:
    notes = NotesStore(notes_dir / "notes")
    idx = np.arange(len(notes))[::-3]  # any order
    model = NotesTeacher(width=8, channels=(8,), hidden=8, state=4).eval()
    with torch.no_grad():
        dense = model.embed(torch.from_numpy(notes.inputs(idx)).float())
        sparse = model.embed(NotesSource(notes, cells=True)(idx)[0])
    assert dense.abs().max() > 0
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-6)


def test_chunks_stay_in_a_segment_and_runs_cover_whole_songs(notes_dir: Path) -> None:
    notes = NotesStore(notes_dir / "notes")
    train = notes.split("train")
    parts = Parts.of(notes, train)
    grid, valid = parts.chunks(train, 5, np.full(len(train), 2))
    assert np.all(valid[:, 0]) and np.all(valid[:, :-1] >= valid[:, 1:])  # a prefix
    for row, drawn in zip(range(len(train)), train, strict=True):
        w = grid[row][valid[row]]
        assert drawn in w and len(set(notes.index["song"][w])) == 1
        assert len(set(notes.index["part"][w])) == 1 and np.all(np.diff(notes.index["bar"][w]) > 0)
        assert list(w).index(drawn) == min(2, parts.position[parts.rank[drawn]])
    runs = parts.runs(most=10)
    assert runs[0][0] == 0 and runs[-1][1] == len(train)
    for (a, b, ok), nxt in zip(runs, [*runs[1:], None], strict=True):
        assert ok.sum() == b - a and (nxt is None or nxt[0] == b)
        assert b - a <= 10 or len(set(parts.song[a:b])) == 1  # longer only for one song
        assert a == 0 or parts.song[a] != parts.song[a - 1]  # whole songs
        assert b == len(train) or parts.song[b] != parts.song[b - 1]


def test_the_teacher_hears_a_part_after_each_window_the_student_does_not() -> None:
    """Changing a later window of a sequence changes an earlier window's logits for the
    bidirectional teacher, not for the causal student's running answer."""
    torch.manual_seed(0)
    teacher = NotesTeacher(width=8, channels=(8,), hidden=8, state=4).eval()
    student = PartStudent(state=4, encoder="steps", width=8, channels=(8,), hidden=8).eval()
    x = (torch.rand(6, 5, 128, 16) < 0.05).float()
    later = x.clone()
    later[4] = (torch.rand(5, 128, 16) < 0.2).float()  # row 0's fifth window
    valid = torch.tensor([[True] * 5, [True, False, False, False, False]])
    with torch.no_grad():
        a, b = teacher(x, valid), teacher(later, valid)
        (_, sa), (_, sb) = student(x, valid), student(later, valid)
    assert not torch.allclose(a[0], b[0]) and torch.equal(a[5], b[5])  # row 1 alone: same
    assert torch.equal(sa[:4], sb[:4]) and not torch.allclose(sa[4], sb[4])


def test_the_ensemble_teacher_hears_the_other_parts_at_the_same_bar() -> None:
    torch.manual_seed(0)
    emb = torch.randn(5, 3)
    group = torch.tensor([0, 0, 1, 0, 2])
    ctx = NotesTeacher.context(emb, group)
    torch.testing.assert_close(ctx[0], (emb[1] + emb[3]) / 2)
    assert torch.equal(ctx[2], torch.zeros(3)) and torch.equal(ctx[4], torch.zeros(3))
    teacher = NotesTeacher(width=8, channels=(8,), hidden=8, state=4, ensemble=True).eval()
    x = (torch.rand(4, 5, 128, 16) < 0.05).float()
    other = x.clone()
    other[3] = (torch.rand(5, 128, 16) < 0.2).float()  # the second part's second window
    valid = torch.tensor([[True, True], [True, True]])
    with torch.no_grad():
        a = teacher(x, valid, torch.tensor([0, 1, 0, 1]))
        b = teacher(other, valid, torch.tensor([0, 1, 0, 1]))
        c = teacher(other, valid, torch.tensor([0, 1, 2, 3]))  # heard apart
        d = teacher(x, valid, torch.tensor([0, 1, 2, 3]))
    assert not torch.allclose(a[1], b[1])  # the first part at bar 2 hears the change
    torch.testing.assert_close(c[:2], d[:2])  # not when the parts are not together
    with pytest.raises(ValueError, match="group"):
        teacher(x, valid)


def test_a_chunk_of_every_part_over_the_drawn_bars(notes_dir: Path) -> None:
    notes = NotesStore(notes_dir / "notes")
    train = notes.split("train")
    parts = Parts.of(notes, train)
    grid, valid = parts.chunks(train[:7], 3, np.zeros(7, np.int64))
    around = parts.around(grid, valid)
    song, bar = notes.index["song"], notes.index["bar"]
    want = set()
    for row, ok in zip(grid, valid, strict=True):
        w = row[ok]
        lo, hi = bar[w].min(), bar[w].max()
        want |= {int(i) for i in train if song[i] == song[w[0]] and lo <= bar[i] <= hi}
    assert set(around.tolist()) == want and len(set(notes.index["part"][around])) > 1
    windows, ok = parts.grid(around)
    assert sorted(windows.tolist()) == sorted(want) and ok.sum() == len(windows)
    rows = np.split(windows, np.cumsum(ok.sum(1))[:-1])
    for w in rows:  # a row: successive windows of one part
        assert len(set(notes.index["part"][w])) == 1 and np.all(np.diff(bar[w]) > 0)
    group = parts.groups(windows)
    key = song[windows].astype(np.int64) * 10_000 + bar[windows]
    assert np.array_equal(group, np.unique(key, return_inverse=True)[1])


def test_logits_of_a_store_run_over_whole_segments(notes_dir: Path) -> None:
    """A window's logits depend on the windows of its part after it (taken away here), and
    are the same whatever order the windows are asked in."""
    notes = NotesStore(notes_dir / "notes")
    torch.manual_seed(0)
    model = NotesTeacher(width=8, channels=(8,), hidden=8, state=4).eval()
    train = notes.split("train")
    parts = Parts.of(notes, train)
    whole = teacher_logits(model, notes, train, CPU)
    np.testing.assert_allclose(teacher_logits(model, notes, train[::-1], CPU), whole[::-1])
    last = parts.order[np.flatnonzero(parts.position == 3)[0]]  # the 4th window of a segment
    cut = teacher_logits(model, notes, train[train != last], CPU)
    first = np.flatnonzero(train == parts.order[parts.rank[last] - 3])[0]
    assert not np.allclose(cut[first - (first > np.flatnonzero(train == last)[0])], whole[first])


def test_train_notes_teacher_keeps_its_stages_and_resumes(notes_dir: Path, tmp_path: Path) -> None:
    """The notes side alone: logits on the train and test windows, heard on the train ones;
    a second call keeps both stage files; a run stopped in its second epoch resumes and ends
    where an uninterrupted one does; another setting retrains."""
    students = students_of(notes_dir)
    cfg, split = students.cfg, students.windows.split
    logits, heard = train_notes_teacher(students, cfg, tmp_path / "a", CPU, Said())
    assert logits.shape == (len(students.notes), 8) and logits.dtype == np.float32
    assert np.array_equal(np.flatnonzero(heard), np.sort(split["train"]))
    assert np.all(logits[split["train"]] != 0) and np.all(logits[split["test"]] != 0)
    assert np.all(logits[split["validation"]] == 0)
    files = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "a").glob("*.pt")}
    assert set(files) == {"notes_teacher.pt", "notes_teacher_outputs.pt"}
    said = Said()
    again, _ = train_notes_teacher(students, cfg, tmp_path / "a", CPU, said)
    assert np.array_equal(again, logits) and sum("current" in s for s in said.lines) == 2
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "a").glob("*.pt")} == files

    with pytest.raises(KeyboardInterrupt):
        train_notes_teacher(students, cfg, tmp_path / "b", CPU, Said("notes teacher epoch 2"))
    assert list((tmp_path / "b" / "checkpoints").glob("notes_teacher.*.pt"))
    resumed, _ = train_notes_teacher(students, cfg, tmp_path / "b", CPU, Said())
    np.testing.assert_allclose(resumed, logits, atol=1e-6)
    assert not list((tmp_path / "b" / "checkpoints").glob("*.pt"))

    longer = replace(cfg, notes_teacher=replace(cfg.notes_teacher, dropout=0.5))
    said = Said()
    train_notes_teacher(students, longer, tmp_path / "a", CPU, said)
    assert not any("current" in s for s in said.lines)


def test_the_ensemble_teacher_trains_on_every_part(notes_dir: Path, tmp_path: Path) -> None:
    # 42 steps: OneCycleLR divides by zero at exactly 10 (its warm-up ends at step 0)
    students = students_of(
        notes_dir, "notes_teacher.ensemble=true", "notes_teacher.optim.samples_per_epoch=256"
    )
    logits, heard = train_notes_teacher(students, students.cfg, tmp_path, CPU, Said())
    blob = torch.load(tmp_path / "notes_teacher.pt", weights_only=False)
    assert blob["description"]["kwargs"]["ensemble"] is True
    assert np.all(logits[heard] != 0) and len(blob["history"]) == 2


def test_the_audio_teacher_keeps_every_fingerprint() -> None:
    """distill.teacher=audio (the default) gives the stage fingerprints of before the notes
    teacher existed; the notes teacher or both redo KDIC alone."""
    before = {
        "tiny": ("e71fe6ec8221", "62eff941de06", "fc76997020e7", "82759a9396bd", "7136a7f3dac0"),
        "fast": ("e41555f1e31e", "470e8ded730e", "793865ef5042", "df2c2539a018", "7136a7f3dac0"),
        "paper": ("2550f23054b7", "809172142202", "d91a6847d3e6", "ec48a48b55ce", "ac451b6681eb"),
    }
    names = ("teacher.pt", "teacher_outputs.pt", "nic.pt", "kdic.pt", "floor.pt")
    for preset, fps in before.items():
        got = fingerprints(preset_config(preset), "data")
        assert tuple(got[n] for n in names) == fps, preset
    base = fingerprints(preset_config("tiny"), "data")
    kdic = {base["kdic.pt"]}
    for setting in ("distill.teacher=notes", "distill.teacher=both", "distill.history=true"):
        got = fingerprints(override(preset_config("tiny"), [setting]), "data")
        assert {k for k in got if got[k] != base[k]} == {"kdic.pt"}
        kdic.add(got["kdic.pt"])
    assert len(kdic) == 4
    sized = fingerprints(override(preset_config("tiny"), ["notes_teacher.state=16"]), "data")
    assert {k for k in sized if sized[k] != base[k]} == {
        "notes_teacher.pt",
        "notes_teacher_outputs.pt",
    }


def test_distill_history_teaches_the_running_answer_from_the_teacher(
    notes_dir: Path, tmp_path: Path
) -> None:
    """distill.history: the history phase of KDIC learns from the teacher's targets (its
    running answer's KL to them), not from the labels."""
    students = students_of(notes_dir, "distill.teacher=notes", "distill.history=true")
    cfg = students.cfg
    logits, heard = train_notes_teacher(students, cfg, tmp_path, CPU, Said())
    train = students.windows.split["train"][:4]
    model = students.new_model(cfg.model)
    plain = students.start_history(model, CPU)
    taught = students.start_history(model, CPU, kd_loss(logits, cfg.distill, CPU, heard))
    assert plain is not None and taught is not None
    torch.manual_seed(0)
    assert set(plain.step(model, train)) == {"loss", "part/ce"}
    torch.manual_seed(0)
    named = taught.step(model, train)
    assert set(named) == {"loss", "task/ce", "kd/soft"}
    torch.testing.assert_close(named["loss"], named["kd/soft"])  # alpha 0: the soft targets alone


def test_both_teachers_multiply_where_both_heard() -> None:
    rng = np.random.default_rng(0)
    la, ln = (rng.normal(size=(4, 8)).astype(np.float32) for _ in range(2))
    ha, hn = np.array([1, 0, 0, 1], bool), np.array([1, 1, 0, 0], bool)
    out, heard = combine((la, ha), (ln, hn))
    assert heard.tolist() == [True, True, False, True]
    for T in (1.0, 2.0, 4.0):  # the normalised geometric mean of the tempered targets
        pa, pn = (torch.softmax(torch.from_numpy(v[0]) / T, 0) for v in (la, ln))
        want = (pa * pn).sqrt() / (pa * pn).sqrt().sum()
        torch.testing.assert_close(torch.softmax(torch.from_numpy(out[0]) / T, 0), want)
    np.testing.assert_allclose(out[1], log_probs(ln[1]), atol=1e-6)
    np.testing.assert_allclose(out[3], log_probs(la[3]), atol=1e-6)
    assert np.all(out[2] == 0)


def test_the_notes_teacher_needs_contract_2() -> None:
    with pytest.raises(ConfigError, match="model.contract=2"):
        override(preset_config("paper"), ["distill.teacher=notes"])
    with pytest.raises(ConfigError, match="audio, notes, both"):
        override(preset_config("tiny"), ["distill.teacher=timbre"])
