"""Skeleton data: layouts and graphs, readers, the Parquet store, transforms, synthetic data."""

from __future__ import annotations

from skelray.data._types import SkeletonDataset, SkeletonSequence, validate_keypoints
from skelray.data.graph import (
    bone_pairs,
    hop_distance,
    hop_partition,
    normalize_columns,
    spatial_partition,
    undirected_adjacency,
)
from skelray.data.layouts import Layout, get_layout, layout_from_dict, list_layouts, load_layout, register_layout

__all__ = [
    "Layout",
    "SkeletonDataset",
    "SkeletonSequence",
    "bone_pairs",
    "get_layout",
    "hop_distance",
    "hop_partition",
    "layout_from_dict",
    "list_layouts",
    "load_layout",
    "normalize_columns",
    "register_layout",
    "spatial_partition",
    "undirected_adjacency",
    "validate_keypoints",
]
