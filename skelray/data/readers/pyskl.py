"""PYSKL annotation pickles, read and written.

A PYSKL file is a pickled dict ``{"split": {name: [frame_dir, ...]}, "annotations": [...]}``
where each annotation has ``frame_dir`` (the id), ``label``, ``total_frames``, ``keypoint``
``[M, T, V, C]`` and optionally ``keypoint_score`` ``[M, T, V]``.

Security: unpickling can run arbitrary code, so **only read PYSKL files you trust**. As a
second line of defence the loader below accepts only plain containers, numbers, strings and
NumPy arrays, and refuses any other class a pickle names. This module is the only place in
skelray that unpickles anything.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np

from skelray.data._types import SkeletonDataset, SkeletonSequence, validate_keypoints
from skelray.data.layouts import get_layout
from skelray.data.readers._common import OnError, handle, joints_of, known_splits
from skelray.errors import DataError

# Keys of a PYSKL annotation that are not tags. Other int/str keys round-trip as tags.
_RESERVED = {"frame_dir", "label", "total_frames", "keypoint", "keypoint_score", "img_shape",
             "original_shape"}
# PYSKL itself stores no layout, so a file's joint count picks one unless the caller names it.
_LAYOUT_BY_JOINTS = {25: "ntu25", 20: "kinect_v1_20", 18: "openpose18", 17: "coco17", 21: "hand21"}
_META_KEY = "skelray"  # extra top-level key we write (layout, class names); PYSKL ignores it

# What a NumPy array, a NumPy scalar or an OrderedDict needs to unpickle, and nothing more.
_ALLOWED = {
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy", "ndarray"), ("numpy", "dtype"),
    ("collections", "OrderedDict"), ("_codecs", "encode"),  # protocol 2 stores bytes via encode
}
for _name in ("Float16DType", "Float32DType", "Float64DType", "Int8DType", "Int16DType", "Int32DType",
              "Int64DType", "UInt8DType", "UInt16DType", "UInt32DType", "UInt64DType", "BoolDType"):
    _ALLOWED.add(("numpy.dtypes", _name))


class _Refused(pickle.UnpicklingError):
    """A pickle named a class outside the allow-list."""


class _DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        # Files written with NumPy 1.x name numpy.core; NumPy 2 moved it to numpy._core.
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core"):]
        if (module, name) not in _ALLOWED:
            raise _Refused(f"refuses to load '{module}.{name}'")
        return super().find_class(module, name)


def _load(path: Path) -> object:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError("PYSKL file does not exist", where=str(path), fix="check the path") from None
    try:
        return _DataOnlyUnpickler(io.BytesIO(data)).load()
    except _Refused as exc:
        raise DataError(f"is not a plain-data PYSKL pickle: {exc}", where=str(path),
                        fix="only NumPy arrays, numbers, strings, lists and dicts are allowed") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError,
            KeyError) as exc:
        raise DataError(f"is not a readable pickle ({type(exc).__name__}: {exc})", where=str(path),
                        fix="check the file is a complete PYSKL annotation file") from None


def _to_sequence(ann: object, where: str, num_joints: int | None) -> SkeletonSequence:
    if not isinstance(ann, dict):
        raise DataError("is not a dict", where=where)
    for key in ("frame_dir", "label", "keypoint"):
        if key not in ann:
            raise DataError(f"has no '{key}'", where=where)
    seq_id = ann["frame_dir"]
    if not isinstance(seq_id, str):
        raise DataError(f"frame_dir {seq_id!r} is not a string", where=where)
    label = ann["label"]
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or label < 0:
        raise DataError(f"label {label!r} is not a non-negative integer", where=where)
    kp = np.asarray(ann["keypoint"])
    if kp.dtype.kind not in "fiu":
        raise DataError(f"keypoint has dtype {kp.dtype}, expected numbers", where=where)
    kp = validate_keypoints(kp, num_joints=num_joints, where=where)
    total = ann.get("total_frames", kp.shape[1])
    if total != kp.shape[1]:
        raise DataError(f"total_frames is {total} but keypoint has {kp.shape[1]} frames", where=where)
    score = ann.get("keypoint_score")
    if score is not None:
        score = np.asarray(score, dtype=np.float32)
        if score.shape != kp.shape[:3]:
            raise DataError(f"keypoint_score has shape {score.shape}, expected {kp.shape[:3]}", where=where)
        if not np.isfinite(score).all():
            raise DataError("keypoint_score has a NaN or infinite value", where=where)
    tags: dict[str, int | str] = {}
    for key, value in ann.items():
        if key in _RESERVED or isinstance(value, bool):
            continue
        if isinstance(value, (int, np.integer)):
            tags[key] = int(value)
        elif isinstance(value, str):
            tags[key] = value
    return SkeletonSequence(id=seq_id, label=int(label), keypoints=kp, tags=tags, keypoint_score=score)


def read_pyskl(path: str | Path, *, layout: str | None = None, on_error: OnError = None) -> SkeletonDataset:
    """Read a PYSKL annotation pickle. **Only read files you trust** (see the module docstring).

    The layout is, in order: ``layout``, the one skelray recorded when it wrote the file, or
    the built-in layout with the file's joint count. ``on_error`` (optional) receives each bad
    annotation's ``DataError`` instead of raising it; the annotation is then left out.
    """
    path = Path(path)
    doc = _load(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
        raise DataError("is not a PYSKL annotation file (no 'annotations' list)", where=str(path))
    meta = doc.get(_META_KEY) if isinstance(doc.get(_META_KEY), dict) else {}
    layout = layout or meta.get("layout")
    if layout is None:
        first = next((a["keypoint"] for a in doc["annotations"] if isinstance(a, dict) and "keypoint" in a),
                     None)
        v = np.shape(first)[2] if first is not None and np.ndim(first) == 4 else None
        if v not in _LAYOUT_BY_JOINTS:
            raise DataError(f"cannot tell the layout from {v} joints", where=str(path),
                            fix="pass --layout (a built-in name or a layout YAML)")
        layout = _LAYOUT_BY_JOINTS[v]
    layout = get_layout(layout).name
    num_joints = joints_of(layout)
    seqs: list[SkeletonSequence] = []
    for i, ann in enumerate(doc["annotations"]):
        name = ann.get("frame_dir") if isinstance(ann, dict) else None
        where = f"{path} annotation {i}" + (f" ('{name}')" if isinstance(name, str) else "")
        try:
            seqs.append(_to_sequence(ann, where, num_joints))
        except DataError as exc:
            handle(exc, on_error)
    known = {s.id for s in seqs}
    if len(known) != len(seqs):
        raise DataError("two annotations share a frame_dir", where=str(path), fix="make frame_dir unique")
    raw_splits = doc.get("split") or {}
    if not isinstance(raw_splits, dict):
        raise DataError("'split' is not a dict of name -> list of frame_dir", where=str(path))
    splits = known_splits(raw_splits, known, str(path), on_error)
    class_names = meta.get("class_names")
    return SkeletonDataset(seqs, layout, splits, list(class_names) if class_names is not None else None)


def write_pyskl(dataset: SkeletonDataset, path: str | Path) -> Path:
    """Write ``dataset`` as a PYSKL annotation pickle (tags become extra annotation keys)."""
    path = Path(path)
    annotations = []
    for s in dataset.sequences:
        clash = _RESERVED & set(s.tags)
        if clash:
            raise DataError(f"tag(s) {sorted(clash)} collide with PYSKL's own keys", where=s.id,
                            fix="rename the tags")
        ann: dict[str, object] = dict(s.tags)
        ann.update(frame_dir=s.id, label=int(s.label), total_frames=s.total_frames, keypoint=s.keypoints)
        if s.keypoint_score is not None:
            ann["keypoint_score"] = s.keypoint_score
        annotations.append(ann)
    doc = {
        "split": {name: list(ids) for name, ids in dataset.splits.items()},
        "annotations": annotations,
        _META_KEY: {"layout": dataset.layout, "class_names": dataset.class_names},
    }
    # Write beside and rename, so an interrupted write never leaves half a pickle at ``path``.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            pickle.dump(doc, fh, protocol=4)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
