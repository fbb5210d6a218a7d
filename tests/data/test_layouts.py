from __future__ import annotations

import json

import numpy as np
import pytest

from skelray.data import (
    bone_pairs,
    get_layout,
    hop_distance,
    hop_partition,
    layout_from_dict,
    list_layouts,
    load_layout,
    spatial_partition,
)
from skelray.errors import LayoutError

EXPECTED_JOINTS = {"ntu25": 25, "kinect_v1_20": 20, "openpose18": 18, "coco17": 17, "hand21": 21}


def test_builtin_layouts_have_expected_joint_counts():
    assert set(EXPECTED_JOINTS) <= set(list_layouts())
    for name, v in EXPECTED_JOINTS.items():
        layout = get_layout(name)
        assert layout.num_joints == v
        # Every builtin skeleton is one tree: V - 1 edges, each joint a child at most once.
        assert len(layout.edges) == v - 1
        assert len(bone_pairs(layout)) == v


@pytest.mark.parametrize("name", sorted(EXPECTED_JOINTS))
def test_spatial_partition_is_identity_inward_outward(name):
    a = spatial_partition(name)
    v = EXPECTED_JOINTS[name]
    assert a.shape == (3, v, v) and a.dtype == np.float32
    np.testing.assert_array_equal(a[0], np.eye(v))
    # Normalised columns: each joint's outgoing weights sum to 1 (or 0 for a joint with none).
    for k in (1, 2):
        col = a[k].sum(axis=0)
        assert np.all((np.abs(col - 1) < 1e-6) | (col == 0))
    # Outward is the transpose pattern of inward.
    np.testing.assert_array_equal(a[1] > 0, (a[2] > 0).T)


def test_hop_distance_and_partition_on_ntu():
    d = hop_distance("ntu25")
    assert d[3, 2] == 1  # head - neck
    assert d[3, 20] == 2  # head - spine shoulder
    assert np.isfinite(d).all()
    p = hop_partition("ntu25", max_hop=2)
    assert p.shape == (3, 25, 25)
    np.testing.assert_allclose(p.sum(axis=(0, 1)), np.ones(25), rtol=1e-6)


def test_bone_pairs_point_to_parents():
    pairs = dict(bone_pairs("kinect_v1_20"))
    assert pairs[3] == 2  # head -> shoulder centre
    assert pairs[2] == 2  # the root pairs with itself


def test_unknown_layout_suggests_close_name():
    with pytest.raises(LayoutError, match="did you mean 'ntu25'"):
        get_layout("ntu_25")


def test_user_layout_from_yaml_and_json(tmp_path):
    spec = {"name": "tri3", "joints": ["a", "b", "c"], "edges": [["b", "a"], [2, 0]], "center": "a"}
    (tmp_path / "tri.json").write_text(json.dumps(spec))
    layout = load_layout(tmp_path / "tri.json")
    assert layout.edges == ((1, 0), (2, 0)) and layout.center == 0
    assert get_layout("tri3") is layout
    (tmp_path / "bad.yaml").write_text("name: bad\njoints: [a, b]\nedges: [[a, z]]\ncenter: a\n")
    with pytest.raises(LayoutError, match=r"edges\[0\].*'z'"):
        load_layout(tmp_path / "bad.yaml")


def test_layout_with_two_parents_has_no_bones():
    from skelray.data import layout_from_dict

    layout = layout_from_dict({"name": "dag", "joints": ["a", "b", "c"], "edges": [[2, 0], [2, 1]], "center": 0})
    with pytest.raises(LayoutError, match="child of two edges"):
        layout.parents()


@pytest.mark.parametrize("name", ["ntu25", "kinect_v1_20", "openpose18", "coco17"])
def test_mirror_swaps_left_and_right_and_keeps_bones(name):
    layout = get_layout(name)
    perm = layout.mirror()
    assert sorted(perm) == list(range(layout.num_joints))
    assert all(perm[perm[i]] == i for i in range(layout.num_joints))  # mirroring twice is the identity
    for i, joint in enumerate(layout.joints):
        partner = layout.joints[perm[i]]
        if "left" in joint.split("_"):
            assert partner == joint.replace("left", "right")
        elif "right" not in joint.split("_"):
            assert partner == joint
    # Bones map onto bones, so the parent of a mirrored joint is the mirrored parent.
    parents = layout.parents()
    assert all(parents[perm[v]] == perm[parents[v]] for v in range(layout.num_joints))


def test_mirror_refuses_layouts_without_pairs_or_with_lopsided_bones():
    with pytest.raises(LayoutError, match="no left/right joint pairs"):
        get_layout("hand21").mirror()
    names = ["torso", "left_arm", "right_arm", "left_hand"]
    lonely = layout_from_dict({"name": "lonely", "joints": names, "edges": [[1, 0], [2, 0], [3, 1]],
                               "center": 0})
    with pytest.raises(LayoutError, match="'left_hand' has no mirror partner 'right_hand'"):
        lonely.mirror()
    names = ["torso", "l_arm", "r_arm", "l_hand", "r_hand"]
    lopsided = layout_from_dict({"name": "lopsided", "joints": names,
                                 "edges": [[1, 0], [2, 0], [3, 1], [4, 0]], "center": 0})
    with pytest.raises(LayoutError, match=r"edge \(l_hand, l_arm\) has no mirror edge \(r_hand, r_arm\)"):
        lopsided.mirror()


@pytest.mark.parametrize("name", sorted(EXPECTED_JOINTS))
def test_to_dict_round_trips_through_layout_from_dict_and_json(name):
    layout = get_layout(name)
    doc = json.loads(json.dumps(layout.to_dict()))  # plain data: what a manifest or YAML file holds
    back = layout_from_dict(doc, source="round trip")
    assert back == layout and back.description == layout.description
    assert (back.align_z, back.align_x) == (layout.align_z, layout.align_x)


def test_to_dict_leaves_out_what_a_layout_does_not_set():
    plain = layout_from_dict({"name": "pair", "joints": ["a", "b"], "edges": [["b", "a"]], "center": "a"})
    assert plain.to_dict() == {"name": "pair", "joints": ["a", "b"], "edges": [[1, 0]], "center": 0}
    assert layout_from_dict(plain.to_dict()) == plain
