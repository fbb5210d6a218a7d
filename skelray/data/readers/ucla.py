"""Northwestern-UCLA Multiview Action3D as JSON files (the layout CTR-GCN's copy uses).

Each file ``aAA_sSS_eEE_vVV.json`` (action, subject, take, camera view) holds
``{"file_name": ..., "skeletons": [T][20][3]}``: one person, Kinect v1 joint order.
Ten actions with ids 1..6, 8, 9, 11, 12 become labels 0..9 in that order. The standard
cross-view protocol trains on views 1 and 2 and tests on view 3.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from skelray.data._types import SkeletonDataset, SkeletonSequence, validate_keypoints
from skelray.data.readers._common import OnError, fixed_layout, handle, list_files
from skelray.errors import DataError

NUM_JOINTS = 20
ACTION_IDS = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12)
CLASS_NAMES = [
    "pick up with one hand",  # a01
    "pick up with two hands",  # a02
    "drop trash",  # a03
    "walk around",  # a04
    "sit down",  # a05
    "stand up",  # a06
    "donning",  # a08
    "doffing",  # a09
    "throw",  # a11
    "carry",  # a12
]
SPLIT_VIEWS = {"xview_train": (1, 2), "xview_test": (3,)}
_NAME = re.compile(r"a(\d+)_s(\d+)_e(\d+)_v(\d+)")


def parse_name(path: Path) -> dict[str, int]:
    m = _NAME.fullmatch(path.stem)
    if m is None:
        raise DataError("file name does not follow NW-UCLA's aAA_sSS_eEE_vVV.json pattern",
                        where=str(path), fix="keep the dataset's file names")
    a, s, e, v = (int(g) for g in m.groups())
    return {"action": a, "subject": s, "take": e, "view": v}


def read_ucla_file(path: str | Path) -> SkeletonSequence:
    """One JSON file as a (1, T, 20, 3) sequence; T = 1 is a valid (if short) clip."""
    path = Path(path)
    where = str(path)
    tags = parse_name(path)
    action = tags.pop("action")
    if action not in ACTION_IDS:
        raise DataError(f"action a{action:02d} is not one of NW-UCLA's {ACTION_IDS}", where=where)
    label = ACTION_IDS.index(action)
    try:
        doc = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise DataError(f"is not valid JSON ({exc.msg})", where=f"{where}:{exc.lineno}") from None
    except UnicodeDecodeError:
        raise DataError("is not UTF-8 JSON text", where=where) from None
    if not isinstance(doc, dict) or "skeletons" not in doc:
        raise DataError("has no 'skeletons' entry", where=where, fix="expected {\"skeletons\": [T][20][3]}")
    # The file's own 1-based label, where present, must agree with the name; a mismatch means
    # a renamed or mislabelled file, which would silently poison training.
    if "label" in doc and doc["label"] != label + 1:
        raise DataError(f"its label {doc['label']!r} disagrees with action a{action:02d} in its name "
                        f"(expected {label + 1})", where=where)
    try:
        arr = np.asarray(doc["skeletons"], dtype=np.float32)
    except (ValueError, TypeError):
        raise DataError("'skeletons' is not a [T][20][3] array of numbers (ragged or non-numeric)",
                        where=where) from None
    if arr.ndim == 1 and arr.size == 0:  # "skeletons": [] is T = 0, which validation names
        arr = arr.reshape(0, NUM_JOINTS, 3)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise DataError(f"'skeletons' has shape {arr.shape}, expected (T, {NUM_JOINTS}, 3)", where=where)
    if arr.shape[1] != NUM_JOINTS:
        raise DataError(f"has {arr.shape[1]} joints per frame, NW-UCLA has {NUM_JOINTS}", where=where)
    kp = validate_keypoints(arr[None], num_joints=NUM_JOINTS, where=where)
    return SkeletonSequence(id=path.stem, label=label, keypoints=kp, tags=tags)


def read_ucla(path: str | Path, *, split: str | None = None, layout: str | None = None,
              on_error: OnError = None) -> SkeletonDataset:
    """Read a NW-UCLA JSON folder (or one file) with the cross-view splits.

    ``split`` ("xview_train" or "xview_test") reads only that split's files, picked by the
    view in the file name before any JSON is parsed. ``on_error`` (optional) receives each bad
    file's ``DataError`` instead of raising it; the file is then left out.
    """
    layout_name = fixed_layout(layout, "kinect_v1_20", NUM_JOINTS, "NW-UCLA")
    if split is not None and split not in SPLIT_VIEWS:
        raise DataError(f"no split named '{split}'", fix=f"choose one of {sorted(SPLIT_VIEWS)}")
    seqs: list[SkeletonSequence] = []
    for f in list_files(path, ".json", "NW-UCLA .json"):
        try:
            if split is not None and parse_name(f)["view"] not in SPLIT_VIEWS[split]:
                continue
            seqs.append(read_ucla_file(f))
        except DataError as exc:
            handle(exc, on_error)
    splits = {name: [s.id for s in seqs if s.tags["view"] in views] for name, views in SPLIT_VIEWS.items()
              if split is None or name == split}
    return SkeletonDataset(seqs, layout_name, splits, list(CLASS_NAMES))
