"""A plain NumPy ``.npz`` format for users' own skeleton data.

Every array is a plain numeric or fixed-width string array, so files load with
``np.load(path, allow_pickle=False)``, which is how we read them: no pickle, ever.
Sequences differ in length and person count, so their frames are concatenated rather than
padded to a common shape (padding would waste space and need a mask):

=====================  ==========================  ========================================
key                    dtype, shape                meaning
=====================  ==========================  ========================================
``keypoints``          float32 ``(F, V, C)``       every sequence's ``M * T`` frames, one
                                                   after another, person-major
``shapes``             int64 ``(N, 2)``            ``M, T`` per sequence; sequence ``i`` is
                                                   rows ``o[i]:o[i+1]`` of ``keypoints``,
                                                   ``o = [0, *cumsum(M * T)]``, reshaped to
                                                   ``(M, T, V, C)``
``labels``             int64 ``(N,)``              class index per sequence
``ids``                str ``(N,)``                unique id per sequence
``layout``             str ``()``                  layout name (e.g. ``ntu25``)
``class_names``        str ``(K,)``, optional      one name per class
``keypoint_score``     float32 ``(F, V)``, opt.    per-joint confidence, same rows as keypoints
``split.<name>``       str ``(n,)``, optional      ids in split ``<name>``
``tag.<name>``         int64 or str ``(N,)``, opt  one tag value per sequence (subject, view)
=====================  ==========================  ========================================

A dataset may also be a folder of such files (one per subject, say): every ``.npz`` directly
in it is read, in name order, and merged. The files must agree on the layout and, where they
have them, on ``class_names``; ids must be unique across the files; a split's ids are
gathered from every file that names the split.

To build one from your own arrays ``clips`` (a list of ``(M, T, V, C)`` arrays)::

    np.savez(path, keypoints=np.concatenate([c.reshape(-1, *c.shape[2:]) for c in clips]),
             shapes=np.array([c.shape[:2] for c in clips]), labels=labels, ids=np.array(ids),
             layout=np.array("ntu25"), **{"split.train": np.array(train_ids)})
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from skelray.data._types import SkeletonDataset, SkeletonSequence, validate_keypoints
from skelray.data.layouts import get_layout
from skelray.data.readers._common import OnError, handle, joints_of, known_splits, list_files
from skelray.errors import DataError

_REQUIRED = ("keypoints", "shapes", "labels", "ids")


def _load(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError("npz file does not exist", where=str(path), fix="check the path")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError("holds an object array, which would need pickle to load", where=str(path),
                            fix="save ids, names and splits as str arrays (np.array(list_of_str))") from None
        raise DataError(f"is not a readable .npz file ({exc})", where=str(path)) from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"is not a readable .npz file ({exc})", where=str(path)) from None


def _check(arrays: dict[str, np.ndarray], path: Path) -> tuple[np.ndarray, np.ndarray]:
    where = str(path)
    for key in _REQUIRED:
        if key not in arrays:
            raise DataError(f"has no '{key}' array", where=where,
                            fix="see skelray.data.readers.npz for the format")
    kp, shapes = arrays["keypoints"], arrays["shapes"]
    if kp.ndim != 3 or kp.dtype.kind not in "fiu":
        raise DataError(f"'keypoints' is {kp.dtype} {kp.shape}, expected float (frames, V, C)", where=where)
    if shapes.ndim != 2 or shapes.shape[1] != 2 or shapes.dtype.kind not in "iu" or (shapes < 0).any():
        raise DataError(f"'shapes' is {shapes.dtype} {shapes.shape}, expected non-negative int (N, 2)",
                        where=where)
    n = len(shapes)
    for key in ("labels", "ids"):
        if arrays[key].shape != (n,):
            raise DataError(f"'{key}' has shape {arrays[key].shape}, expected ({n},) to match 'shapes'",
                            where=where)
    if arrays["labels"].dtype.kind not in "iu":
        raise DataError(f"'labels' has dtype {arrays['labels'].dtype}, expected integers", where=where)
    if arrays["ids"].dtype.kind != "U":
        raise DataError(f"'ids' has dtype {arrays['ids'].dtype}, expected strings", where=where)
    for key, arr in arrays.items():
        if key.startswith("tag.") and arr.shape != (n,):
            raise DataError(f"'{key}' has shape {arr.shape}, expected ({n},)", where=where)
        if key.startswith(("split.", "class_names")) and (arr.ndim != 1 or arr.dtype.kind != "U"):
            raise DataError(f"'{key}' is {arr.dtype} {arr.shape}, expected a 1-D string array", where=where)
    offsets = np.concatenate([[0], np.cumsum(shapes[:, 0].astype(np.int64) * shapes[:, 1])])
    if offsets[-1] != len(kp):
        raise DataError(f"'shapes' accounts for {offsets[-1]} frame rows but 'keypoints' has {len(kp)}",
                        where=where)
    score = arrays.get("keypoint_score")
    if score is not None and score.shape != kp.shape[:2]:
        raise DataError(f"'keypoint_score' has shape {score.shape}, expected {kp.shape[:2]}", where=where)
    return offsets, arrays["ids"]


def read_npz(path: str | Path, *, layout: str | None = None, on_error: OnError = None) -> SkeletonDataset:
    """Read the ``.npz`` format above: one file, or a folder of them (merged). ``layout``
    overrides the files' ``layout`` entries.

    ``on_error`` (optional) receives each bad sequence's ``DataError`` instead of raising it;
    the sequence is then left out. Problems of a single file always raise; in a folder, a bad
    file goes to ``on_error`` too (and is left out), but files that disagree always raise.
    """
    path = Path(path)
    if path.is_file():
        return _read_file(path, layout, on_error)
    files = list_files(path, ".npz", "npz")
    parts = []
    for f in files:
        try:
            parts.append((f, _read_file(f, layout, on_error)))
        except DataError as exc:
            handle(exc, on_error)
    if not parts:
        raise DataError(f"none of its {len(files)} .npz files could be read", where=str(path))
    return _merge(parts)


def _merge(parts: list[tuple[Path, SkeletonDataset]]) -> SkeletonDataset:
    """One dataset from several files' (see the module docstring for what they must agree on)."""
    first_file, first = parts[0]
    names, names_from = None, first_file
    seen: dict[str, Path] = {}
    seqs: list[SkeletonSequence] = []
    splits: dict[str, list[str]] = {}
    for f, ds in parts:
        if ds.layout != first.layout:
            raise DataError(f"has layout '{ds.layout}', {first_file.name} has '{first.layout}'", where=str(f),
                            fix="convert the files of each layout separately, or pass --layout")
        if ds.class_names is not None:
            if names is None:
                names, names_from = ds.class_names, f
            elif ds.class_names != names:
                raise DataError(f"its class_names differ from those of {names_from.name}", where=str(f),
                                fix="give every file the same class_names (or none)")
        for s in ds.sequences:
            if s.id in seen:
                raise DataError(f"id '{s.id}' is also in {seen[s.id].name}", where=str(f),
                                fix="give every sequence an id that is unique across the files")
            seen[s.id] = f
        seqs += ds.sequences
        for name, ids in ds.splits.items():
            splits.setdefault(name, []).extend(ids)
    return SkeletonDataset(seqs, first.layout, splits, names)


def _read_file(path: Path, layout: str | None, on_error: OnError) -> SkeletonDataset:
    arrays = _load(path)
    offsets, ids = _check(arrays, path)
    if layout is None:
        if "layout" not in arrays:
            raise DataError("has no 'layout' entry", where=str(path),
                            fix="pass --layout or save layout=np.array(NAME)")
        layout = str(arrays["layout"])
    layout = get_layout(layout).name
    num_joints = joints_of(layout)
    kp_all, score_all = arrays["keypoints"], arrays.get("keypoint_score")
    seqs: list[SkeletonSequence] = []
    for i, (m, t) in enumerate(arrays["shapes"].tolist()):
        where = f"{path} sequence {i} ('{ids[i]}')"
        rows = slice(offsets[i], offsets[i + 1])
        try:
            kp = validate_keypoints(kp_all[rows].reshape(m, t, *kp_all.shape[1:]), num_joints=num_joints,
                                    where=where)
            score = None if score_all is None else score_all[rows].reshape(m, t, -1)
            if score is not None and not np.isfinite(score).all():
                raise DataError("keypoint_score has a NaN or infinite value", where=where)
            if arrays["labels"][i] < 0:
                raise DataError(f"label {arrays['labels'][i]} is negative", where=where)
            tags = {key[4:]: arr[i].item() for key, arr in arrays.items() if key.startswith("tag.")}
            seqs.append(SkeletonSequence(id=str(ids[i]), label=int(arrays["labels"][i]), keypoints=kp,
                                         tags=tags, keypoint_score=score))
        except DataError as exc:
            handle(exc, on_error)
    if len({s.id for s in seqs}) != len(seqs):
        raise DataError("'ids' repeat", where=str(path), fix="give every sequence a unique id")
    raw = {key[6:]: arr.tolist() for key, arr in arrays.items() if key.startswith("split.")}
    splits = known_splits(raw, {s.id for s in seqs}, str(path), on_error)
    names = arrays.get("class_names")
    class_names = [str(n) for n in names.tolist()] if names is not None else None
    return SkeletonDataset(seqs, layout, splits, class_names)


def write_npz(dataset: SkeletonDataset, path: str | Path, *, compress: bool = False) -> Path:
    """Write ``dataset`` in the ``.npz`` format above (tags must be present on every sequence)."""
    path = Path(path)
    seqs = dataset.sequences
    if not seqs:
        raise DataError("has no sequences to write", where=str(path))
    tag_keys = set(seqs[0].tags)
    for s in seqs:
        if set(s.tags) != tag_keys:
            raise DataError(f"has tags {sorted(s.tags)} but the first sequence has {sorted(tag_keys)}",
                            where=s.id,
                            fix="give every sequence the same tags (the npz format has one array per tag)")
    with_score = [s.keypoint_score is not None for s in seqs]
    if any(with_score) and not all(with_score):
        raise DataError("some sequences have keypoint_score and some do not", where=str(path))
    arrays: dict[str, np.ndarray] = {
        "keypoints": np.concatenate([s.keypoints.reshape(-1, *s.keypoints.shape[2:]) for s in seqs]),
        "shapes": np.array([s.keypoints.shape[:2] for s in seqs], dtype=np.int64),
        "labels": np.array([s.label for s in seqs], dtype=np.int64),
        "ids": np.array([s.id for s in seqs], dtype=str),
        "layout": np.array(dataset.layout),
    }
    if all(with_score):
        arrays["keypoint_score"] = np.concatenate([s.keypoint_score.reshape(-1, s.keypoint_score.shape[2])
                                                   for s in seqs if s.keypoint_score is not None])
    if dataset.class_names is not None:
        arrays["class_names"] = np.array(dataset.class_names, dtype=str)
    for name, ids in dataset.splits.items():
        arrays[f"split.{name}"] = np.array(list(ids), dtype=str)
    for key in sorted(tag_keys):
        values = [s.tags[key] for s in seqs]
        kinds = {type(v) for v in values}
        if kinds not in ({int}, {str}):
            raise DataError(f"tag '{key}' mixes types {sorted(k.__name__ for k in kinds)}", where=str(path),
                            fix="use only ints or only strings per tag")
        arrays[f"tag.{key}"] = np.array(values, dtype=np.int64 if kinds == {int} else str)
    path.parent.mkdir(parents=True, exist_ok=True)
    # np.savez appends .npz to names without it; write beside and rename so no half file is left.
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npz")
    try:
        (np.savez_compressed if compress else np.savez)(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
