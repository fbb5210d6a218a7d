"""The in-memory form every reader returns and every consumer takes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from skelray.errors import DataError


@dataclass
class SkeletonSequence:
    """One clip: float32 keypoints shaped ``(M persons, T frames, V joints, C channels)``."""

    id: str
    label: int
    keypoints: np.ndarray
    # Split tags parsed from the source: subject, view/camera, setup, replication, ...
    tags: dict[str, int | str] = field(default_factory=dict)
    keypoint_score: np.ndarray | None = None  # (M, T, V), optional

    def __post_init__(self) -> None:
        kp = np.asarray(self.keypoints)
        if kp.ndim != 4:
            raise DataError(f"keypoints must be (M, T, V, C), got shape {kp.shape}", where=self.id)
        if kp.dtype != np.float32:
            kp = kp.astype(np.float32)
        self.keypoints = kp
        if self.keypoint_score is not None:
            score = np.asarray(self.keypoint_score, dtype=np.float32)
            if score.shape != kp.shape[:3]:
                raise DataError(f"keypoint_score shape {score.shape} does not match keypoints {kp.shape[:3]}",
                                where=self.id)
            self.keypoint_score = score

    @property
    def total_frames(self) -> int:
        return int(self.keypoints.shape[1])

    @property
    def num_persons(self) -> int:
        return int(self.keypoints.shape[0])


@dataclass
class SkeletonDataset:
    """A set of sequences with its layout, class names and named splits (name -> ids)."""

    sequences: list[SkeletonSequence]
    layout: str
    splits: dict[str, list[str]] = field(default_factory=dict)
    class_names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def num_classes(self) -> int:
        if self.class_names is not None:
            return len(self.class_names)
        return 1 + max((s.label for s in self.sequences), default=-1)

    def split(self, name: str) -> list[SkeletonSequence]:
        if name not in self.splits:
            raise DataError(f"no split named '{name}'", fix=f"choose one of {sorted(self.splits)}")
        wanted = set(self.splits[name])
        return [s for s in self.sequences if s.id in wanted]


def validate_keypoints(kp: np.ndarray, *, num_joints: int | None, where: str) -> np.ndarray:
    """Check a (M, T, V, C) array for the problems every reader must reject."""
    kp = np.asarray(kp)
    if kp.ndim != 4:
        raise DataError(f"keypoints have shape {kp.shape}, expected (M, T, V, C)", where=where)
    if kp.shape[1] == 0:
        raise DataError("has no frames (T = 0)", where=where, fix="drop the file or re-export it")
    if num_joints is not None and kp.shape[2] != num_joints:
        raise DataError(f"has {kp.shape[2]} joints, the layout has {num_joints}", where=where,
                        fix="pick the layout that matches the data (--layout)")
    if not np.isfinite(kp).all():
        bad = np.argwhere(~np.isfinite(kp))[0]
        raise DataError(f"has a NaN or infinite coordinate at person {bad[0]}, frame {bad[1]}, joint {bad[2]}",
                        where=where, fix="clean the file or convert with --on-error skip")
    return kp.astype(np.float32, copy=False)
