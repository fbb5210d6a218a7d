"""The Arrow store: exact round trip, zero-copy reads, split selection, atomic writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import skelray.data.store as store_mod
from skelray.data import SkeletonDataset, SkeletonSequence, open_store, write_store
from skelray.errors import DataError


def make_dataset(n: int = 12) -> SkeletonDataset:
    rng = np.random.default_rng(3)
    seqs = []
    for i in range(n):
        m, t = 1 + i % 2, 1 + (7 * i) % 23
        kp = rng.normal(size=(m, t, 25, 3)).astype(np.float32)
        kp[0, 0, 0, 0] = -0.0  # bitwise, not just numerically, equal
        tags: dict[str, int | str] = {"subject": i % 5, "camera": f"c{i % 3}"}
        if i == 4:
            del tags["camera"]  # a row without a tag keeps not having it
        score = rng.uniform(size=(m, t, 25)).astype(np.float32) if i % 3 else None
        seqs.append(SkeletonSequence(f"seq{i:03d}", i % 4, kp, tags, score))
    ids = [s.id for s in seqs]
    splits = {"train": ids[::2], "val": ids[1::2], "tiny": ids[:2], "empty": []}
    return SkeletonDataset(seqs, "ntu25", splits, ["a", "b", "c", "d"])


def assert_same(a: SkeletonDataset, b: SkeletonDataset) -> None:
    assert (a.layout, a.class_names, a.splits) == (b.layout, b.class_names, b.splits)
    for x, y in zip(a.sequences, b.sequences, strict=True):
        assert (x.id, x.label, x.tags) == (y.id, y.label, y.tags)
        assert y.keypoints.dtype == np.float32 and x.keypoints.shape == y.keypoints.shape
        assert x.keypoints.tobytes() == y.keypoints.tobytes()
        assert (x.keypoint_score is None) == (y.keypoint_score is None)
        if x.keypoint_score is not None:
            assert x.keypoint_score.tobytes() == y.keypoint_score.tobytes()


def test_store_round_trip_is_exact(tmp_path: Path) -> None:
    ds = make_dataset()
    store = open_store(write_store(ds, tmp_path / "s", source="unit test"))
    assert len(store) == len(ds) and store.ids == [s.id for s in ds.sequences]
    np.testing.assert_array_equal(store.labels, [s.label for s in ds.sequences])
    assert store.source == "unit test" and store.split_names == ["train", "val", "tiny", "empty"]
    assert_same(ds, store.to_dataset())


def test_many_record_batches_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "_BATCH_FLOATS", 2000)  # a few rows per record batch
    ds = make_dataset(30)
    store = open_store(write_store(ds, tmp_path / "s"))
    assert len(store._c.kp) > 5
    assert_same(ds, store.to_dataset())
    assert_same(SkeletonDataset(ds.split("val"), ds.layout, {"val": ds.splits["val"]}, ds.class_names),
                SkeletonDataset(list(store.select("val")), store.layout, {"val": store.select("val").ids},
                                store.class_names))


def test_reads_are_zero_copy_views_of_the_mapped_file(tmp_path: Path) -> None:
    store = open_store(write_store(make_dataset(), tmp_path / "s"), split="train")
    before = pa.total_allocated_bytes()
    seqs = list(store)
    total = sum(float(s.keypoints.sum()) for s in seqs)  # touch every value
    assert np.isfinite(total)
    # No Arrow buffer was allocated to hand them out, and the arrays do not own their data.
    assert pa.total_allocated_bytes() == before
    first = seqs[0].keypoints
    assert not first.flags.owndata and not first.flags.writeable
    assert np.shares_memory(first, store[0].keypoints)


def test_select_split_and_open_with_split(tmp_path: Path) -> None:
    ds = make_dataset()
    path = write_store(ds, tmp_path / "s")
    train = open_store(path, split="train")
    assert train.split == "train" and train.ids == ds.splits["train"]
    assert [s.label for s in train] == [s.label for s in ds.split("train")]
    assert train.splits["tiny"] == ["seq000"] and train.splits["val"] == []
    assert open_store(path).select("tiny").select("val").ids == ["seq001"]
    assert len(open_store(path, split="empty")) == 0
    assert train[-1].id == ds.splits["train"][-1]
    with pytest.raises(IndexError):
        train[len(train)]
    with pytest.raises(DataError, match="no split named 'test'"):
        open_store(path, split="test")


def test_store_pickles_as_its_path_and_selection_not_its_data(tmp_path: Path) -> None:
    store = open_store(write_store(make_dataset(), tmp_path / "s"), split="val")
    rebuild, args = store.__reduce__()  # what pickle (and so Ray) sends to a worker
    assert args[0] == str(tmp_path / "s") and sum(np.asarray(a).nbytes for a in args[1:2]) < 1000
    again = rebuild(*args)
    assert again.split == "val" and again.ids == store.ids
    assert again[0].keypoints.tobytes() == store[0].keypoints.tobytes()


def test_existing_store_is_kept_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "s"
    write_store(make_dataset(4), out)
    with pytest.raises(DataError, match="a store exists here already"):
        write_store(make_dataset(6), out)
    assert len(open_store(out)) == 4
    write_store(make_dataset(6), out, overwrite=True)
    assert len(open_store(out)) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temp or old folders left


def test_failed_write_leaves_the_old_store_and_no_debris(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "s"
    write_store(make_dataset(4), out)
    before = (out / store_mod.DATA_FILE).read_bytes()
    monkeypatch.setattr(store_mod, "_BATCH_FLOATS", 1000)
    real_batch = store_mod._batch
    calls = []

    def crash_on_third(*args: object) -> pa.RecordBatch:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real_batch(*args)

    monkeypatch.setattr(store_mod, "_batch", crash_on_third)
    with pytest.raises(RuntimeError, match="disk full"):
        write_store(make_dataset(20), out, overwrite=True)
    assert (out / store_mod.DATA_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    calls.clear()
    with pytest.raises(RuntimeError):
        write_store(make_dataset(20), tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_folder_that_is_not_a_store_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="is not a skelray store; refusing"):
        write_store(make_dataset(2), tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    assert len(open_store(write_store(make_dataset(2), tmp_path / "empty"))) == 2


@pytest.mark.parametrize(("breakage", "problem"), [
    ("duplicate id", "id appears twice"),
    ("joint count", "has 20 joints, layout 'ntu25' has 25"),
    ("unknown split id", "names 1 id(s) not in the dataset, e.g. 'ghost'"),
    ("mixed tag types", "tag 'subject' is str here but int elsewhere"),
    ("label range", "label 7 is outside the 4 classes"),
    ("float tag", "tag 'score' is float"),
])
def test_inconsistent_dataset_is_refused_before_writing(tmp_path: Path, breakage: str, problem: str) -> None:
    ds = make_dataset(4)
    s = ds.sequences[1]
    if breakage == "duplicate id":
        s.id = "seq000"
    elif breakage == "joint count":
        s.keypoints = s.keypoints[:, :, :20]
    elif breakage == "unknown split id":
        ds.splits["val"].append("ghost")
    elif breakage == "mixed tag types":
        s.tags["subject"] = "x"
    elif breakage == "label range":
        s.label = 7
    else:
        s.tags["score"] = 0.5
    with pytest.raises(DataError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        write_store(ds, tmp_path / "s")
    assert list(tmp_path.iterdir()) == []


def test_open_store_on_something_else(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a skelray store"):
        open_store(tmp_path)
    (tmp_path / store_mod.DATA_FILE).write_bytes(b"not arrow at all")
    with pytest.raises(DataError, match="is not a readable skelray store"):
        open_store(tmp_path)


def test_opening_a_store_imports_neither_pandas_nor_pyarrow_compute(tmp_path: Path) -> None:
    # pyarrow pulls those in from some calls (to_numpy, flatten, is_valid): half a second that
    # every trial opening a store would pay. The store reads buffers directly instead.
    path = write_store(make_dataset(), tmp_path / "s")
    code = ("import sys; from skelray.data.store import open_store; "
            "s = open_store(sys.argv[1], split='train'); [x.keypoints.sum() for x in s]; "
            "print([m for m in ('pandas', 'pyarrow.compute') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
