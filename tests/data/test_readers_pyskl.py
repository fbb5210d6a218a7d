"""PYSKL annotation pickles: round trip, foreign files, refusing code, bad annotations."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from skelray.data import SkeletonDataset, SkeletonSequence
from skelray.data.readers import read_pyskl, write_pyskl
from skelray.errors import DataError


def make_dataset(with_score: bool = True) -> SkeletonDataset:
    rng = np.random.default_rng(1)
    seqs = []
    for i, (m, t) in enumerate([(1, 1), (2, 30), (1, 7), (2, 12)]):
        kp = rng.normal(size=(m, t, 17, 2)).astype(np.float32)
        score = rng.uniform(size=(m, t, 17)).astype(np.float32) if with_score else None
        seqs.append(SkeletonSequence(f"clip{i}", i % 3, kp, {"subject": i, "camera": f"cam{i % 2}"}, score))
    return SkeletonDataset(seqs, "coco17", {"train": ["clip0", "clip2", "clip3"], "val": ["clip1"]},
                           ["a", "b", "c"])


def test_pyskl_round_trip_is_exact(tmp_path: Path) -> None:
    ds = make_dataset()
    back = read_pyskl(write_pyskl(ds, tmp_path / "ann.pkl"))
    assert back.layout == "coco17" and back.class_names == ["a", "b", "c"]
    assert back.splits == ds.splits
    for a, b in zip(ds.sequences, back.sequences, strict=True):
        assert (a.id, a.label, a.tags) == (b.id, b.label, b.tags)
        assert b.keypoints.dtype == np.float32 and a.keypoints.tobytes() == b.keypoints.tobytes()
        assert a.keypoint_score.tobytes() == b.keypoint_score.tobytes()


def test_foreign_pyskl_file_infers_layout_from_joint_count(tmp_path: Path) -> None:
    # As PYSKL itself writes them: float16 2D keypoints, extra keys, NumPy ints, protocol 2.
    ann = {"frame_dir": "S001C001P001R001A001", "label": np.int64(3), "total_frames": 5,
           "img_shape": (1080, 1920), "keypoint": np.ones((1, 5, 25, 3), np.float16), "setup": np.int32(1)}
    f = tmp_path / "ntu.pkl"
    f.write_bytes(pickle.dumps({"split": {"xsub_train": ["S001C001P001R001A001"]}, "annotations": [ann]},
                               protocol=2))
    ds = read_pyskl(f)
    assert ds.layout == "ntu25" and ds.class_names is None
    s = ds.sequences[0]
    assert s.label == 3 and s.tags == {"setup": 1} and s.keypoints.dtype == np.float32
    assert ds.splits == {"xsub_train": ["S001C001P001R001A001"]}


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    f = tmp_path / "evil.pkl"
    f.write_bytes(pickle.dumps({"split": {}, "annotations": [_Evil(marker)]}))
    refused = r"evil.pkl: is not a plain-data PYSKL pickle: refuses to load '\w+\.mkdir'"
    with pytest.raises(DataError, match=refused):
        read_pyskl(f)
    assert not marker.exists()


def _write_raw(path: Path, annotations: list[dict], split: dict | None = None) -> Path:
    path.write_bytes(pickle.dumps({"split": split or {}, "annotations": annotations}))
    return path


def _ann(name: str, kp: np.ndarray, **extra: object) -> dict:
    return {"frame_dir": name, "label": 0, "total_frames": kp.shape[1], "keypoint": kp, **extra}


@pytest.mark.parametrize(("kp", "extra", "problem"), [
    (np.full((1, 4, 17, 2), np.nan, np.float32), {}, "NaN or infinite coordinate"),
    (np.zeros((1, 0, 17, 2), np.float32), {}, "no frames (T = 0)"),
    (np.zeros((1, 4, 18, 2), np.float32), {}, "has 18 joints, the layout has 17"),
    (np.zeros((1, 4, 17, 2), np.float32), {"total_frames": 9}, "total_frames is 9 but keypoint has 4 frames"),
    (np.zeros((4, 17, 2), np.float32), {}, "expected (M, T, V, C)"),
    (np.zeros((1, 4, 17, 2), np.float32), {"keypoint_score": np.zeros((1, 3, 17))},
     "keypoint_score has shape"),
])
def test_bad_annotation_is_named_with_its_problem(tmp_path: Path, kp: np.ndarray, extra: dict,
                                                  problem: str) -> None:
    good = _ann("good", np.zeros((1, 2, 17, 2), np.float32))
    f = _write_raw(tmp_path / "bad.pkl", [good, _ann("broken", kp, **extra)])
    with pytest.raises(DataError) as info:
        read_pyskl(f, layout="coco17")
    assert f"{f} annotation 1 ('broken')" in str(info.value) and problem in str(info.value)


def test_skipped_annotation_leaves_the_splits(tmp_path: Path) -> None:
    anns = [_ann("good", np.zeros((1, 2, 17, 2), np.float32)),
            _ann("bad", np.zeros((1, 0, 17, 2), np.float32))]
    f = _write_raw(tmp_path / "a.pkl", anns, {"train": ["good", "bad"]})
    seen: list[DataError] = []
    ds = read_pyskl(f, on_error=seen.append)
    assert [s.id for s in ds.sequences] == ["good"] and ds.splits == {"train": ["good"]}
    assert "('bad')" in str(seen[0]) and "split 'train' names 1 sequence(s)" in str(seen[1])


def test_unreadable_or_foreign_files_raise_data_error(tmp_path: Path) -> None:
    whole = pickle.dumps({"split": {}, "annotations": [_ann("x", np.zeros((1, 2, 17, 2), np.float32))]})
    (tmp_path / "cut.pkl").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match="cut.pkl: is not a readable pickle"):
        read_pyskl(tmp_path / "cut.pkl")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(DataError, match="no 'annotations' list"):
        read_pyskl(tmp_path / "list.pkl")
    with pytest.raises(DataError, match="does not exist"):
        read_pyskl(tmp_path / "missing.pkl")
    _write_raw(tmp_path / "odd.pkl", [_ann("x", np.zeros((1, 2, 11, 2), np.float32))])
    with pytest.raises(DataError, match="cannot tell the layout from 11 joints"):
        read_pyskl(tmp_path / "odd.pkl")


def test_file_pickled_by_numpy_1_loads(tmp_path: Path) -> None:
    # NumPy 1.x names its array constructor numpy.core.multiarray; NumPy 2 renamed the module.
    raw = pickle.dumps({"annotations": [_ann("x", np.ones((1, 2, 17, 2), np.float32))]}, protocol=2)
    assert b"numpy._core.multiarray" in raw
    (tmp_path / "old.pkl").write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    ds = read_pyskl(tmp_path / "old.pkl")
    assert ds.layout == "coco17" and ds.sequences[0].keypoints.sum() == 68
