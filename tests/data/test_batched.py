"""The vectorised batch pipeline against the per-clip reference, for equal draws.

Equal within float32 rounding, not bit for bit: the per-clip path rounds to float32 after each
linear map (alignment, rotation, scale, mirror), the batch path composes them in float64 and
rounds once. Coordinates here are a few metres, so 1e-5 is ~100 float32 ulps of headroom;
the measured differences are ~3e-6. Frame choices, person padding and mirror choices are exact
(a wrong one would differ by whole metres).
"""

from __future__ import annotations

import numpy as np
import pytest

from skelray.data.transforms import Preprocess
from skelray.errors import DataError

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _clips(seed: int = 0, n: int = 12, channels: int = 3) -> list[np.ndarray]:
    """Clips of 1 to 3 persons and 1 to 90 frames, with the awkward cases a dataset holds."""
    rng = np.random.default_rng(seed)
    clips = [(rng.standard_normal((int(rng.integers(1, 4)), int(rng.integers(1, 90)), 25, channels))
              + np.array([0.3, 0.1, 3.0, 1.0][:channels])).astype(np.float32) for _ in range(n)]
    clips[0] = clips[0][:, :1]  # a single frame
    clips[1] = np.zeros((2, 7, 25, channels), np.float32)  # nobody present
    clips[2][0, :4] = 0  # the first person enters late: centre on their first present frame
    clips[3] = clips[3][:1]  # one person, padded
    clips[4] = np.concatenate([np.zeros_like(clips[4][:1]), clips[4][:1]])  # person 0 absent
    return clips


def _both(pp: Preprocess, clips: list[np.ndarray], train: bool, seed: int = 5):
    ra, rb = np.random.default_rng(seed), np.random.default_rng(seed)
    batched = pp.batch(clips, train=train, rng=ra)
    reference = pp.batch(clips, train=train, rng=rb, per_clip=True)
    return batched, reference, ra, rb


@pytest.mark.parametrize("stream", ["j", "b", "jm", "bm"])
@pytest.mark.parametrize("sampling", ["uniform", "interp"])
@pytest.mark.parametrize("train", [False, True])
def test_batch_equals_per_clip_for_equal_draws(stream: str, sampling: str, train: bool) -> None:
    pp = Preprocess("ntu25", frames=32, persons=2, stream=stream, sampling=sampling, rotate_degrees=30,
                    scale=(0.8, 1.2), mirror=True)
    batched, reference, ra, rb = _both(pp, _clips(), train)
    assert batched.shape == reference.shape == (12, 2, 32, 25, 3) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, reference, **TOL)
    # Both consumed the generator alike, so the next batch starts from the same state.
    assert ra.bit_generator.state == rb.bit_generator.state


@pytest.mark.parametrize("mirror", [False, True])
@pytest.mark.parametrize(("normalize", "align"), [(True, True), (True, False), (False, False)])
def test_batch_equals_per_clip_without_each_step(mirror: bool, normalize: bool, align: bool) -> None:
    pp = Preprocess("ntu25", frames=20, persons=3, normalize=normalize, align=align, mirror=mirror)
    batched, reference, _, _ = _both(pp, _clips(seed=1), train=True)
    np.testing.assert_allclose(batched, reference, **TOL)


def test_batch_mirrors_the_same_clips_as_per_clip() -> None:
    """With only the mirror on, a wrong choice would flip a whole clip: compare exactly which."""
    pp = Preprocess("ntu25", frames=16, persons=1, mirror=True)
    # 16 frames sampled to 16: one frame per segment, so only the mirror is random.
    clips = [c for c in _clips(seed=2, n=80) if c.shape[1] >= 16 and c.any()][:40]
    clips = [c[:, :16] for c in clips]
    batched, reference, _, _ = _both(pp, clips, train=True)
    plain = pp.batch(clips)
    flipped_b = [not np.allclose(b, p, atol=1e-5) for b, p in zip(batched, plain)]
    flipped_r = [not np.allclose(r, p, atol=1e-5) for r, p in zip(reference, plain)]
    assert flipped_b == flipped_r and 0.25 * len(clips) < sum(flipped_b) < 0.75 * len(clips)


@pytest.mark.parametrize("channels", [2, 4])
def test_batch_equals_per_clip_for_2d_and_extra_channels(channels: int) -> None:
    pp = Preprocess("ntu25", frames=24, persons=2, stream="b", rotate_degrees=20, scale=(0.9, 1.1))
    batched, reference, _, _ = _both(pp, _clips(seed=3, channels=channels), train=True)
    assert batched.shape[-1] == channels
    np.testing.assert_allclose(batched, reference, **TOL)


def test_batch_refuses_what_per_clip_refuses() -> None:
    pp = Preprocess("ntu25", frames=8)
    good = _clips()[5]
    for bad in (np.zeros((1, 0, 25, 3), np.float32), np.zeros((25, 3), np.float32)):
        with pytest.raises(DataError, match="expected keypoints"):
            pp(bad)
        with pytest.raises(DataError, match="expected keypoints"):
            pp.batch([good, bad])
    with pytest.raises(DataError, match="share joints"):
        pp.batch([good, np.ones((1, 5, 20, 3), np.float32)])
    with pytest.raises(DataError, match="at least one clip"):
        pp.batch([])
