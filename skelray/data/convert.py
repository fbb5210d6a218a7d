"""Convert a source dataset (NTU, PYSKL, NW-UCLA, npz) into a store, failing or skipping bad files.

``on_error="fail"`` stops at the first bad file or sequence and writes nothing;
``on_error="skip"`` leaves bad ones out and reports each with its reason. Either way an
existing store at the target survives anything that goes wrong (see ``write_store``).

Before writing, the joints can be put in the layout's order (``reorder``, see
``skelray.data.layouts.joint_order``), and the data is looked over (``skelray.data.quality``):
empty clips (every joint zero in every frame) are counted, and left out with ``skip`` (kept,
and reported, with ``fail``: they are not unreadable); clips with many empty frames are
counted; and bone lengths are checked against the layout's edges, which warns when the
joints look out of the layout's order. None of these stops a conversion.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from skelray.config import DEFAULT_LAYOUTS  # the layout a format implies; None: the file says
from skelray.data._types import SkeletonDataset
from skelray.data.layouts import get_layout, joint_order
from skelray.data.quality import BoneCheck, EmptyCount, check_bones, count_empty
from skelray.data.readers import READERS
from skelray.data.store import check_target, write_store
from skelray.errors import ConfigError, DataError

OnErrorMode = Literal["fail", "skip"]


@dataclass
class Skipped:
    """One file or sequence left out, and why."""

    where: str  # relative to the source folder where possible, to keep reports narrow
    problem: str


@dataclass
class ConvertReport:
    out: Path
    num_sequences: int
    splits: dict[str, int]
    skipped: list[Skipped] = field(default_factory=list)
    empty: EmptyCount = field(default_factory=EmptyCount)  # of the clips read, before any was left out
    bones: BoneCheck | None = None  # of the clips written


def _skipped(exc: DataError, src: Path) -> Skipped:
    text = str(exc)
    where = exc.where or ""
    # The message reads "where: problem (fix: ...)"; a skip report wants the problem alone
    # (the fix usually says "skip it", which just happened).
    if where and text.startswith(f"{where}: "):
        text = text[len(where) + 2:]
    if exc.fix and text.endswith(f" (fix: {exc.fix})"):
        text = text[: -len(f" (fix: {exc.fix})")]
    base = f"{src if src.is_dir() else src.parent}{os.sep}"
    return Skipped(where.removeprefix(base), text)


def read_source(src: str | Path, fmt: str, *, layout: str | None = None, on_error: OnErrorMode = "fail",
                skipped: list[Skipped] | None = None) -> SkeletonDataset:
    """Read ``src`` with the reader for ``fmt``; with ``skip``, append each bad item to ``skipped``."""
    if fmt not in READERS:
        raise ConfigError(f"unknown format '{fmt}'", where="--format", fix=f"choose one of {sorted(READERS)}")
    if on_error not in ("fail", "skip"):
        raise ConfigError(f"unknown mode '{on_error}'", where="--on-error", fix="choose fail or skip")
    sink = skipped if skipped is not None else []
    handler = None if on_error == "fail" else (lambda exc: sink.append(_skipped(exc, Path(src))))
    dataset = READERS[fmt](src, layout=layout or DEFAULT_LAYOUTS[fmt], on_error=handler)
    if not dataset.sequences:
        raise DataError(f"no sequence could be read ({len(sink)} problem(s) reported)", where=str(src))
    return dataset


def reorder_joints(dataset: SkeletonDataset, order: tuple[int, ...]) -> SkeletonDataset:
    """``dataset`` with each clip's joints moved to the layout's order: the file's joint ``i``
    becomes layout joint ``order[i]`` (``skelray.data.layouts.joint_order``)."""
    def moved(a: np.ndarray | None) -> np.ndarray | None:
        if a is None:
            return None
        out = np.empty_like(a)
        out[:, :, list(order)] = a
        return out

    seqs = [dataclasses.replace(s, keypoints=moved(s.keypoints), keypoint_score=moved(s.keypoint_score))
            for s in dataset.sequences]
    return dataclasses.replace(dataset, sequences=seqs)


def _drop_empty(dataset: SkeletonDataset, empty: list[str], skipped: list[Skipped]) -> SkeletonDataset:
    gone = set(empty)
    skipped += [Skipped(i, "every frame is empty (all joints zero)") for i in empty]
    seqs = [s for s in dataset.sequences if s.id not in gone]
    if not seqs:
        raise DataError(f"every one of the {len(empty)} clips read is empty (all joints zero)",
                        fix="check the source data")
    splits = {name: [i for i in ids if i not in gone] for name, ids in dataset.splits.items()}
    return dataclasses.replace(dataset, sequences=seqs, splits=splits)


def convert_to_store(src: str | Path, fmt: str, out: str | Path, *, layout: str | None = None,
                     on_error: OnErrorMode = "fail", overwrite: bool = False,
                     reorder: str | Sequence[str | int] | None = None) -> ConvertReport:
    """Read ``src`` as ``fmt`` and write a store at ``out``; ``reorder`` lists the file's
    joints in the file's order, as the layout's joint names or indices (module docstring)."""
    check_target(out, overwrite=overwrite)  # fail before spending minutes reading
    known = layout or DEFAULT_LAYOUTS.get(fmt)
    if reorder is not None and known is not None:
        joint_order(reorder, get_layout(known))  # likewise: a bad --reorder before reading
    skipped: list[Skipped] = []
    dataset = read_source(src, fmt, layout=layout, on_error=on_error, skipped=skipped)
    source = f"{fmt}:{Path(src).resolve()}"
    if reorder is not None:
        order = joint_order(reorder, get_layout(dataset.layout))
        dataset = reorder_joints(dataset, order)
        source += f" (joints reordered from the file's order: {' '.join(map(str, order))})"
    empty = count_empty(dataset.sequences)
    if empty.empty_clips and on_error == "skip":
        dataset = _drop_empty(dataset, empty.empty_clips, skipped)
    bones = check_bones(dataset.sequences, dataset.layout)
    path = write_store(dataset, out, overwrite=overwrite, source=source)
    return ConvertReport(path, len(dataset), {k: len(v) for k, v in dataset.splits.items()}, skipped, empty,
                         bones)
