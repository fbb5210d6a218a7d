"""Procedurally animated skeletons: the embedded default dataset.

Each class is a distinct *temporal* pattern of limb motion: every limb group swings about
its base joint, along a line or in a loop, in step with the other limbs or as a wave running
across them, at one of three tempos, played forwards or backwards. All classes move the same
limbs with the same amplitudes, so the mean pose over a clip carries little class information
(a linear probe on it does poorly), and a class and its reverse have the same single frames;
telling the classes apart needs the motion over time, which is what a ST-GCN learns.
Per clip, the speed, amplitude, phase, body size, camera rotation, length and noise vary.

With ``subjects=S`` the clips are performed by S subjects (tag ``subject``), each with a body
size and a speed of its own on top of the per-clip variation, and a cross-subject protocol
(``xsub_train`` / ``xsub_test``: half the subjects each). A model can then learn the training
subjects' sizes and speeds, which helps on their other clips but not on new subjects: the
gap a validation set of training subjects' clips hides and one of held-out subjects shows.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np

from skelray.data._types import SkeletonDataset, SkeletonSequence
from skelray.data.layouts import Layout, get_layout
from skelray.errors import ConfigError

_TEMPOS = (1.0, 2.0, 3.0)  # cycles per clip
# (name, second-axis amplitude: 0 swings along a line, 1 loops; inter-limb phase: 0 all limbs
# in step, 1 a wave running across the limbs)
_SHAPES = (("line-wave", 0.0, 1.0), ("loop-sync", 1.0, 0.0), ("loop-wave", 1.0, 1.0))
# Playing a pattern backwards gives exactly the same set of single frames, so a class and its
# reverse differ only in time: a model must look at motion to tell them apart.
_DIRECTIONS = (("fwd", 1.0), ("rev", -1.0))


def _children(layout: Layout) -> list[list[int]]:
    parents = layout.parents()
    kids: list[list[int]] = [[] for _ in range(layout.num_joints)]
    for v, p in enumerate(parents):
        if p != v:
            kids[p].append(v)
    return kids


def _root(layout: Layout) -> int:
    parents = layout.parents()
    roots = [v for v, p in enumerate(parents) if p == v]
    # A layout whose edges form a forest: animate from the root with the most descendants.
    return max(roots, key=lambda r: sum(1 for _ in _walk(_children(layout), r)))


def _walk(kids: list[list[int]], root: int):
    stack = [root]
    while stack:
        v = stack.pop()
        yield v
        stack.extend(reversed(kids[v]))


def _rest_pose(layout: Layout) -> np.ndarray:
    """A rest pose for any tree layout: children fan out from their parent around its own
    direction, bones shortening with depth. Deterministic per layout."""
    rng = np.random.default_rng(zlib.crc32(" ".join(layout.joints).encode()))
    kids = _children(layout)
    root = _root(layout)
    pos = np.zeros((layout.num_joints, 3))
    direction = {root: np.array([0.0, 1.0, 0.0])}
    depth = {root: 0}
    for v in _walk(kids, root):
        n = len(kids[v])
        for i, c in enumerate(kids[v]):
            base = direction[v]
            if n == 1:
                d = base + 0.15 * rng.standard_normal(3)
            else:
                # Spread siblings around the parent's direction.
                ang = 2 * np.pi * i / n + rng.uniform(-0.2, 0.2)
                ortho1 = np.cross(base, [0.0, 0.0, 1.0] if abs(base[2]) < 0.9 else [1.0, 0.0, 0.0])
                ortho1 /= np.linalg.norm(ortho1)
                ortho2 = np.cross(base, ortho1)
                d = 0.3 * base + np.cos(ang) * ortho1 + np.sin(ang) * ortho2
            d /= np.linalg.norm(d)
            depth[c] = depth[v] + 1
            direction[c] = d
            pos[c] = pos[v] + d * 0.3 / (1 + 0.25 * depth[c])
    return pos


def _limb_bases(layout: Layout) -> list[int]:
    """Joints that start a limb: non-leaf joints whose parent branches."""
    kids = _children(layout)
    parents = layout.parents()
    return [v for v in range(layout.num_joints)
            if parents[v] != v and kids[v] and len(kids[parents[v]]) >= 2] or [_root(layout)]


def _axis_rotation(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotation matrices (T, 3, 3) about a unit axis for each angle."""
    k = axis / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    s, c = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3)[None] + s * kx[None] + (1 - c) * (kx @ kx)[None]


def class_patterns(num_classes: int, seed: int = 0) -> list[tuple[float, str, str]]:
    """The (tempo, shape, direction) of each class: distinct combinations, seeded order."""
    combos = [(tempo, shape[0], direction[0])
              for tempo, shape, direction in itertools.product(_TEMPOS, _SHAPES, _DIRECTIONS)]
    if num_classes > len(combos):
        raise ConfigError(f"synthetic data supports at most {len(combos)} classes, got {num_classes}",
                          where="num_classes", fix=f"use num_classes <= {len(combos)}")
    order = np.random.default_rng(seed).permutation(len(combos))[:num_classes]
    return [combos[i] for i in order]


def _animate(layout: Layout, rest: np.ndarray, bases: list[int], pattern: tuple[float, str, str],
             frames: int, rng: np.random.Generator, speed_scale: float = 1.0) -> np.ndarray:
    tempo, shape_name, direction_name = pattern
    _, loop, wave = next(sh for sh in _SHAPES if sh[0] == shape_name)
    sign = dict(_DIRECTIONS)[direction_name]
    kids = _children(layout)
    parents = layout.parents()
    root = _root(layout)
    t = np.arange(frames) / max(frames, 1)
    speed = rng.uniform(0.8, 1.25) * speed_scale
    start = rng.uniform(0, 2 * np.pi)
    local = {}
    for i, b in enumerate(bases):
        theta = sign * (2 * np.pi * tempo * speed * t + wave * 2 * np.pi * i / len(bases)) + start
        amp = np.deg2rad(35.0) * rng.uniform(0.7, 1.3)
        limb = rest[kids[b][0]] - rest[b]
        a1 = np.cross(limb, [0.0, 0.0, 1.0])
        a1 = a1 if np.linalg.norm(a1) > 1e-6 else np.array([1.0, 0.0, 0.0])
        a2 = np.cross(limb, a1)
        local[b] = (_axis_rotation(a1, amp * np.sin(theta))
                    @ _axis_rotation(a2, loop * amp * np.sin(theta + np.pi / 2)))
    # Forward kinematics: a joint's offset from its parent turns with every rotation above it.
    world: dict[int, np.ndarray] = {}
    pos = np.zeros((frames, layout.num_joints, 3))
    for v in _walk(kids, root):
        if v != root:
            p = parents[v]
            pos[:, v] = pos[:, p] + world[p] @ (rest[v] - rest[p])
        above = world[parents[v]] if v != root else np.broadcast_to(np.eye(3), (frames, 3, 3))
        world[v] = above @ local[v] if v in local else above
    return pos


def _camera(pos: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    yaw, tilt = np.deg2rad(rng.uniform(-45, 45)), np.deg2rad(rng.uniform(-10, 10))
    ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    rx = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    shift = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.2, 0.2), rng.uniform(2.5, 3.5)])
    return pos @ (rx @ ry).T + shift


# Spread of each subject's body size and speed at subject_effect 1: factors exp(u), u uniform in
# +-these (sizes x0.74..1.35, speeds x0.67..1.49), on top of the per-clip x0.85..1.15 size and
# x0.8..1.25 speed. A fast subject's slow tempo then overlaps a slow subject's fast one.
_SUBJECT_SIZE, _SUBJECT_SPEED = 0.3, 0.4


def subject_traits(subjects: int, effect: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Each subject's (body size, speed) factors; from a generator of their own, so giving clips
    subjects leaves every other random draw of the dataset as it was."""
    rng = np.random.default_rng([seed, 0x5B1EC7])
    size = np.exp(effect * rng.uniform(-_SUBJECT_SIZE, _SUBJECT_SIZE, subjects))
    speed = np.exp(effect * rng.uniform(-_SUBJECT_SPEED, _SUBJECT_SPEED, subjects))
    return size, speed


def synthetic(num_classes: int = 10, num_per_class: int = 30, layout: str | Layout = "ntu25",
              frames: int = 64, seed: int = 0, *, persons: int = 1, channels: int = 3,
              noise: float = 0.01, splits: tuple[float, float, float] = (0.7, 0.15, 0.15),
              subjects: int = 0, subject_effect: float = 1.0) -> SkeletonDataset:
    """Make a labelled dataset of animated skeletons.

    Clip lengths vary around ``frames`` (x0.75..x1.25). ``channels`` is 3 (x, y, z) or 2 (the
    camera's x, y). Each class is split ``splits`` into ``train``/``val``/``test``.
    With ``persons=2`` a second person stands beside the first, swaying slowly whatever the class.

    ``subjects=S`` (0, the default, makes the dataset it always made): clip k of each class is
    performed by subject k mod S and tagged ``subject``; subject s's body size and speed are
    multiplied by its ``subject_traits`` (spread by ``subject_effect``; 0 leaves the clips as
    without subjects). Splits ``xsub_train`` (subjects 0..ceil(S/2)-1) and ``xsub_test`` (the
    rest) are added: a cross-subject protocol.
    """
    if num_classes < 2:
        raise ConfigError("need at least 2 classes", where="num_classes")
    if num_per_class < 1:
        raise ConfigError("need at least 1 sequence per class", where="num_per_class")
    if channels not in (2, 3):
        raise ConfigError(f"channels must be 2 or 3, got {channels}", where="channels")
    if frames < 1:
        raise ConfigError(f"frames must be >= 1, got {frames}", where="frames")
    if subjects == 1 or subjects < 0:
        raise ConfigError(f"subjects must be 0 (none) or at least 2, got {subjects}", where="subjects",
                          fix="use subjects: 2 or more (half train, half test), or 0")
    if subjects > num_per_class:
        raise ConfigError(f"{subjects} subjects but {num_per_class} clips per class: some subjects would "
                          "have no clips", where="subjects", fix=f"use subjects <= num_per_class ({num_per_class})")
    if subject_effect < 0:
        raise ConfigError(f"subject_effect must be >= 0, got {subject_effect}", where="subject_effect")
    layout = get_layout(layout)
    rest = _rest_pose(layout)
    bases = _limb_bases(layout)
    patterns = class_patterns(num_classes, seed)
    rng = np.random.default_rng(seed)
    sequences: list[SkeletonSequence] = []
    split_ids: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    if subjects:
        split_ids.update(xsub_train=[], xsub_test=[])
        sizes, speeds = subject_traits(subjects, subject_effect, seed)
    n_train = int(round(splits[0] * num_per_class))
    n_val = int(round(splits[1] * num_per_class))
    for label, pattern in enumerate(patterns):
        for k in range(num_per_class):
            subject = k % subjects if subjects else None
            body, pace = (sizes[subject], speeds[subject]) if subject is not None else (1.0, 1.0)
            length = max(1, int(round(frames * rng.uniform(0.75, 1.25))))
            size = rng.uniform(0.85, 1.15) * body
            people = []
            for person in range(persons):
                if person == 0:
                    pos = _animate(layout, rest * size, bases, pattern, length, rng, speed_scale=pace)
                else:
                    idle = (0.5, "loop-sync", "fwd")
                    pos = _animate(layout, rest * rng.uniform(0.85, 1.15), bases, idle, length, rng) * 0.5
                    pos += np.array([0.8, 0.0, 0.0])
                people.append(pos)
            clip = _camera(np.stack(people), rng)
            clip += noise * rng.standard_normal(clip.shape)
            if channels == 2:
                clip = clip[..., :2] / clip[..., 2:3]  # pinhole projection
            sid = f"syn_c{label:02d}_{k:04d}"
            split = "train" if k < n_train else "val" if k < n_train + n_val else "test"
            split_ids[split].append(sid)
            tags: dict[str, int | str] = {"fold": split, "pattern": "-".join(map(str, pattern))}
            if subject is not None:
                tags["subject"] = subject
                split_ids["xsub_train" if subject < (subjects + 1) // 2 else "xsub_test"].append(sid)
            sequences.append(SkeletonSequence(sid, label, clip.astype(np.float32), tags=tags))
    names = [f"{p[1]}-{p[2]}-x{p[0]:g}" for p in patterns]
    return SkeletonDataset(sequences, layout.name, split_ids, names)
