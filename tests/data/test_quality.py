"""The data checks behind ``data convert`` and ``data info``: empty clips and frames, and the
bone-length joint-order check (quiet on data in the layout's order, warning on permuted data)."""

from __future__ import annotations

import numpy as np
import pytest

from skelray.data import SkeletonSequence, get_layout, read_ucla, synthetic
from skelray.data.quality import ASYMMETRY_LIMIT, VARIATION_LIMIT, check_bones, count_empty


def permuted(seqs: list[SkeletonSequence], order: np.ndarray) -> list[SkeletonSequence]:
    """The clips as a file listing the joints in another order would hold them."""
    return [SkeletonSequence(s.id, s.label, s.keypoints[:, :, order], s.tags) for s in seqs]


@pytest.mark.parametrize("layout", ["kinect_v1_20", "ntu25", "hand21"])
def test_joints_in_the_layouts_order_raise_no_warning(layout):
    check = check_bones(synthetic(6, 6, layout, 40, seed=1, persons=2).sequences, layout)
    assert check.clips == 36 and check.warnings() == []
    assert check.worst_variation < VARIATION_LIMIT / 2 and check.worst_asymmetry < ASYMMETRY_LIMIT / 2


@pytest.mark.parametrize("layout", ["kinect_v1_20", "ntu25", "hand21"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_permuted_joints_warn_and_name_the_worst_bones(layout, seed):
    seqs = synthetic(6, 6, layout, 40, seed=1).sequences
    order = np.random.default_rng(seed).permutation(get_layout(layout).num_joints)
    check = check_bones(permuted(seqs, order), layout)
    warnings = check.warnings()
    assert warnings, check.summary()
    worst = check.asymmetry[0][0] if check.worst_asymmetry > ASYMMETRY_LIMIT else check.variation[0][0]
    assert worst in " ".join(warnings)
    assert "--reorder" in check.advice()


def test_nw_ucla_in_the_readers_order_passes_and_permuted_warns(ucla_path):
    seqs = read_ucla(ucla_path).sequences[::10]
    assert check_bones(seqs, "kinect_v1_20").warnings() == []
    order = np.random.default_rng(0).permutation(20)
    assert any("left and right bones" in w for w in check_bones(permuted(seqs, order), "kinect_v1_20").warnings())


def test_2d_data_and_empty_data_are_not_judged():
    flat = synthetic(4, 2, "coco17", 20, seed=0, channels=2).sequences
    assert "2D" in check_bones(flat, "coco17").summary() and check_bones(flat, "coco17").warnings() == []
    blank = [SkeletonSequence("z", 0, np.zeros((1, 8, 17, 3), np.float32))]
    assert check_bones(blank, "coco17").skipped and check_bones(blank, "coco17").warnings() == []


def test_empty_frames_and_clips_are_counted():
    seqs = synthetic(2, 3, "kinect_v1_20", 20, seed=0, persons=2).sequences
    seqs[0].keypoints[:] = 0  # an empty clip
    seqs[1].keypoints[:, : seqs[1].total_frames - 2] = 0  # all but two frames empty
    seqs[2].keypoints[0, :3] = 0  # one person missing in three frames: those frames are not empty
    seqs[3].keypoints[:, :1] = 0  # one empty frame
    count = count_empty(seqs)
    assert count.empty_clips == [seqs[0].id]
    assert count.mostly_empty == [(seqs[1].id, seqs[1].total_frames - 2, seqs[1].total_frames)]
    assert count.with_empty == 3 and count.clips == 6
    assert count.empty_frames == seqs[0].total_frames + seqs[1].total_frames - 2 + 1
    assert count.summary().startswith("1 empty clip(s), 1 with at least 50% empty frames, 3 with any")
