"""``Preprocess.batch``: a whole batch through the input pipeline at once, in numpy.

The per-clip path (``Preprocess.__call__``) runs a dozen small numpy operations per clip; at
NTU's shapes their overhead, not the arithmetic, sets its speed. Here the only work per clip
is taking its draws (``Preprocess.draw``, the same ones in the same order) and copying the
sampled frames of its kept persons into one ``(N, M, T, V, C)`` array. The rest runs once
for the batch:

- every linear map a clip goes through (its alignment rotation, random rotation, scale and
  the mirror's sign flip of x) is composed into one matrix per clip, in float64, and applied
  with one batched product;
- the centring, ``A (x - c)`` on present person-frames only, becomes ``A x - A c`` with the
  second term masked, which leaves absent (all-zero) frames zero as the per-clip path does;
- the mirror's left/right joint swap and the stream features run on the stacked array.

Sampling indices are computed with the per-clip formula on an array of clip lengths, so both
paths pick the same frames. The results differ only by float32 rounding: the per-clip path
rounds after each map, this one once (tests/data/test_batched.py bounds the difference).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from skelray.data.layouts import Layout, get_layout
from skelray.data.transforms import (
    ClipDraws,
    Preprocess,
    align_rotations,
    first_present,
    rotation_matrices,
    stream_features,
    uniform_indices,
)
from skelray.errors import DataError


def _check(clips: Sequence[np.ndarray]) -> list[np.ndarray]:
    arrays = [np.asarray(c, dtype=np.float32) for c in clips]
    if not arrays:
        raise DataError("no clips to preprocess: a batch needs at least one clip")
    shape = arrays[0].shape
    for a in arrays:
        if a.ndim != 4 or a.shape[1] == 0:
            raise DataError(f"expected keypoints (M, T>0, V, C), got shape {a.shape}")
        if a.shape[2:] != shape[2:]:
            raise DataError(f"clips of one batch must share joints and channels: (V, C) {a.shape[2:]} "
                            f"beside {shape[2:]}", fix="preprocess clips of different layouts separately")
    return arrays


def _frame_positions(pp: Preprocess, totals: np.ndarray, draws: list[ClipDraws] | None
                     ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(lower frame, upper frame or None, interpolation weight or None), each ``(N, frames)``."""
    if pp.sampling == "uniform":
        u = np.stack([d.frames for d in draws]) if draws is not None else None
        return uniform_indices(totals[:, None], pp.frames, u), None, None
    start = np.zeros(len(totals))
    stop = (totals - 1).astype(np.float64)
    for i, d in enumerate(draws or ()):
        if d.window is not None:
            start[i], stop[i] = d.window
    pos = np.linspace(start, stop, pp.frames, axis=1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, totals[:, None] - 1)
    return lo, hi, (pos - lo).astype(np.float32)


def _linear_maps(pp: Preprocess, layout: Layout, refs: np.ndarray, dims: int, draws: list[ClipDraws] | None
                 ) -> np.ndarray | None:
    """Each clip's composed ``(dims, dims)`` map (float64), or None when every one is the identity."""
    n = len(refs)
    maps = None
    if pp.normalize and pp.align and dims == 3 and layout.align_z is not None:
        maps = align_rotations(refs, layout)
    if draws is None:
        return maps
    eye = np.broadcast_to(np.eye(dims), (n, dims, dims))
    if pp.rotate_degrees > 0:
        rot = rotation_matrices(np.stack([d.angles for d in draws]), dims)
        maps = rot if maps is None else rot @ maps
    if pp.scale is not None:
        scale = np.stack([d.scale for d in draws])[:, :, None]  # diag(s) @ M scales M's rows
        maps = scale * (eye if maps is None else maps)
    if pp.mirror:
        sign = np.ones((n, dims, 1))
        sign[[d.mirror for d in draws], 0] = -1.0
        maps = sign * (eye if maps is None else maps)
    return maps


def _affine(x: np.ndarray, centres: np.ndarray | None, maps: np.ndarray | None, dims: int) -> np.ndarray:
    """``maps (x - centre)`` on the first ``dims`` channels of the present person-frames of
    ``(N, M, T, V, C)``; absent ones (all zero) stay zero. ``centres`` None: no centring."""
    n, m, t, v, c = x.shape
    if centres is not None:
        rows = x.reshape(n, m * t, v * c)
        # Present = any non-zero coordinate; a sum of squares finds it without an |x| copy.
        present = np.einsum("nri,nri->nr", rows, rows) > 0
    if maps is not None:
        # One (M*T*V, dims) @ (dims, dims) product per clip.
        turned = np.matmul(x[..., :dims].reshape(n, -1, dims), maps.astype(np.float32).transpose(0, 2, 1))
        if c == dims:
            x = turned.reshape(x.shape)
        else:
            x[..., :dims] = turned.reshape(n, m, t, v, dims)
        if centres is not None:
            centres = np.einsum("nij,nj->ni", maps, centres)
    if centres is None:
        return x
    shift = np.zeros((n, c), dtype=np.float32)
    shift[:, :dims] = centres
    rows = x.reshape(n, m * t, v * c)
    rows -= np.tile(shift, v)[:, None, :]  # rows of V*C: a fast inner loop, unlike (..., 3)
    rows[~present] = 0.0
    return x


def preprocess_batch(pp: Preprocess, clips: Sequence[np.ndarray], *, train: bool = False,
                     rng: np.random.Generator | None = None) -> np.ndarray:
    """``np.stack([pp(c, train=train, rng=rng) for c in clips])``, vectorised (see module doc)."""
    arrays = _check(clips)
    n, (v, c) = len(arrays), arrays[0].shape[2:]
    dims = min(c, 3)
    layout = get_layout(pp.layout)
    draws = None
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        draws = [pp.draw(a.shape[1], c, rng) for a in arrays]
    totals = np.array([a.shape[1] for a in arrays], dtype=np.int64)
    lo, hi, w = _frame_positions(pp, totals, draws)
    m_out = pp.persons
    x = np.zeros((n, m_out, pp.frames, v, c), dtype=np.float32)
    upper = np.zeros_like(x) if hi is not None else None
    refs = np.zeros((n, v, c), dtype=np.float32)  # person 0's first present frame: centre and axes
    # The mirror's left/right swap is taken in the gather; its sign flip of x is in the maps.
    perm = list(layout.mirror()) if draws is not None and pp.mirror else None
    for i, a in enumerate(arrays):
        m = min(a.shape[0], m_out)
        swap = perm is not None and draws[i].mirror
        for out, idx in ((x, lo), (upper, hi)):
            if out is not None:
                # np.take with out= copies once; fancy indexing would copy twice.
                if swap:
                    np.take(np.take(a[:m], idx[i], axis=1), perm, axis=2, out=out[i, :m])
                else:
                    np.take(a[:m], idx[i], axis=1, out=out[i, :m])
        if pp.normalize and a.shape[0]:
            refs[i] = a[0, first_present(a[0])]
    centres = refs[:, layout.center, :dims].astype(np.float64) if pp.normalize else np.zeros((n, dims))
    # The per-clip path aligns the centred frame (in float32): the same values here.
    maps = _linear_maps(pp, layout, refs[..., :dims] - centres[:, None, :].astype(np.float32), dims, draws)
    if upper is not None:
        # Interpolation mixes two frames, each centred (or left at zero) on its own before mixing,
        # as the per-clip path does; the linear maps are applied after the mix.
        lower = _affine(x, centres, None, dims) if pp.normalize else x
        upper = _affine(upper, centres, None, dims) if pp.normalize else upper
        wb = w[:, None, :, None, None]
        x = _affine(lower * (1 - wb) + upper * wb, None, maps, dims)
    else:
        x = _affine(x, centres if pp.normalize else None, maps, dims)
    return np.ascontiguousarray(stream_features(x, pp.stream, layout), dtype=np.float32)

