"""Transforms shared by training and serving: one implementation, so the endpoint sees
exactly what the model was trained on.

Every function takes and returns float32 keypoints shaped ``(M, T, V, C)``. ``Preprocess``
chains them in the fixed order: pre-normalise -> temporal sampling -> augmentation (train
only) -> person padding -> stream features.
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


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 3x3 rotation that turns direction ``a`` into direction ``b`` (Rodrigues)."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < 1e-6 or nb < 1e-6:
        return np.eye(3)
    a, b = a / na, b / nb
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(np.dot(a, b))
    if s < 1e-8:
        if c > 0:
            return np.eye(3)
        # Opposite directions: turn half-way round any axis orthogonal to a.
        ortho = np.array([1.0, 0, 0]) if abs(a[0]) < 0.9 else np.array([0, 1.0, 0])
        axis = np.cross(a, ortho)
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    k = axis / s
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * kx + (1 - c) * (kx @ kx)


def _present(kp: np.ndarray) -> np.ndarray:
    """(M, T) mask of person-frames that hold any non-zero coordinate (zeros mean absent)."""
    return np.abs(kp).sum(axis=(2, 3)) > 0


def pre_normalize(kp: np.ndarray, layout: Layout | str, *, align: bool = True) -> np.ndarray:
    """Centre on the layout's centre joint of the first person in its first present frame;
    optionally rotate so that ``align_z`` points along +z and ``align_x`` along +x (3D only).

    Absent person-frames (all zeros) stay zero so padding stays recognisable.
    """
    layout = get_layout(layout)
    kp = np.array(kp, dtype=np.float32, copy=True)
    present = _present(kp)
    if not present.any():
        return kp
    first = int(np.argmax(present[0])) if present[0].any() else 0
    dims = min(kp.shape[-1], 3)
    center = kp[0, first, layout.center, :dims].copy()
    kp[..., :dims] = np.where(present[..., None, None], kp[..., :dims] - center, 0.0)
    if align and dims == 3 and layout.align_z is not None:
        ref = kp[0, first]
        rot = _rotation_between(ref[layout.align_z[1], :3] - ref[layout.align_z[0], :3], np.array([0.0, 0, 1]))
        if layout.align_x is not None:
            x_dir = rot @ (ref[layout.align_x[1], :3] - ref[layout.align_x[0], :3])
            # Only the part orthogonal to z can be turned onto x without undoing the z alignment.
            x_dir[2] = 0.0
            rot = _rotation_between(x_dir, np.array([1.0, 0, 0])) @ rot
        kp[..., :3] = kp[..., :3] @ rot.T.astype(np.float32)
    return kp


def sample_indices(total: int, length: int, *, train: bool, rng: np.random.Generator | None = None) -> np.ndarray:
    """Uniform segment sampling: split ``total`` frames into ``length`` segments and take one
    frame from each (a random one when training, the middle one otherwise). Shorter clips
    repeat frames; a single frame is repeated ``length`` times."""
    if total <= 0:
        raise DataError("cannot sample frames from an empty clip (T = 0)")
    edges = np.arange(length + 1) * total / length
    lo = np.floor(edges[:-1]).astype(np.int64)
    hi = np.maximum(np.floor(edges[1:]).astype(np.int64), lo + 1)
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        idx = lo + np.floor(rng.random(length) * (hi - lo)).astype(np.int64)
    else:
        idx = (lo + hi - 1) // 2
    return np.clip(idx, 0, total - 1)


def interpolate_frames(kp: np.ndarray, length: int, *, train: bool, rng: np.random.Generator | None = None,
                       crop: tuple[float, float] = (0.5, 1.0)) -> np.ndarray:
    """Linear interpolation to ``length`` frames; when training, first a random temporal crop
    keeping a ``crop`` fraction of the clip (the usual valid-crop-resize augmentation)."""
    total = kp.shape[1]
    start, stop = 0.0, float(total - 1)
    if train and total > 1:
        rng = rng if rng is not None else np.random.default_rng()
        keep = rng.uniform(*crop) * (total - 1)
        start = rng.uniform(0, total - 1 - keep)
        stop = start + keep
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
    out[:, :-1] = kp[:, 1:] - kp[:, :-1]
    return out


def stream_features(kp: np.ndarray, stream: str, layout: Layout | str) -> np.ndarray:
    """Joint (``j``), bone (``b``: joint minus its parent), joint motion (``jm``: next frame
    minus this one, zero for the last) and bone motion (``bm``)."""
    if stream not in STREAMS:
        raise ConfigError(f"unknown stream '{stream}'", fix=f"use one of {', '.join(STREAMS)}")
    if stream == "j":
        return kp
    if stream == "jm":
        return _motion(kp)
    layout = get_layout(layout)
    parents = np.asarray(layout.parents())
    bones = kp - kp[:, :, parents]
    # A bone between an absent joint and a present one is meaningless; keep absent frames zero.
    bones *= _present(kp)[..., None, None]
    return bones if stream == "b" else _motion(bones)


def random_rotate(kp: np.ndarray, rng: np.random.Generator, max_degrees: float = 15.0) -> np.ndarray:
    """Rotate the whole clip by a random angle about each axis (about z only for 2D)."""
    if max_degrees <= 0:
        return kp
    ang = np.deg2rad(rng.uniform(-max_degrees, max_degrees, size=3))
    cx, cy, cz = np.cos(ang)
    sx, sy, sz = np.sin(ang)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    out = kp.copy()
    if kp.shape[-1] >= 3:
        out[..., :3] = kp[..., :3] @ (rz @ ry @ rx).T.astype(np.float32)
    else:
        out[..., :2] = kp[..., :2] @ rz[:2, :2].T.astype(np.float32)
    return out


def random_scale(kp: np.ndarray, rng: np.random.Generator, low: float = 0.9, high: float = 1.1) -> np.ndarray:
    """Scale each spatial axis by its own random factor in ``[low, high]``."""
    dims = min(kp.shape[-1], 3)
    out = kp.copy()
    out[..., :dims] *= rng.uniform(low, high, size=dims).astype(np.float32)
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

    def __call__(self, kp: np.ndarray, *, train: bool = False, rng: np.random.Generator | None = None) -> np.ndarray:
        kp = np.asarray(kp, dtype=np.float32)
        if kp.ndim != 4 or kp.shape[1] == 0:
            raise DataError(f"expected keypoints (M, T>0, V, C), got shape {kp.shape}")
        if train and rng is None:
            rng = np.random.default_rng()
        if self.normalize:
            kp = pre_normalize(kp, self.layout, align=self.align)
        if self.sampling == "uniform":
            kp = kp[:, sample_indices(kp.shape[1], self.frames, train=train, rng=rng)]
        else:
            kp = interpolate_frames(kp, self.frames, train=train, rng=rng)
        if train:
            if self.rotate_degrees > 0:
                kp = random_rotate(kp, rng, self.rotate_degrees)
            if self.scale is not None:
                kp = random_scale(kp, rng, *self.scale)
            if self.mirror and rng.random() < 0.5:
                kp = mirror_joints(kp, get_layout(self.layout).mirror())
        kp = pad_persons(kp, self.persons)
        return np.ascontiguousarray(stream_features(kp, self.stream, self.layout), dtype=np.float32)

    def for_inference(self) -> Preprocess:
        """The same pipeline with every training augmentation off (what serving runs)."""
        return replace(self, rotate_degrees=0.0, scale=None, mirror=False)

    def batch(self, clips, *, train: bool = False, rng: np.random.Generator | None = None) -> np.ndarray:
        """Stack several clips into ``(N, M, T, V, C)``."""
        return np.stack([self(c, train=train, rng=rng) for c in clips])
