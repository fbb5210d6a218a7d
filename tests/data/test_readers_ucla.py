"""NW-UCLA JSON reader: the real dataset from the shared folder, and bad files written here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from skelray.data import SkeletonDataset, open_store, write_store
from skelray.data.readers import read_ucla, read_ucla_file
from skelray.errors import DataError

DEFAULT_UCLA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nw_ucla"  # <repo>/../shared
UCLA = Path(os.environ.get("SKELRAY_UCLA", DEFAULT_UCLA))
needs_ucla = pytest.mark.skipif(not UCLA.is_dir(), reason=f"NW-UCLA not found at {UCLA} (set SKELRAY_UCLA)")


@pytest.fixture(scope="module")
def ucla() -> SkeletonDataset:
    if not UCLA.is_dir():
        pytest.skip(f"NW-UCLA not found at {UCLA} (set SKELRAY_UCLA)")
    return read_ucla(UCLA)


@needs_ucla
@pytest.mark.ucla
def test_ucla_counts_classes_and_cross_view_split(ucla: SkeletonDataset) -> None:
    assert len(ucla) == 1484
    assert ucla.layout == "kinect_v1_20" and ucla.num_classes == 10
    assert sorted({s.label for s in ucla.sequences}) == list(range(10))
    assert len(ucla.splits["xview_train"]) == 1020 and len(ucla.splits["xview_test"]) == 464
    assert all(s.tags["view"] in (1, 2) for s in ucla.split("xview_train"))
    assert all(s.keypoints.shape[0] == 1 and s.keypoints.shape[2:] == (20, 3) for s in ucla.sequences)
    by_id = {s.id: s for s in ucla.sequences}
    assert ucla.class_names[by_id["a01_s01_e00_v01"].label] == "pick up with one hand"
    assert ucla.class_names[by_id["a08_s01_e00_v01"].label] == "donning"
    assert ucla.class_names[by_id["a12_s01_e00_v01"].label] == "carry"


@needs_ucla
@pytest.mark.ucla
def test_ucla_single_frame_clip_round_trips_through_the_store(ucla: SkeletonDataset, tmp_path: Path) -> None:
    short = [s for s in ucla.sequences if s.total_frames == 1]
    assert short, "the dataset has a T = 1 clip"
    store = open_store(write_store(ucla, tmp_path / "ucla"))
    index = {i: k for k, i in enumerate(store.ids)}
    for s in short:
        back = store[index[s.id]]
        assert back.keypoints.shape == (1, 1, 20, 3)
        assert back.keypoints.tobytes() == s.keypoints.tobytes()
    assert store.select("xview_train").ids == ucla.splits["xview_train"]


@needs_ucla
@pytest.mark.ucla
def test_ucla_split_argument_reads_only_that_split(ucla: SkeletonDataset) -> None:
    test = read_ucla(UCLA, split="xview_test")
    assert [s.id for s in test.sequences] == ucla.splits["xview_test"]
    assert list(test.splits) == ["xview_test"]


def _write(path: Path, skeletons: object, **extra: object) -> Path:
    path.write_text(json.dumps({"file_name": path.stem, "skeletons": skeletons, **extra}))
    return path


FRAME = [[0.1, 0.2, 3.0]] * 20


@pytest.mark.parametrize(("content", "problem"), [
    ([], "has no frames (T = 0)"),
    ([FRAME[:19]], "has 19 joints per frame, NW-UCLA has 20"),
    ([FRAME, [[float("nan"), 0.0, 0.0]] + FRAME[1:]],
     "NaN or infinite coordinate at person 0, frame 1, joint 0"),
    ([FRAME, FRAME[:3]], "not a [T][20][3] array"),
    ([[["x", 1, 2]] * 20], "not a [T][20][3] array"),
    ([[[1.0, 2.0]] * 20], "expected (T, 20, 3)"),
])
def test_bad_ucla_file_is_named_with_its_problem(tmp_path: Path, content: object, problem: str) -> None:
    f = _write(tmp_path / "a01_s01_e00_v01.json", content)
    with pytest.raises(DataError) as info:
        read_ucla(tmp_path)
    assert str(info.value).startswith(f"{f}: ") and problem in str(info.value)


def test_single_frame_file_is_valid(tmp_path: Path) -> None:
    seq = read_ucla_file(_write(tmp_path / "a02_s09_e04_v02.json", [FRAME], label=2))
    assert seq.keypoints.shape == (1, 1, 20, 3) and seq.label == 1
    assert seq.tags == {"subject": 9, "take": 4, "view": 2}


def test_ucla_name_json_and_label_problems(tmp_path: Path) -> None:
    bad_json = tmp_path / "a01_s01_e00_v01.json"
    bad_json.write_text('{"skeletons": [\n[1, 2,\n')
    with pytest.raises(DataError, match=r"a01_s01_e00_v01.json:3: is not valid JSON"):
        read_ucla_file(bad_json)
    with pytest.raises(DataError, match="action a07 is not one of"):
        read_ucla_file(_write(tmp_path / "a07_s01_e00_v01.json", [FRAME]))
    with pytest.raises(DataError, match="aAA_sSS_eEE_vVV"):
        read_ucla_file(_write(tmp_path / "walk.json", [FRAME]))
    with pytest.raises(DataError, match="label 5 disagrees with action a03"):
        read_ucla_file(_write(tmp_path / "a03_s01_e00_v01.json", [FRAME], label=5))
    with pytest.raises(DataError, match="has 25 joints but NW-UCLA data has 20"):
        read_ucla(tmp_path, layout="ntu25")


def test_skipped_ucla_file_is_reported_and_left_out(tmp_path: Path) -> None:
    _write(tmp_path / "a01_s01_e00_v01.json", [FRAME, FRAME])
    _write(tmp_path / "a01_s01_e00_v03.json", [])
    seen: list[DataError] = []
    ds = read_ucla(tmp_path, on_error=seen.append)
    assert ds.splits == {"xview_train": ["a01_s01_e00_v01"], "xview_test": []}
    assert len(seen) == 1 and "a01_s01_e00_v03.json: has no frames" in str(seen[0])
