"""``report``: per-layer and overall sparsity, non-zero parameters, effective MACs."""

from __future__ import annotations

import pytest

from skelray.models import count_params, profile
from skelray.sparsity import compact, is_sparse, report, sparsify

SHAPE = (1, 1, 16, 20, 3)


def test_counts_follow_the_masks(fresh) -> None:
    dense = fresh("stgcn")
    base = report(sparsify(fresh("stgcn"), 0.0), SHAPE)
    model = sparsify(fresh("stgcn"), 0.9)
    r = report(model, SHAPE)
    masked = sum(m.weight.numel() for n, m in dense.named_modules() if n in r["layers"])
    assert set(r["layers"]) == set(base["layers"]) and all(n.startswith("blocks.") for n in r["layers"])
    assert r["overall"] == pytest.approx(0.9, abs=0.005)
    assert min(r["layers"].values()) < 0.9 < max(r["layers"].values())  # one threshold, uneven layers
    assert r["params"] == base["params"] == count_params(dense)  # scores are not deployable parameters
    assert base["nonzero_params"] - r["nonzero_params"] == round(r["overall"] * masked)
    assert base["macs"] == base["effective_macs"] == profile(dense, SHAPE)[1] == r["macs"]
    assert r["effective_macs"] < 0.4 * r["macs"]
    assert r["levels"] == {"sparse_state": pytest.approx(0.9)}


def test_effective_macs_track_what_compaction_achieves(fresh) -> None:
    model = sparsify(fresh("hpigcn_rp"), 0.9, granularity="channel")
    r = report(model, SHAPE)
    compacted = profile(compact(model), SHAPE)[1]
    # Not equal: compaction keeps zero channels a residual sum still needs (costing more), and
    # also shrinks the unmasked graph products of the cut channels (costing less).
    assert r["effective_macs"] < 0.3 * r["macs"] and compacted < 0.3 * r["macs"]
    assert 0.5 < compacted / r["effective_macs"] < 2.0


def test_a_dense_model_reports_nothing_pruned(fresh) -> None:
    model = fresh("stgcn")
    r = report(model, macs=False)
    assert not is_sparse(model)
    assert r["overall"] == 0.0 and r["layers"] == {} and r["nonzero_params"] <= r["params"]
    assert r["macs"] is None
