"""The plain NumPy .npz format: round trip, the documented hand-made recipe, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skelray.data import SkeletonDataset, SkeletonSequence
from skelray.data.readers import read_npz, write_npz
from skelray.errors import DataError


def make_dataset() -> SkeletonDataset:
    rng = np.random.default_rng(2)
    seqs = [
        SkeletonSequence(f"s{i}", i % 2, rng.normal(size=(m, t, 20, 3)).astype(np.float32),
                         {"subject": i, "view": f"v{i}"}, rng.uniform(size=(m, t, 20)).astype(np.float32))
        for i, (m, t) in enumerate([(1, 1), (2, 9), (1, 4)])
    ]
    return SkeletonDataset(seqs, "kinect_v1_20", {"train": ["s0", "s2"], "test": ["s1"]}, ["sit", "stand"])


def test_npz_round_trip_is_exact_and_needs_no_pickle(tmp_path: Path) -> None:
    ds = make_dataset()
    f = write_npz(ds, tmp_path / "d.npz")
    with np.load(f, allow_pickle=False) as raw:
        assert raw["keypoints"].dtype == np.float32 and raw["ids"].dtype.kind == "U"
    back = read_npz(f)
    assert (back.layout, back.class_names, back.splits) == (ds.layout, ds.class_names, ds.splits)
    for a, b in zip(ds.sequences, back.sequences, strict=True):
        assert (a.id, a.label, a.tags) == (b.id, b.label, b.tags)
        assert a.keypoints.tobytes() == b.keypoints.tobytes()
        assert a.keypoint_score.tobytes() == b.keypoint_score.tobytes()


def test_hand_made_file_following_the_docstring_recipe(tmp_path: Path) -> None:
    clips = [np.ones((1, 3, 25, 3)), np.zeros((2, 5, 25, 3))]  # float64 is accepted and cast
    f = tmp_path / "mine.npz"
    np.savez(f, keypoints=np.concatenate([c.reshape(-1, *c.shape[2:]) for c in clips]),
             shapes=np.array([c.shape[:2] for c in clips]), labels=np.array([0, 1]), ids=np.array(["a", "b"]),
             layout=np.array("ntu25"), **{"split.train": np.array(["b"])})
    ds = read_npz(f)
    assert [s.keypoints.shape for s in ds.sequences] == [(1, 3, 25, 3), (2, 5, 25, 3)]
    assert ds.sequences[0].keypoints.dtype == np.float32 and ds.splits == {"train": ["b"]}


def _valid_arrays() -> dict[str, np.ndarray]:
    return {"keypoints": np.zeros((7, 20, 3), np.float32), "shapes": np.array([[1, 3], [2, 2]]),
            "labels": np.array([0, 1]), "ids": np.array(["a", "b"]), "layout": np.array("kinect_v1_20")}


@pytest.mark.parametrize(("change", "problem"), [
    ({"keypoints": np.zeros((6, 20, 3), np.float32)},
     "'shapes' accounts for 7 frame rows but 'keypoints' has 6"),
    ({"ids": np.array(["a", "b"], dtype=object)}, "holds an object array"),
    ({"labels": np.array([0])}, "'labels' has shape (1,), expected (2,)"),
    ({"shapes": None}, "has no 'shapes' array"),
    ({"layout": None}, "has no 'layout' entry"),
    ({"ids": np.array(["a", "a"])}, "'ids' repeat"),
    ({"tag.subject": np.array([1])}, "'tag.subject' has shape (1,), expected (2,)"),
])
def test_bad_npz_file_is_named_with_its_problem(tmp_path: Path, change: dict, problem: str) -> None:
    arrays = {**_valid_arrays(), **change}
    f = tmp_path / "bad.npz"
    np.savez(f, **{k: v for k, v in arrays.items() if v is not None})
    with pytest.raises(DataError) as info:
        read_npz(f)
    assert str(info.value).startswith(f"{f}") and problem in str(info.value)


@pytest.mark.parametrize(("sequence_b", "problem"), [
    (np.full((4, 20, 3), np.inf, np.float32), "NaN or infinite coordinate"),
    (np.zeros((0, 20, 3), np.float32), "has no frames (T = 0)"),
])
def test_bad_sequence_is_named_and_can_be_skipped(tmp_path: Path, sequence_b: np.ndarray,
                                                  problem: str) -> None:
    arrays = _valid_arrays()
    arrays["keypoints"] = np.concatenate([np.zeros((3, 20, 3), np.float32), sequence_b])
    arrays["shapes"] = np.array([[1, 3], [2, len(sequence_b) // 2]])
    f = tmp_path / "seq.npz"
    np.savez(f, **arrays, **{"split.all": np.array(["a", "b"])})
    with pytest.raises(DataError) as info:
        read_npz(f)
    assert f"{f} sequence 1 ('b'): " in str(info.value) and problem in str(info.value)
    seen: list[DataError] = []
    ds = read_npz(f, on_error=seen.append)
    assert [s.id for s in ds.sequences] == ["a"] and ds.splits == {"all": ["a"]}
    assert problem in str(seen[0])


def test_wrong_joint_count_for_the_layout(tmp_path: Path) -> None:
    f = tmp_path / "d.npz"
    np.savez(f, **_valid_arrays())
    with pytest.raises(DataError, match="has 20 joints, the layout has 25"):
        read_npz(f, layout="ntu25")


def test_write_npz_refuses_uneven_tags(tmp_path: Path) -> None:
    ds = make_dataset()
    ds.sequences[1].tags.pop("view")
    with pytest.raises(DataError, match="same tags"):
        write_npz(ds, tmp_path / "d.npz")
