from __future__ import annotations

import numpy as np
import pytest

from skelray.data import get_layout
from skelray.data.transforms import (
    Preprocess,
    mirror_joints,
    pad_persons,
    pre_normalize,
    random_rotate,
    sample_indices,
    stream_features,
)
from skelray.errors import ConfigError, LayoutError


def _clip(m=1, t=20, v=25, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((m, t, v, 3)) + np.array([0.3, 0.1, 3.0])).astype(np.float32)


def test_pre_normalize_centres_and_aligns():
    layout = get_layout("ntu25")
    out = pre_normalize(_clip(), layout)
    first = out[0, 0]
    np.testing.assert_allclose(first[layout.center], 0, atol=1e-5)
    z = first[layout.align_z[1]] - first[layout.align_z[0]]
    assert np.allclose(z[:2], 0, atol=1e-5) and z[2] > 0
    x = first[layout.align_x[1]] - first[layout.align_x[0]]
    assert abs(x[1]) < 1e-5 and x[0] > 0
    # A rotation keeps distances.
    raw = _clip()
    np.testing.assert_allclose(np.linalg.norm(out[0, 3, 4] - out[0, 3, 9]),
                               np.linalg.norm(raw[0, 3, 4] - raw[0, 3, 9]), rtol=1e-5)


def test_pre_normalize_keeps_absent_frames_zero():
    kp = _clip(m=2)
    kp[1, :5] = 0
    out = pre_normalize(kp, "ntu25")
    assert np.all(out[1, :5] == 0) and np.any(out[1, 5:] != 0)


@pytest.mark.parametrize("total,length", [(1, 8), (5, 8), (8, 8), (100, 8)])
def test_sample_indices_cover_the_clip(total, length):
    test = sample_indices(total, length, train=False)
    assert test.shape == (length,) and test.min() >= 0 and test.max() < total
    assert np.all(np.diff(test) >= 0)
    np.testing.assert_array_equal(test, sample_indices(total, length, train=False))
    a = sample_indices(total, length, train=True, rng=np.random.default_rng(1))
    b = sample_indices(total, length, train=True, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert a.max() < total


def test_streams_bone_and_motion():
    kp = _clip()
    parents = get_layout("ntu25").parents()
    b = stream_features(kp, "b", "ntu25")
    np.testing.assert_allclose(b[0, 2, 3], kp[0, 2, 3] - kp[0, 2, parents[3]])
    jm = stream_features(kp, "jm", "ntu25")
    np.testing.assert_allclose(jm[0, 4], kp[0, 5] - kp[0, 4])
    assert np.all(jm[:, -1] == 0)
    bm = stream_features(kp, "bm", "ntu25")
    np.testing.assert_allclose(bm[0, 0], b[0, 1] - b[0, 0], atol=1e-6)
    with pytest.raises(ConfigError, match="unknown stream"):
        stream_features(kp, "x", "ntu25")


def test_pad_persons():
    kp = _clip(m=1)
    assert pad_persons(kp, 2).shape[0] == 2 and np.all(pad_persons(kp, 2)[1] == 0)
    assert pad_persons(_clip(m=3), 2).shape[0] == 2


def test_preprocess_single_frame_and_reproducible_augmentation():
    pp = Preprocess("ntu25", frames=16, persons=2, stream="jm", rotate_degrees=20, scale=(0.8, 1.2))
    one = pp(_clip(t=1))
    assert one.shape == (2, 16, 25, 3) and np.isfinite(one).all()
    a = pp(_clip(), train=True, rng=np.random.default_rng(7))
    b = pp(_clip(), train=True, rng=np.random.default_rng(7))
    c = pp(_clip(), train=True, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Test mode is deterministic and never augments.
    np.testing.assert_array_equal(pp(_clip()), pp(_clip()))


def test_random_rotate_preserves_lengths():
    kp = _clip()
    out = random_rotate(kp, np.random.default_rng(0), 30)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(kp, axis=-1), rtol=1e-5)


@pytest.mark.parametrize("stream", ["j", "b", "jm", "bm"])
def test_mirroring_commutes_with_every_stream(stream):
    kp = _clip()
    perm = get_layout("ntu25").mirror()
    mirrored = mirror_joints(kp, perm)
    assert np.all(mirrored[..., 0] == -kp[..., perm, 0]) and np.all(mirrored[..., 1:] == kp[..., perm, 1:])
    # So a model can mirror its input whatever stream it was trained on.
    np.testing.assert_allclose(stream_features(mirrored, stream, "ntu25"),
                               mirror_joints(stream_features(kp, stream, "ntu25"), perm), atol=1e-6)


def test_mirror_augmentation_flips_about_half_the_training_clips_and_never_at_inference():
    pp = Preprocess("ntu25", frames=20, persons=1, mirror=True)
    plain = Preprocess("ntu25", frames=20, persons=1)(_clip())
    flipped = mirror_joints(plain, get_layout("ntu25").mirror())
    rng = np.random.default_rng(0)
    outcomes = []
    for _ in range(200):
        out = pp(_clip(), train=True, rng=rng)
        assert np.array_equal(out, plain) or np.array_equal(out, flipped)
        outcomes.append(np.array_equal(out, flipped))
    assert 70 < sum(outcomes) < 130
    np.testing.assert_array_equal(pp(_clip()), plain)
    served = Preprocess("ntu25", frames=20, rotate_degrees=30, scale=(0.9, 1.1), mirror=True).for_inference()
    assert (served.rotate_degrees, served.scale, served.mirror) == (0.0, None, False)
    with pytest.raises(LayoutError, match="hand21"):
        Preprocess("hand21", mirror=True)
