from __future__ import annotations

import numpy as np
import pytest
import torch

from skelray.data import synthetic
from skelray.data.synthetic import subject_traits
from skelray.data.transforms import Preprocess
from skelray.errors import ConfigError


@pytest.mark.parametrize("layout", ["ntu25", "kinect_v1_20", "openpose18", "coco17", "hand21"])
def test_synthetic_shapes_and_splits(layout):
    ds = synthetic(num_classes=4, num_per_class=10, layout=layout, frames=20, seed=1)
    assert len(ds) == 40 and ds.num_classes == 4 and ds.layout == layout
    assert sum(len(v) for v in ds.splits.values()) == 40
    for seq in ds.sequences:
        assert seq.keypoints.dtype == np.float32 and np.isfinite(seq.keypoints).all()
        assert 15 <= seq.total_frames <= 25


def test_synthetic_is_reproducible_under_seed():
    a = synthetic(3, 4, "ntu25", 16, seed=5)
    b = synthetic(3, 4, "ntu25", 16, seed=5)
    c = synthetic(3, 4, "ntu25", 16, seed=6)
    for x, y in zip(a.sequences, b.sequences):
        np.testing.assert_array_equal(x.keypoints, y.keypoints)
    assert not np.array_equal(a.sequences[0].keypoints, c.sequences[0].keypoints)


def test_synthetic_two_persons_and_2d():
    ds = synthetic(2, 2, "openpose18", 8, persons=2, channels=2)
    assert ds.sequences[0].keypoints.shape[0] == 2 and ds.sequences[0].keypoints.shape[-1] == 2


def test_too_many_classes_is_a_clear_error():
    with pytest.raises(ConfigError, match="num_classes"):
        synthetic(num_classes=100)


def _linear_probe(train_x, train_y, test_x, test_y, classes):
    torch.manual_seed(0)
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    xtr, xte = (train_x - mu) / sd, (test_x - mu) / sd
    lin = torch.nn.Linear(xtr.shape[1], classes)
    opt = torch.optim.Adam(lin.parameters(), 1e-2, weight_decay=1e-3)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lin(xtr), train_y).backward()
        opt.step()
    return (lin(xte).argmax(1) == test_y).float().mean().item()


def test_mean_pose_does_not_reveal_the_class():
    """A linear probe on the mean pose should do far worse than a model that sees motion."""
    ds = synthetic(num_classes=10, num_per_class=40, layout="ntu25", frames=48, seed=0)
    pp = Preprocess("ntu25", frames=32, persons=1, align=False)

    def arrays(split):
        seqs = ds.split(split)
        x = torch.tensor(pp.batch([s.keypoints for s in seqs]))
        return x, torch.tensor([s.label for s in seqs])

    (xtr, ytr), (xte, yte) = arrays("train"), arrays("test")
    mean_pose = _linear_probe(xtr.mean(2).flatten(1), ytr, xte.mean(2).flatten(1), yte, 10)
    single_frame = _linear_probe(xtr[:, 0, 5].flatten(1), ytr, xte[:, 0, 5].flatten(1), yte, 10)
    assert mean_pose < 0.5
    assert single_frame < 0.5


def test_the_default_dataset_is_unchanged():
    # Recorded before subjects existed: adding them must not move any random draw.
    ds = synthetic(num_classes=4, num_per_class=10, layout="kinect_v1_20", frames=16, seed=3)
    picked = ds.sequences[::7]
    assert [s.id for s in picked] == ["syn_c00_0000", "syn_c00_0007", "syn_c01_0004", "syn_c02_0001",
                                      "syn_c02_0008", "syn_c03_0005"]
    assert [s.keypoints.shape[1] for s in picked] == [13, 14, 17, 20, 18, 19]
    sums = [float(np.abs(s.keypoints).astype(np.float64).sum()) for s in picked]
    assert sums == pytest.approx([958.999648, 1049.491779, 1400.105271, 1541.702847, 1197.806992, 1521.624045],
                                 rel=1e-6)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 28, "val": 8, "test": 4}
    assert ds.class_names == ["loop-sync-rev-x3", "line-wave-fwd-x3", "loop-wave-rev-x3", "loop-sync-fwd-x2"]
    assert all("subject" not in s.tags for s in ds.sequences)


def test_subjects_are_tagged_and_split_half_and_half():
    ds = synthetic(4, 10, "kinect_v1_20", 16, seed=3, subjects=4)
    assert [s.tags["subject"] for s in ds.sequences[:10]] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    by_id = {s.id: s.tags["subject"] for s in ds.sequences}
    assert {by_id[i] for i in ds.splits["xsub_train"]} == {0, 1}
    assert {by_id[i] for i in ds.splits["xsub_test"]} == {2, 3}
    assert sorted(ds.splits["xsub_train"] + ds.splits["xsub_test"]) == sorted(by_id)
    # The per-class splits stay as they were.
    assert {k: len(v) for k, v in ds.splits.items() if not k.startswith("xsub")} == {"train": 28, "val": 8, "test": 4}
    # Without an effect, subjects are only a tag: the clips are the default dataset's.
    plain = synthetic(4, 10, "kinect_v1_20", 16, seed=3)
    same = synthetic(4, 10, "kinect_v1_20", 16, seed=3, subjects=4, subject_effect=0.0)
    for a, b in zip(plain.sequences, same.sequences):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)


def _per_subject(ds, measure) -> np.ndarray:
    return np.array([np.mean([measure(s.keypoints[0]) for s in ds.sequences if s.tags["subject"] == k])
                     for k in range(4)])


def _bone(kp) -> float:
    # Mean length of one bone (rigid, whatever the camera or the pose): the body's size.
    return float(np.linalg.norm(kp[:, 0] - kp[:, 1], axis=-1).mean())


def _pace(kp) -> float:
    # Joint speed per clip length, in body sizes: how fast the subject moves.
    return float(np.linalg.norm(np.diff(kp, axis=0), axis=-1).mean() * len(kp)) / _bone(kp)


def test_each_subject_has_its_own_body_size_and_speed():
    ds = synthetic(3, 40, "kinect_v1_20", 32, seed=0, subjects=4, subject_effect=1.0, noise=0.0)
    sizes, speeds = subject_traits(4, 1.0, 0)
    assert np.ptp(sizes) > 0.2 and np.ptp(speeds) > 0.2
    # Averaged over a subject's clips (each varies around it), size and speed follow the subject.
    for measured, factor in ((_per_subject(ds, _bone), sizes), (_per_subject(ds, _pace), speeds)):
        assert np.corrcoef(measured, factor)[0, 1] > 0.95
        assert np.ptp(measured / factor) / np.mean(measured / factor) < 0.1
    flat = synthetic(3, 40, "kinect_v1_20", 32, seed=0, subjects=4, subject_effect=0.0, noise=0.0)
    assert np.ptp(_per_subject(ds, _bone)) > 3 * np.ptp(_per_subject(flat, _bone))


def test_subject_mistakes_are_named():
    with pytest.raises(ConfigError, match="subjects"):
        synthetic(3, 10, subjects=1)
    with pytest.raises(ConfigError, match="num_per_class"):
        synthetic(3, 4, subjects=5)
