"""How an ensemble turns its members' logits into a prediction: one definition, used by the
builder on saved validation logits, by an exported bundle in-process, and by the Serve
``Ensemble`` deployment, so the three can never disagree.

The ensemble's logits are the weighted sum of its members' logits (weights >= 0, summing to
one); its probabilities are their softmax.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def weighted_logits(logits: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """``sum_i w_i * logits_i`` for ``(N, classes)`` arrays, in float64 so the order of the sum
    does not change the answer beyond rounding."""
    if len(logits) != len(weights) or not logits:
        raise ValueError(f"need one weight per member: {len(logits)} logits, {len(weights)} weights")
    out = np.zeros(np.shape(logits[0]), dtype=np.float64)
    for x, w in zip(logits, weights):
        out += float(w) * np.asarray(x, dtype=np.float64)
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    if len(labels) == 0:
        return float("nan")
    return float((np.asarray(logits).argmax(axis=1) == np.asarray(labels)).mean())


def nll(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy; the builder's tie-breaker when two ensembles have the same top-1."""
    if len(labels) == 0:
        return float("nan")
    p = softmax(logits)[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.log(np.maximum(p, 1e-12)).mean())


def top_k(probs: np.ndarray, k: int, class_names: Sequence[str]) -> list[list[dict[str, object]]]:
    """Per row, the ``k`` most probable classes, best first, as ``{index, label, probability}``."""
    k = max(1, min(int(k), probs.shape[1]))
    # A stable sort so equal probabilities come out in class order on every machine.
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[{"index": int(c), "label": class_names[c] if c < len(class_names) else str(c),
              "probability": float(row[c])} for c in idx] for row, idx in zip(probs, order)]


def answer(logits: np.ndarray, k: int, class_names: Sequence[str]) -> dict[str, Any]:
    """What a prediction returns: ``{"probabilities": (N, classes), "top_k": [[{index, label,
    probability}]]}`` of ensemble logits (offline ``Bundle.predict`` and both serving graphs)."""
    probs = softmax(logits)
    return {"probabilities": probs, "top_k": top_k(probs, k, class_names)}
