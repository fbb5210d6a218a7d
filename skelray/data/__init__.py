"""Skeleton data: layouts and graphs, readers, the Arrow IPC store, transforms, synthetic data."""

from __future__ import annotations

from skelray.data._types import SkeletonDataset, SkeletonSequence, validate_keypoints
from skelray.data.convert import ConvertReport, convert_to_store
from skelray.data.graph import (
    bone_pairs,
    hop_distance,
    hop_partition,
    normalize_columns,
    spatial_partition,
    undirected_adjacency,
)
from skelray.data.layouts import (
    Layout,
    get_layout,
    layout_from_dict,
    list_layouts,
    load_layout,
    register_layout,
)
from skelray.data.readers import read_npz, read_ntu, read_pyskl, read_ucla, write_npz, write_pyskl
from skelray.data.store import SkeletonStore, open_store, write_store
from skelray.data.synthetic import synthetic
from skelray.data.transforms import STREAMS, Preprocess

__all__ = [
    "STREAMS",
    "ConvertReport",
    "Layout",
    "Preprocess",
    "SkeletonDataset",
    "SkeletonSequence",
    "SkeletonStore",
    "bone_pairs",
    "convert_to_store",
    "get_layout",
    "hop_distance",
    "hop_partition",
    "layout_from_dict",
    "list_layouts",
    "load_layout",
    "normalize_columns",
    "open_store",
    "read_npz",
    "read_ntu",
    "read_pyskl",
    "read_ucla",
    "register_layout",
    "spatial_partition",
    "synthetic",
    "undirected_adjacency",
    "validate_keypoints",
    "write_npz",
    "write_pyskl",
    "write_store",
]
