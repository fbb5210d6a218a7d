"""NTU RGB+D 60/120 ``.skeleton`` text files.

Format (one value group per line, CRLF or LF): the frame count; then per frame the body
count; per body a line of 10 body-info values (bodyID first), the joint count (25) and 25
joint lines of 12 values (x y z depthX depthY colorX colorY orientationW X Y Z trackingState).
We keep the camera-space x y z.

A clip may show more bodies than actors (a passer-by, a chair mistaken for a person), so
we keep the ``max_bodies`` most active ones, measured as NTU pre-processing does: the sum
over joints and axes of the variance of the positions over the frames the body is seen in.
Frames where a kept body is absent are zeros, the convention every NTU loader follows.

File names ``SsssCcccPpppRrrrAaaa.skeleton`` give setup, camera, performer (subject),
replication and action; label = action - 1.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np

from skelray.data._types import SkeletonDataset, SkeletonSequence, validate_keypoints
from skelray.data.readers._common import OnError, fixed_layout, handle, list_files
from skelray.errors import DataError

NUM_JOINTS = 25
_NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")

# The standard cross-subject training performers (Shahroudy et al. 2016; Liu et al. 2019).
NTU60_XSUB_TRAIN = frozenset({1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38})
NTU120_XSUB_TRAIN = NTU60_XSUB_TRAIN | frozenset({
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86,
    89, 91, 92, 93, 94, 95, 97, 98, 100, 103,
})


class _Lines:
    """A cursor over the file's lines that knows the 1-based line number for messages."""

    def __init__(self, text: str, where: str) -> None:
        self.lines = text.splitlines()  # handles CRLF, LF and a missing final newline
        self.pos = 0
        self.where = where

    def error(self, problem: str, lineno: int | None = None) -> DataError:
        return DataError(problem, where=f"{self.where}:{lineno or self.pos}",
                         fix="re-download the file, or leave it out with --on-error skip")

    def next(self, expecting: str) -> list[str]:
        if self.pos >= len(self.lines):
            raise self.error(f"file ends early: expected {expecting}", len(self.lines) + 1)
        self.pos += 1
        return self.lines[self.pos - 1].split()

    def integer(self, expecting: str) -> int:
        tokens = self.next(expecting)
        if len(tokens) != 1:
            raise self.error(f"expected {expecting} (one integer), found {len(tokens)} values")
        try:
            return int(tokens[0])
        except ValueError:
            raise self.error(f"expected {expecting}, found '{tokens[0]}'") from None

    def joints(self, count: int) -> np.ndarray:
        """The next ``count`` joint lines as a (count, 12) float array."""
        first = self.pos + 1
        rows = [self.next(f"joint line {j + 1} of {count}") for j in range(count)]
        for j, row in enumerate(rows):
            if len(row) != 12:
                raise self.error(f"joint line has {len(row)} values, expected 12", first + j)
        try:
            values = np.array(rows, dtype=np.float64)
        except ValueError:
            # Only on failure do we pay for finding the exact line and token.
            for j, row in enumerate(rows):
                for tok in row:
                    try:
                        float(tok)
                    except ValueError:
                        raise self.error(f"non-numeric joint value '{tok}'", first + j) from None
            raise
        finite = np.isfinite(values[:, :3]).all(axis=1)
        if not finite.all():
            raise self.error("NaN or infinite joint coordinate", first + int(np.argmin(finite)))
        return values


def parse_name(path: Path) -> dict[str, int]:
    """Setup, camera, subject, replication and action ids from an NTU file name."""
    m = _NAME.search(path.stem)
    if m is None:
        raise DataError("file name does not follow NTU's SsssCcccPpppRrrrAaaa.skeleton pattern",
                        where=str(path), fix="keep the original NTU file names")
    s, c, p, r, a = (int(g) for g in m.groups())
    return {"setup": s, "camera": c, "subject": p, "replication": r, "action": a}


def _parse(text: str, where: str, max_bodies: int) -> np.ndarray:
    lines = _Lines(text, where)
    num_frames = lines.integer("the frame count")
    if num_frames <= 0:
        raise lines.error("has no frames (T = 0)" if num_frames == 0
                          else f"frame count {num_frames} is negative")
    # body key -> (frame indices, joint xyz per frame); keys keep first-seen order
    bodies: dict[str, tuple[list[int], list[np.ndarray]]] = {}
    for t in range(num_frames):
        num_bodies = lines.integer(f"the body count of frame {t + 1}")
        if num_bodies < 0:
            raise lines.error(f"body count {num_bodies} is negative")
        seen_here: set[str] = set()
        for _ in range(num_bodies):
            info = lines.next("a body-info line")
            if len(info) != 10:
                raise lines.error(f"body-info line has {len(info)} values, expected 10")
            key = info[0]
            while key in seen_here:  # a repeated bodyID within one frame is a second body
                key += "+"
            seen_here.add(key)
            count = lines.integer("the joint count")
            if count != NUM_JOINTS:
                raise lines.error(f"body has {count} joints, NTU .skeleton files have {NUM_JOINTS}")
            xyz = lines.joints(count)[:, :3]
            frames, coords = bodies.setdefault(key, ([], []))
            frames.append(t)
            coords.append(xyz)
    for rest in range(lines.pos, len(lines.lines)):
        if lines.lines[rest].strip():
            raise lines.error(f"unexpected content after the last of {num_frames} frames", rest + 1)
    if not bodies:
        raise DataError("no body in any frame", where=where,
                        fix="drop the file (NTU lists such samples as having missing skeletons)")

    def energy(item: tuple[str, tuple[list[int], list[np.ndarray]]]) -> float:
        coords = np.stack(item[1][1])  # (frames, 25, 3)
        return float(coords.var(axis=0).sum())

    # sorted() is stable, so equally active bodies keep their first-seen order
    ranked = sorted(bodies.items(), key=energy, reverse=True)[:max_bodies]
    out = np.zeros((len(ranked), num_frames, NUM_JOINTS, 3), dtype=np.float32)
    for m, (_, (frames, coords)) in enumerate(ranked):
        out[m, frames] = np.stack(coords)
    return out


def read_ntu_file(path: str | Path, *, max_bodies: int = 2) -> SkeletonSequence:
    """One ``.skeleton`` file as a sequence shaped (min(bodies, max_bodies), T, 25, 3)."""
    path = Path(path)
    ids = parse_name(path)
    try:
        text = path.read_bytes().decode("ascii")
    except UnicodeDecodeError as exc:
        raise DataError(f"is not an NTU text file (byte {exc.start} is not ASCII)", where=str(path)) from None
    kp = validate_keypoints(_parse(text, str(path), max_bodies), num_joints=NUM_JOINTS, where=str(path))
    action = ids.pop("action")
    return SkeletonSequence(id=path.stem, label=action - 1, keypoints=kp, tags=dict(ids))


def ntu_splits(seqs: list[SkeletonSequence], variant: Literal["ntu60", "ntu120"]) -> dict[str, list[str]]:
    """Cross-subject and cross-view splits, plus cross-setup for NTU-120 (ids in sequence order)."""
    train_subjects = NTU120_XSUB_TRAIN if variant == "ntu120" else NTU60_XSUB_TRAIN
    rules = {
        "xsub_train": lambda t: t["subject"] in train_subjects,
        "xsub_val": lambda t: t["subject"] not in train_subjects,
        "xview_train": lambda t: t["camera"] in (2, 3),
        "xview_val": lambda t: t["camera"] == 1,
    }
    if variant == "ntu120":
        rules["xset_train"] = lambda t: t["setup"] % 2 == 0
        rules["xset_val"] = lambda t: t["setup"] % 2 == 1
    return {name: [s.id for s in seqs if rule(s.tags)] for name, rule in rules.items()}


def read_ntu(path: str | Path, *, variant: Literal["auto", "ntu60", "ntu120"] = "auto", max_bodies: int = 2,
             layout: str | None = None, on_error: OnError = None) -> SkeletonDataset:
    """Read one ``.skeleton`` file or a folder of them.

    ``variant="auto"`` picks NTU-120 (120 classes, NTU-120 cross-subject list, cross-setup
    split) when any file has an action above 60 or a setup above 17, else NTU-60.
    ``on_error`` (optional) receives each bad file's ``DataError`` instead of raising it;
    the file is then left out.
    """
    layout_name = fixed_layout(layout, "ntu25", NUM_JOINTS, "NTU .skeleton")
    seqs: list[SkeletonSequence] = []
    for f in list_files(path, ".skeleton", "NTU .skeleton"):
        try:
            seqs.append(read_ntu_file(f, max_bodies=max_bodies))
        except DataError as exc:
            handle(exc, on_error)
    if variant == "auto":
        big = any(s.label >= 60 or int(s.tags["setup"]) > 17 for s in seqs)
        variant = "ntu120" if big else "ntu60"
    num_classes = 120 if variant == "ntu120" else 60
    # NTU ships no machine-readable class names; the action codes are what papers cite.
    class_names = [f"A{a:03d}" for a in range(1, num_classes + 1)]
    kept = []
    for s in seqs:
        if s.label < num_classes:
            kept.append(s)
        else:
            handle(DataError(f"action A{s.label + 1:03d} is outside {variant}", where=s.id,
                             fix="use variant='ntu120' or 'auto'"), on_error)
    seqs = kept
    return SkeletonDataset(seqs, layout_name, ntu_splits(seqs, variant), class_names)
