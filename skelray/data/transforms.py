"""Transforms shared by training and serving: one implementation, so the endpoint sees
exactly what the model was trained on.

Every function takes and returns float32 keypoints shaped ``(M, T, V, C)``. ``Preprocess``
chains them in the fixed order: pre-normalise -> temporal sampling -> augmentation (train
only) -> person padding -> stream features.

Random draws are taken apart from their use: ``Preprocess.draw`` takes one clip's draws
(``ClipDraws``) in a fixed order (frame sampling, rotation, scale, mirror), the order the
per-clip functions always used, so a seed gives the same clips as before. The per-clip path
(``Preprocess.__call__``, the reference) and the vectorised batch path
(``skelray.data._batched``, what ``Preprocess.batch`` runs) both apply the same draws.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, TypeVar

import numpy as np

from skelray.data.layouts import Layout, get_layout
from skelray.errors import ConfigError, DataError

ArrayT = TypeVar("ArrayT")  # a numpy array or a torch tensor

STREAMS = ("j", "b", "jm", "bm")
Stream = Literal["j", "b", "jm", "bm"]


def rotations_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The ``(N, 3, 3)`` rotations that turn directions ``a`` ``(N, 3)`` into ``b`` ``(3,)``
    (Rodrigues), in float64; the identity where either direction is (near) zero."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n = a.shape[0]
    na, nb = np.linalg.norm(a, axis=1), float(np.linalg.norm(b))
    out = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
    ok = (na >= 1e-6) & (nb >= 1e-6)
    if not ok.any():
        return out
    a_, b_ = a[ok] / na[ok, None], b / nb
    axis = np.cross(a_, b_)
    s, c = np.linalg.norm(axis, axis=1), a_ @ b_
    rot = np.broadcast_to(np.eye(3), (len(a_), 3, 3)).copy()
    turn = s >= 1e-8
    k = axis[turn] / s[turn, None]
    z = np.zeros(len(k))
    kx = np.stack([np.stack([z, -k[:, 2], k[:, 1]], -1), np.stack([k[:, 2], z, -k[:, 0]], -1),
                   np.stack([-k[:, 1], k[:, 0], z], -1)], 1)
    rot[turn] = np.eye(3) + s[turn, None, None] * kx + (1 - c[turn])[:, None, None] * (kx @ kx)
    # Opposite directions: turn half-way round any axis orthogonal to a.
    for j in np.flatnonzero(~turn & (c < 0)):
        ortho = np.array([1.0, 0, 0]) if abs(a_[j, 0]) < 0.9 else np.array([0, 1.0, 0])
        ax = np.cross(a_[j], ortho)
        ax /= np.linalg.norm(ax)
        rot[j] = 2 * np.outer(ax, ax) - np.eye(3)
    out[ok] = rot
    return out


def align_rotations(ref: np.ndarray, layout: Layout) -> np.ndarray:
    """``(N, 3, 3)`` rotations taking each reference frame ``(N, V, >=3)`` (centred) to the
    layout's body axes: ``align_z`` along +z, then ``align_x`` (its part orthogonal to z) along +x."""
    z0, z1 = layout.align_z
    rot = rotations_between(ref[:, z1, :3] - ref[:, z0, :3], np.array([0.0, 0, 1]))
    if layout.align_x is not None:
        x0, x1 = layout.align_x
        x_dir = np.einsum("nij,nj->ni", rot, ref[:, x1, :3] - ref[:, x0, :3])
        # Only the part orthogonal to z can be turned onto x without undoing the z alignment.
        x_dir[:, 2] = 0.0
        rot = rotations_between(x_dir, np.array([1.0, 0, 0])) @ rot
    return rot


def present_mask(kp: np.ndarray) -> np.ndarray:
    """(..., M, T) mask of person-frames that hold any non-zero coordinate (zeros mean absent)."""
    return np.abs(kp).sum(axis=(-2, -1)) > 0


def first_present(person: np.ndarray) -> int:
    """The first frame of one person's ``(T, V, C)`` joints that is present (0 when none is)."""
    if np.abs(person[0]).sum() > 0:  # the usual case, without scanning the clip
        return 0
    present = np.abs(person).sum(axis=(1, 2)) > 0
    return int(np.argmax(present)) if present.any() else 0


def pre_normalize(kp: np.ndarray, layout: Layout | str, *, align: bool = True) -> np.ndarray:
    """Centre on the layout's centre joint of the first person in its first present frame;
    optionally rotate so that ``align_z`` points along +z and ``align_x`` along +x (3D only).

    Absent person-frames (all zeros) stay zero so padding stays recognisable.
    """
    layout = get_layout(layout)
    kp = np.array(kp, dtype=np.float32, copy=True)
    present = present_mask(kp)
    if not present.any():
        return kp
    first = first_present(kp[0])
    dims = min(kp.shape[-1], 3)
    center = kp[0, first, layout.center, :dims].copy()
    kp[..., :dims] = np.where(present[..., None, None], kp[..., :dims] - center, 0.0)
    if align and dims == 3 and layout.align_z is not None:
        rot = align_rotations(kp[0, first][None], layout)[0]
        kp[..., :3] = kp[..., :3] @ rot.T.astype(np.float32)
    return kp


def uniform_indices(total: int | np.ndarray, length: int, u: np.ndarray | None = None) -> np.ndarray:
    """Segment sampling for one clip (``total`` an int, ``u`` ``(length,)``) or many (``total``
    ``(N, 1)``, ``u`` ``(N, length)``): frame ``lo + floor(u * (hi - lo))`` of each of ``length``
    equal segments, the middle one where ``u`` is None. The same float operations either way,
    so the two give the same indices."""
    edges = np.arange(length + 1) * total / length
    lo = np.floor(edges[..., :-1]).astype(np.int64)
    hi = np.maximum(np.floor(edges[..., 1:]).astype(np.int64), lo + 1)
    idx = (lo + hi - 1) // 2 if u is None else lo + np.floor(u * (hi - lo)).astype(np.int64)
    return np.clip(idx, 0, np.asarray(total) - 1)


def sample_indices(total: int, length: int, *, train: bool, rng: np.random.Generator | None = None,
                   u: np.ndarray | None = None) -> np.ndarray:
    """Uniform segment sampling: split ``total`` frames into ``length`` segments and take one
    frame from each (a random one when training, from ``u`` or drawn from ``rng``; the middle
    one otherwise). Shorter clips repeat frames; a single frame is repeated ``length`` times."""
    if total <= 0:
        raise DataError("cannot sample frames from an empty clip (T = 0)")
    if train and u is None:
        u = (rng if rng is not None else np.random.default_rng()).random(length)
    return uniform_indices(total, length, u if train else None)


def crop_window(total: int, rng: np.random.Generator, crop: tuple[float, float] = (0.5, 1.0)
                ) -> tuple[float, float]:
    """A random temporal crop keeping a ``crop`` fraction of a clip: (start, stop) frame positions."""
    keep = rng.uniform(*crop) * (total - 1)
    start = rng.uniform(0, total - 1 - keep)
    return start, start + keep


def interpolate_frames(kp: np.ndarray, length: int, *, train: bool, rng: np.random.Generator | None = None,
                       crop: tuple[float, float] = (0.5, 1.0), window: tuple[float, float] | None = None
                       ) -> np.ndarray:
    """Linear interpolation to ``length`` frames; when training, first a random temporal crop
    keeping a ``crop`` fraction of the clip (the usual valid-crop-resize augmentation), the
    ``window`` given or drawn from ``rng``."""
    total = kp.shape[1]
    start, stop = 0.0, float(total - 1)
    if train and total > 1:
        start, stop = window or crop_window(total, rng if rng is not None else np.random.default_rng(), crop)
    pos = np.linspace(start, stop, length)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, total - 1)
    w = (pos - lo).astype(np.float32)[None, :, None, None]
    return (kp[:, lo] * (1 - w) + kp[:, hi] * w).astype(np.float32)


def pad_persons(kp: np.ndarray, persons: int) -> np.ndarray:
    """Keep the first ``persons`` persons, padding with zeros (absent) when there are fewer."""
    m = kp.shape[0]
    if m >= persons:
        return np.ascontiguousarray(kp[:persons])
    pad = np.zeros((persons - m, *kp.shape[1:]), dtype=kp.dtype)
    return np.concatenate([kp, pad], axis=0)


def _motion(kp: np.ndarray) -> np.ndarray:
    out = np.zeros_like(kp)
    out[..., :-1, :, :] = kp[..., 1:, :, :] - kp[..., :-1, :, :]
    return out


def stream_features(kp: np.ndarray, stream: str, layout: Layout | str) -> np.ndarray:
    """Joint (``j``), bone (``b``: joint minus its parent), joint motion (``jm``: next frame
    minus this one, zero for the last) and bone motion (``bm``). Any leading dimensions
    (a batch ``(N, M, T, V, C)``) pass through."""
    if stream not in STREAMS:
        raise ConfigError(f"unknown stream '{stream}'", fix=f"use one of {', '.join(STREAMS)}")
    if stream == "j":
        return kp
    if stream == "jm":
        return _motion(kp)
    layout = get_layout(layout)
    parents = np.asarray(layout.parents())
    bones = kp - kp[..., parents, :]
    # A bone between an absent joint and a present one is meaningless; keep absent frames zero.
    bones *= present_mask(kp)[..., None, None]
    return bones if stream == "b" else _motion(bones)


def rotation_matrices(angles: np.ndarray, dims: int) -> np.ndarray:
    """``(N, dims, dims)`` rotations by ``angles`` ``(N, 3)`` radians about x, then y, then z
    (``Rz Ry Rx``); about z only for 2D (``dims`` 2)."""
    angles = np.asarray(angles, dtype=np.float64)
    (cx, cy, cz), (sx, sy, sz) = np.cos(angles).T, np.sin(angles).T
    one, zero = np.ones_like(cx), np.zeros_like(cx)

    def mat(rows):
        return np.stack([np.stack(r, -1) for r in rows], 1)

    rz = mat([[cz, -sz, zero], [sz, cz, zero], [zero, zero, one]])
    if dims < 3:
        return rz[:, :2, :2]
    ry = mat([[cy, zero, sy], [zero, one, zero], [-sy, zero, cy]])
    rx = mat([[one, zero, zero], [zero, cx, -sx], [zero, sx, cx]])
    return rz @ ry @ rx


def draw_angles(rng: np.random.Generator, max_degrees: float) -> np.ndarray:
    return np.deg2rad(rng.uniform(-max_degrees, max_degrees, size=3))


def random_rotate(kp: np.ndarray, rng: np.random.Generator | None, max_degrees: float = 15.0, *,
                  angles: np.ndarray | None = None) -> np.ndarray:
    """Rotate the whole clip by a random angle about each axis (about z only for 2D); the
    ``angles`` (radians) given, or drawn from ``rng``."""
    if max_degrees <= 0:
        return kp
    ang = angles if angles is not None else draw_angles(rng, max_degrees)
    dims = 3 if kp.shape[-1] >= 3 else 2
    rot = rotation_matrices(ang[None], dims)[0]
    out = kp.copy()
    out[..., :dims] = kp[..., :dims] @ rot.T.astype(np.float32)
    return out


def random_scale(kp: np.ndarray, rng: np.random.Generator | None, low: float = 0.9, high: float = 1.1, *,
                 factors: np.ndarray | None = None) -> np.ndarray:
    """Scale each spatial axis by its own random factor in ``[low, high]`` (``factors`` given
    or drawn from ``rng``)."""
    dims = min(kp.shape[-1], 3)
    out = kp.copy()
    f = factors if factors is not None else rng.uniform(low, high, size=dims)
    out[..., :dims] *= f.astype(np.float32)
    return out


def mirror_joints(kp: ArrayT, perm: tuple[int, ...]) -> ArrayT:
    """The mirror image of ``(..., V, C)`` joints or stream features, a numpy array or a torch
    tensor: left and right joints swap (``perm``, from ``Layout.mirror()``) and the x
    coordinate (channel 0) changes sign. The input is left alone.

    The bone and motion streams of a mirrored skeleton are the mirrored streams (for a layout
    whose bones are symmetric, which ``Layout.mirror`` checks), so this works on any stream.
    """
    out = kp[..., list(perm), :]  # advanced indexing copies, in numpy and in torch
    out[..., 0] *= -1
    return out


@dataclass
class ClipDraws:
    """One training clip's random draws, taken by ``Preprocess.draw`` in a fixed order."""

    frames: np.ndarray | None = None  # uniform sampling: (frames,) positions in [0, 1) within each segment
    window: tuple[float, float] | None = None  # interp sampling: the crop's (start, stop) frame positions
    angles: np.ndarray | None = None  # rotation about x, y, z in radians
    scale: np.ndarray | None = None  # one factor per spatial axis
    mirror: bool = False


@dataclass(frozen=True)
class Preprocess:
    """The whole input pipeline for one stream; the same object is used to train and to serve."""

    layout: str
    frames: int = 64
    persons: int = 2
    stream: str = "j"
    normalize: bool = True
    align: bool = True
    sampling: Literal["uniform", "interp"] = "uniform"
    rotate_degrees: float = 0.0  # training augmentation; 0 turns it off
    scale: tuple[float, float] | None = None  # training augmentation, e.g. (0.9, 1.1)
    mirror: bool = False  # training augmentation: mirror half the clips left-right

    def __post_init__(self) -> None:
        layout = get_layout(self.layout)
        if self.mirror:
            layout.mirror()  # raises, naming the layout, if it cannot be mirrored
        if self.stream not in STREAMS:
            raise ConfigError(f"unknown stream '{self.stream}'", where="stream", fix=f"use one of {STREAMS}")
        if self.frames < 1:
            raise ConfigError(f"frames must be >= 1, got {self.frames}", where="frames")
        if self.persons < 1:
            raise ConfigError(f"persons must be >= 1, got {self.persons}", where="persons")
        if self.sampling not in ("uniform", "interp"):
            raise ConfigError(f"unknown sampling '{self.sampling}'", where="sampling", fix="use uniform or interp")

    def draw(self, total: int, channels: int, rng: np.random.Generator) -> ClipDraws:
        """One training clip's draws (``total`` raw frames, ``channels`` coordinates), always in
        this order: frame sampling, rotation, scale, mirror. Both the per-clip and the batch
        path take their draws here, so a generator gives both the same clips."""
        d = ClipDraws()
        if self.sampling == "uniform":
            d.frames = rng.random(self.frames)
        elif total > 1:
            d.window = crop_window(total, rng)
        if self.rotate_degrees > 0:
            d.angles = draw_angles(rng, self.rotate_degrees)
        if self.scale is not None:
            d.scale = rng.uniform(*self.scale, size=min(channels, 3))
        if self.mirror:
            d.mirror = bool(rng.random() < 0.5)
        return d

    def __call__(self, kp: np.ndarray, *, train: bool = False, rng: np.random.Generator | None = None) -> np.ndarray:
        """One clip, transform after transform: the reference the batch path is tested against."""
        kp = np.asarray(kp, dtype=np.float32)
        if kp.ndim != 4 or kp.shape[1] == 0:
            raise DataError(f"expected keypoints (M, T>0, V, C), got shape {kp.shape}")
        d = self.draw(kp.shape[1], kp.shape[-1], rng if rng is not None else np.random.default_rng()) \
            if train else None
        if self.normalize:
            kp = pre_normalize(kp, self.layout, align=self.align)
        if self.sampling == "uniform":
            kp = kp[:, sample_indices(kp.shape[1], self.frames, train=train, u=d.frames if d else None)]
        else:
            kp = interpolate_frames(kp, self.frames, train=d is not None and d.window is not None,
                                    window=d.window if d else None)
        if d is not None:
            if d.angles is not None:
                kp = random_rotate(kp, None, self.rotate_degrees, angles=d.angles)
            if d.scale is not None:
                kp = random_scale(kp, None, factors=d.scale)
            if d.mirror:
                kp = mirror_joints(kp, get_layout(self.layout).mirror())
        kp = pad_persons(kp, self.persons)
        return np.ascontiguousarray(stream_features(kp, self.stream, self.layout), dtype=np.float32)

    def for_inference(self) -> Preprocess:
        """The same pipeline with every training augmentation off (what serving runs)."""
        return replace(self, rotate_degrees=0.0, scale=None, mirror=False)

    def batch(self, clips, *, train: bool = False, rng: np.random.Generator | None = None,
              per_clip: bool = False) -> np.ndarray:
        """Several clips (of any lengths and person counts) as one ``(N, M, T, V, C)`` array.

        Vectorised over the batch (``skelray.data._batched``); ``per_clip=True`` runs
        ``__call__`` clip by clip instead, the reference. Both take the same draws from ``rng``
        and agree to float32 rounding (tests/data/test_batched.py)."""
        if per_clip:
            if train and rng is None:
                rng = np.random.default_rng()
            return np.stack([self(c, train=train, rng=rng) for c in clips])
        from skelray.data._batched import preprocess_batch

        return preprocess_batch(self, clips, train=train, rng=rng)
