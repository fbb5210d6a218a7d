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


# -- a layout's definition travels with the data (adopt_layout), and the joint order (issue 19) ----
def _tri(name: str, center: int = 0) -> dict:
    return {"name": name, "joints": ["a", "b", "c"], "edges": [[1, 0], [2, 0]], "center": center}


def test_adopt_layout_makes_a_definition_known_once_and_refuses_a_different_one():
    from skelray.data.layouts import adopt_layout

    adopted = adopt_layout(_tri("adopted3"), source="store x: layout_def")
    assert get_layout("adopted3") is adopted and adopt_layout(adopted.to_dict()) is adopted
    with pytest.raises(LayoutError, match=r"store y: layout_def: defines layout 'adopted3', but a different layout"):
        adopt_layout(_tri("adopted3", center=1), source="store y: layout_def")
    with pytest.raises(LayoutError, match="defines layout 'ntu25', but a different layout"):
        adopt_layout({**_tri("ntu25")}, source="bundle")
    assert adopt_layout(get_layout("ntu25").to_dict()) is get_layout("ntu25")


@pytest.mark.parametrize("spec", ["c, a b", ["c", "a", "b"], [2, 0, "b"], "2,0,1"])
def test_joint_order_reads_names_or_indices_in_the_files_order(spec):
    from skelray.data.layouts import joint_order

    assert joint_order(spec, layout_from_dict(_tri("order3"))) == (2, 0, 1)


def test_a_store_carries_its_layouts_definition_and_older_stores_still_open(tmp_path):
    import pyarrow as pa

    from skelray.data import SkeletonDataset, SkeletonSequence, open_store, write_store
    from skelray.data.layouts import _registry, register_layout
    from skelray.data.store import DATA_FILE
    from skelray.errors import DataError

    custom = register_layout(layout_from_dict(_tri("travels3")))  # as reading a layout file leaves it
    seqs = [SkeletonSequence("s0", 0, np.ones((1, 4, 3, 3), np.float32))]
    write_store(SkeletonDataset(seqs, "travels3"), tmp_path / "s")
    del _registry["travels3"]  # as in another process, which knows only the built-in layouts
    store = open_store(tmp_path / "s")
    assert store.layout == "travels3" and store.layout_spec == custom and get_layout("travels3") == custom
    del _registry["travels3"]

    def without_definition(path, layout: str) -> None:
        # A store as versions before layout_def wrote it.
        table = pa.ipc.open_file(pa.memory_map(str(path / DATA_FILE))).read_all()
        meta = json.loads(table.schema.metadata[b"skelray"])
        meta.pop("layout_def", None)
        meta["layout"] = layout
        table = table.replace_schema_metadata({b"skelray": json.dumps(meta).encode()})
        with pa.OSFile(str(path / DATA_FILE), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
            w.write_table(table)

    old = tmp_path / "old"
    write_store(SkeletonDataset([SkeletonSequence("s0", 0, np.ones((1, 4, 20, 3), np.float32))], "kinect_v1_20"), old)
    without_definition(old, "kinect_v1_20")
    assert open_store(old).layout_spec is get_layout("kinect_v1_20")
    without_definition(old, "lost3")
    with pytest.raises(DataError, match="names layout 'lost3', which is not built in, and was written before"):
        _ = open_store(old).layout_spec
