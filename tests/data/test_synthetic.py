from __future__ import annotations

import numpy as np
import pytest
import torch

from skelray.data import synthetic
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
