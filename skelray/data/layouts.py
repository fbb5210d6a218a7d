"""Skeleton layouts: joint names, edges and centre joint, looked up by name.

Edges are stored as ``(child, parent)`` pairs, 0-based, pointing *inward* towards the
root of the skeleton tree. The centre joint is the one pre-normalisation subtracts.
Users add their own layouts from a small YAML or JSON file (see ``load_layout``).

A layout's *definition* (``Layout.to_dict``) travels with everything trained on it: a store's
metadata, a trial's ``trial.json`` and a bundle's manifest. Whoever reads one of those makes
the layout known in its own process with ``adopt_layout``, so a user's layout needs no file
and no registration where a trial trains, an export runs or a server answers.

A layout fixes the *order* of the joints; data in another order trains on scrambled graphs.
Known orders (``skelray.data.quality`` checks an order from bone lengths on 3D data):

- ``ntu25``: the Kinect v2 SDK's joint order, which NTU RGB+D 60/120 ``.skeleton`` files use
  (the ``ntu`` reader keeps the file's order).
- ``kinect_v1_20``: the Kinect v1 SDK's joint order, which NW-UCLA's JSON files use as the
  ``ucla`` reader reads them (on the 1482 of its 1484 clips the check measures, left/right
  bones differ by 0.12 mean bone lengths at worst; over 1.0 with the joints permuted).
  Other Kinect v1 datasets may list their 20 joints in another order: check with
  ``skelray data info`` and fix it with ``skelray data convert --reorder``.
- ``coco17`` and ``openpose18``: the COCO and OpenPose (COCO-18) keypoint orders, as their
  names list; 2D, so not checked from bone lengths.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skelray.config import LAYOUT_FILE_SUFFIXES, did_you_mean
from skelray.errors import LayoutError


@dataclass(frozen=True)
class Layout:
    """One skeleton definition; immutable and hashable so it can key caches."""

    name: str
    joints: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]  # (child, parent), inward
    center: int
    # Joints used by rotation alignment: the z axis from align_z[0] to align_z[1], the x axis
    # from align_x[0] to align_x[1]. None for layouts where alignment makes no sense (2D).
    align_z: tuple[int, int] | None = None
    align_x: tuple[int, int] | None = None
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        where = f"layout '{self.name}'"
        v = len(self.joints)
        if v == 0:
            raise LayoutError("has no joints", where=where, fix="list the joint names under 'joints'")
        if len(set(self.joints)) != v:
            raise LayoutError("joint names repeat", where=where, fix="give every joint a unique name")
        if not 0 <= self.center < v:
            raise LayoutError(
                f"centre joint {self.center} is outside 0..{v - 1}", where=where,
                fix="set 'center' to a joint index or name",
            )
        for i, (a, b) in enumerate(self.edges):
            if not (0 <= a < v and 0 <= b < v):
                raise LayoutError(
                    f"edge {i} ({a}, {b}) names a joint outside 0..{v - 1}", where=where,
                    fix="use 0-based joint indices or joint names",
                )
            if a == b:
                raise LayoutError(f"edge {i} is a self-loop ({a}, {a})", where=where,
                                  fix="remove it; self-links are added by the graph builders")
        for pair_name in ("align_z", "align_x"):
            pair = getattr(self, pair_name)
            if pair is not None and not all(0 <= j < v for j in pair):
                raise LayoutError(f"{pair_name} {pair} names a joint outside 0..{v - 1}", where=where)

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def to_dict(self) -> dict:
        """The layout as plain JSON/YAML data, the form ``layout_from_dict`` reads back:
        ``{name, joints, edges, center[, align_z, align_x, description]}`` with edges as
        ``[child, parent]`` index pairs; the optional keys only when set."""
        out: dict = {"name": self.name, "joints": list(self.joints), "edges": [list(e) for e in self.edges],
                     "center": self.center}
        for key in ("align_z", "align_x"):
            if getattr(self, key) is not None:
                out[key] = list(getattr(self, key))
        if self.description:
            out["description"] = self.description
        return out

    def mirror(self) -> tuple[int, ...]:
        """The joint permutation of a left-right mirror: ``left_x`` <-> ``right_x`` (by name;
        ``left``/``right`` may be any ``_``-separated word), every other joint onto itself.

        Together with negating the x coordinate this turns a skeleton into its mirror image.
        Raises when a joint has no partner or when the bones are not symmetric (then the
        mirror of a bone stream would not be a bone stream of the mirrored skeleton).
        """
        return _mirror_permutation(self)

    def parents(self) -> list[int]:
        """Parent of every joint in the edge tree; a root is its own parent.

        Raises if a joint has two parents, because then a bone is not defined.
        """
        parent = list(range(self.num_joints))
        seen: set[int] = set()
        for child, par in self.edges:
            if child in seen:
                raise LayoutError(
                    f"joint {child} ({self.joints[child]}) is the child of two edges, so its bone is ambiguous",
                    where=f"layout '{self.name}'", fix="list each joint as a child (first index) at most once",
                )
            seen.add(child)
            parent[child] = par
        return parent


@functools.cache  # the training pipeline asks once per clip
def _mirror_permutation(layout: Layout) -> tuple[int, ...]:
    where = f"layout '{layout.name}'"
    index = {j: i for i, j in enumerate(layout.joints)}
    swap = {"left": "right", "right": "left", "l": "r", "r": "l"}
    perm = []
    for joint in layout.joints:
        words = joint.split("_")
        partner = "_".join(swap.get(w, w) for w in words)
        if partner not in index:
            raise LayoutError(f"joint '{joint}' has no mirror partner '{partner}'", where=where,
                              fix="name paired joints left_*/right_* (or l_*/r_*), or do not mirror")
        perm.append(index[partner])
    if not any(p != i for i, p in enumerate(perm)):
        raise LayoutError("no left/right joint pairs to swap", where=where,
                          fix="name paired joints left_*/right_* (or l_*/r_*), or do not mirror")
    edges = {tuple(e) for e in layout.edges}
    for a, b in layout.edges:
        if (perm[a], perm[b]) not in edges:
            raise LayoutError(f"edge ({layout.joints[a]}, {layout.joints[b]}) has no mirror edge "
                              f"({layout.joints[perm[a]]}, {layout.joints[perm[b]]})", where=where,
                              fix="add the mirrored edge so both sides have the same bones")
    return tuple(perm)


def _layout(name: str, joints: str, edges: list[tuple[int, int]], center: int,
            align_z: tuple[int, int] | None = None, align_x: tuple[int, int] | None = None,
            description: str = "") -> Layout:
    return Layout(name, tuple(joints.split()), tuple(edges), center, align_z, align_x, description)


_KINECT_V1 = (
    "hip_center spine shoulder_center head left_shoulder left_elbow left_wrist left_hand "
    "right_shoulder right_elbow right_wrist right_hand left_hip left_knee left_ankle left_foot "
    "right_hip right_knee right_ankle right_foot"
)

_BUILTIN: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        _layout(
            "ntu25",
            "spine_base spine_mid neck head left_shoulder left_elbow left_wrist left_hand "
            "right_shoulder right_elbow right_wrist right_hand left_hip left_knee left_ankle "
            "left_foot right_hip right_knee right_ankle right_foot spine_shoulder "
            "left_hand_tip left_thumb right_hand_tip right_thumb",
            [(0, 1), (1, 20), (2, 20), (3, 2), (4, 20), (5, 4), (6, 5), (7, 6), (8, 20), (9, 8),
             (10, 9), (11, 10), (12, 0), (13, 12), (14, 13), (15, 14), (16, 0), (17, 16),
             (18, 17), (19, 18), (21, 7), (22, 7), (23, 11), (24, 11)],
            center=1, align_z=(0, 1), align_x=(8, 4),
            description="NTU RGB+D (Kinect v2), 25 joints",
        ),
        _layout(
            "kinect_v1_20",
            _KINECT_V1,
            [(0, 1), (1, 2), (3, 2), (4, 2), (5, 4), (6, 5), (7, 6), (8, 2), (9, 8), (10, 9),
             (11, 10), (12, 0), (13, 12), (14, 13), (15, 14), (16, 0), (17, 16), (18, 17), (19, 18)],
            center=1, align_z=(0, 1), align_x=(8, 4),
            description="Kinect v1 SDK order, 20 joints (NW-UCLA as the ucla reader reads it)",
        ),
        _layout(
            "openpose18",
            "nose neck right_shoulder right_elbow right_wrist left_shoulder left_elbow left_wrist "
            "right_hip right_knee right_ankle left_hip left_knee left_ankle right_eye left_eye "
            "right_ear left_ear",
            [(4, 3), (3, 2), (7, 6), (6, 5), (13, 12), (12, 11), (10, 9), (9, 8), (11, 5), (8, 2),
             (5, 1), (2, 1), (0, 1), (15, 0), (14, 0), (17, 15), (16, 14)],
            center=1, description="OpenPose 18 keypoints (Kinetics-skeleton)",
        ),
        _layout(
            "coco17",
            "nose left_eye right_eye left_ear right_ear left_shoulder right_shoulder left_elbow "
            "right_elbow left_wrist right_wrist left_hip right_hip left_knee right_knee "
            "left_ankle right_ankle",
            [(15, 13), (13, 11), (16, 14), (14, 12), (11, 5), (12, 6), (9, 7), (7, 5), (10, 8),
             (8, 6), (5, 0), (6, 0), (1, 0), (3, 1), (2, 0), (4, 2)],
            center=0, description="COCO 17 keypoints (2D HRNet skeletons, FineGYM)",
        ),
        _layout(
            "hand21",
            "wrist thumb_cmc thumb_mcp thumb_ip thumb_tip index_mcp index_pip index_dip index_tip "
            "middle_mcp middle_pip middle_dip middle_tip ring_mcp ring_pip ring_dip ring_tip "
            "little_mcp little_pip little_dip little_tip",
            [(1, 0), (2, 1), (3, 2), (4, 3), (5, 0), (6, 5), (7, 6), (8, 7), (9, 0), (10, 9),
             (11, 10), (12, 11), (13, 0), (14, 13), (15, 14), (16, 15), (17, 0), (18, 17),
             (19, 18), (20, 19)],
            center=0, align_z=(0, 9), align_x=(17, 5),
            description="21-joint hand (first-person hand actions)",
        ),
    )
}

_registry: dict[str, Layout] = dict(_BUILTIN)


def list_layouts() -> list[str]:
    return sorted(_registry)


def register_layout(layout: Layout, *, overwrite: bool = False) -> Layout:
    if layout.name in _registry and not overwrite:
        raise LayoutError(f"a layout named '{layout.name}' exists already",
                          fix="pick another name or pass overwrite=True")
    _registry[layout.name] = layout
    return layout


def get_layout(name: str | Layout) -> Layout:
    """Look a layout up by name, or load it from a ``.yaml``/``.json`` path."""
    if isinstance(name, Layout):
        return name
    if name in _registry:
        return _registry[name]
    if name.endswith(LAYOUT_FILE_SUFFIXES):
        return load_layout(name)
    import difflib

    close = difflib.get_close_matches(name, _registry, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise LayoutError(
        f"unknown layout '{name}'",
        fix=f"{hint}choose one of {', '.join(list_layouts())}, or give a layout YAML/JSON file",
    )


def _joint_index(value: object, joints: tuple[str, ...], where: str) -> int:
    if isinstance(value, bool):
        raise LayoutError(f"{value!r} is not a joint", where=where)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value in joints:
        return joints.index(value)
    raise LayoutError(f"{value!r} is neither a joint index nor a joint name", where=where,
                      fix=f"use 0..{len(joints) - 1} or one of the names in 'joints'")


def layout_from_dict(spec: dict, *, source: str = "layout") -> Layout:
    """Build a layout from ``{name, joints, edges, center[, align_z, align_x]}``.

    ``edges`` are ``[child, parent]`` pairs by index or joint name.
    """
    if not isinstance(spec, dict):
        raise LayoutError("must be a mapping with name, joints, edges and center", where=source)
    known = {"name", "joints", "edges", "center", "align_z", "align_x", "description"}
    for key in spec:
        if key not in known:
            raise LayoutError(f"unknown key '{key}'", where=source, fix=f"use only {sorted(known)}")
    for key in ("name", "joints", "edges", "center"):
        if key not in spec:
            raise LayoutError(f"missing '{key}'", where=source)
    joints = spec["joints"]
    if not isinstance(joints, list) or not all(isinstance(j, str) for j in joints):
        raise LayoutError("'joints' must be a list of names", where=f"{source}.joints")
    joints_t = tuple(joints)
    edges = []
    for i, edge in enumerate(spec["edges"] or []):
        where = f"{source}.edges[{i}]"
        if not isinstance(edge, (list, tuple)) or len(edge) != 2:
            raise LayoutError("must be a [child, parent] pair", where=where)
        edges.append((_joint_index(edge[0], joints_t, where), _joint_index(edge[1], joints_t, where)))
    center = _joint_index(spec["center"], joints_t, f"{source}.center")
    align = {}
    for key in ("align_z", "align_x"):
        if spec.get(key) is not None:
            pair = spec[key]
            align[key] = (_joint_index(pair[0], joints_t, f"{source}.{key}"),
                          _joint_index(pair[1], joints_t, f"{source}.{key}"))
    return Layout(str(spec["name"]), joints_t, tuple(edges), center,
                  align.get("align_z"), align.get("align_x"), str(spec.get("description", "")))


def adopt_layout(spec: Mapping[str, Any] | Layout, *, source: str = "layout") -> Layout:
    """Make the layout ``spec`` defines (a ``to_dict`` mapping, or a ``Layout``) known by its name
    in this process, and return it: a store, a trial record or a bundle carries the definition
    of its layout, and whoever reads it calls this. A layout of the same name that differs
    (joints, edges, centre or alignment) is an error naming ``source``; never a silent swap."""
    layout = spec if isinstance(spec, Layout) else layout_from_dict(dict(spec), source=source)
    known = _registry.get(layout.name)
    if known is None:
        _registry[layout.name] = layout
        return layout
    if known != layout:
        raise LayoutError(f"defines layout '{layout.name}', but a different layout of that name is known here",
                          where=source, fix="give one of the two layouts another 'name', then convert "
                                            "(or train) again with it")
    return known


def joint_order(spec: str | Sequence[str | int], layout: Layout, *, where: str = "--reorder") -> tuple[int, ...]:
    """The file's joints as ``layout`` indices, in the file's order: ``spec`` lists, for each
    joint of the file in turn, the layout joint it is, by name or 0-based index (a string is
    split at commas or spaces). Every layout joint must appear exactly once.

    ``keypoints[..., order, :] = file_keypoints`` puts the data in the layout's order."""
    items: list[str | int] = list(spec.replace(",", " ").split()) if isinstance(spec, str) else list(spec)
    items = [int(x) if isinstance(x, str) and x.lstrip("-").isdigit() else x for x in items]
    v = layout.num_joints
    if len(items) != v:
        raise LayoutError(f"lists {len(items)} joints, layout '{layout.name}' has {v}", where=where,
                          fix=f"name each of the file's {v} joints once, in the file's order")
    order = []
    for item in items:
        if isinstance(item, str) and item not in layout.joints:
            close = did_you_mean(item, layout.joints)
            hint = f"did you mean '{close}'? " if close else ""
            raise LayoutError(f"'{item}' is not a joint of layout '{layout.name}'", where=where,
                              fix=f"{hint}use the layout's joint names or indices 0..{v - 1}")
        index = _joint_index(item, layout.joints, where)
        if not 0 <= index < v:
            raise LayoutError(f"joint index {index} is outside 0..{v - 1}", where=where)
        order.append(index)
    repeated = sorted({layout.joints[i] for i in order if order.count(i) > 1})
    if repeated:
        missing = [j for i, j in enumerate(layout.joints) if i not in order]
        raise LayoutError(f"lists {', '.join(repeated)} more than once and {', '.join(missing)} not at all",
                          where=where, fix="name every joint of the layout exactly once")
    return tuple(order)


def load_layout(path: str | Path, *, register: bool = True) -> Layout:
    """Read a layout from YAML or JSON and (by default) register it under its name."""
    path = Path(path)
    if not path.is_file():
        raise LayoutError(f"layout file {path} does not exist", fix="check the path")
    text = path.read_text()
    if path.suffix == ".json":
        spec = json.loads(text)
    else:
        import yaml

        spec = yaml.safe_load(text)
    layout = layout_from_dict(spec, source=str(path))
    return adopt_layout(layout, source=str(path)) if register else layout
