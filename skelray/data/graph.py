"""Adjacency builders for graph convolutions over a skeleton layout.

All builders return float32 NumPy arrays shaped ``(K, V, V)`` where ``A[k, i, j]`` is the
weight with which joint ``j`` contributes to joint ``i`` in partition ``k``; a graph conv
computes ``y[..., i] = sum_j x[..., j] * A[k, i, j]``.
"""

from __future__ import annotations

import numpy as np

from skelray.data.layouts import Layout, get_layout


def _edge_matrix(num_joints: int, pairs) -> np.ndarray:
    """``A[dst, src] = 1`` for every ``(src, dst)`` pair."""
    a = np.zeros((num_joints, num_joints), dtype=np.float64)
    for src, dst in pairs:
        a[dst, src] = 1.0
    return a


def normalize_columns(a: np.ndarray) -> np.ndarray:
    """``A D^-1``: each source joint's outgoing weights sum to one (ST-GCN's normalisation)."""
    deg = a.sum(axis=0)
    inv = np.where(deg > 0, 1.0 / np.maximum(deg, 1e-12), 0.0)
    return a * inv[None, :]


def undirected_adjacency(layout: Layout | str) -> np.ndarray:
    """Symmetric 0/1 adjacency without self-links, ``(V, V)``."""
    layout = get_layout(layout)
    a = _edge_matrix(layout.num_joints, layout.edges)
    return np.maximum(a, a.T).astype(np.float32)


def spatial_partition(layout: Layout | str) -> np.ndarray:
    """ST-GCN spatial partition: identity, normalised inward, normalised outward, ``(3, V, V)``."""
    layout = get_layout(layout)
    v = layout.num_joints
    inward = normalize_columns(_edge_matrix(v, layout.edges))
    outward = normalize_columns(_edge_matrix(v, [(p, c) for c, p in layout.edges]))
    return np.stack([np.eye(v), inward, outward]).astype(np.float32)


def hop_distance(layout: Layout | str, max_hop: int | None = None) -> np.ndarray:
    """Shortest path length in edges between every pair of joints; ``inf`` when farther than
    ``max_hop`` (or unreachable)."""
    layout = get_layout(layout)
    v = layout.num_joints
    adj = undirected_adjacency(layout) > 0
    dist = np.full((v, v), np.inf)
    limit = v if max_hop is None else max_hop
    reach = np.eye(v, dtype=bool)
    dist[reach] = 0
    step = np.eye(v, dtype=bool)
    for d in range(1, limit + 1):
        step = (step.astype(np.int64) @ adj.astype(np.int64)) > 0
        new = step & ~reach
        if not new.any():
            break
        dist[new] = d
        reach |= new
    return dist


def hop_partition(layout: Layout | str, max_hop: int = 1, dilation: int = 1) -> np.ndarray:
    """ST-GCN distance partition: one normalised matrix per hop distance
    ``0, dilation, ..., max_hop``, ``(max_hop // dilation + 1, V, V)``."""
    layout = get_layout(layout)
    dist = hop_distance(layout, max_hop)
    reach = (dist <= max_hop).astype(np.float64)
    norm = normalize_columns(reach)
    hops = range(0, max_hop + 1, dilation)
    return np.stack([np.where(dist == h, norm, 0.0) for h in hops]).astype(np.float32)


def bone_pairs(layout: Layout | str) -> list[tuple[int, int]]:
    """``(joint, parent)`` for every joint; a root is paired with itself (zero bone)."""
    layout = get_layout(layout)
    return list(enumerate(layout.parents()))
