"""Trainable sparsity: score masks, coarse-to-fine pruning, compaction, the multi-level ensemble.

How a trainer uses it (``skelray.train.trial`` does exactly this)::

    model = sparsify(create_model("hpigcn_rp", ...), 0.9, granularity="channel",
                     schedule={"warmup_epochs": 1, "ramp_epochs": 2})
    for epoch in range(epochs):
        on_epoch_start(model, epoch)                    # sets this epoch's level
        ... loss = task_loss + penalty(model) ...       # 0 unless a penalty / CTF / member loss is on
    report(model)["overall"]                            # achieved sparsity
    deployed = fuse(compact(model))                     # smaller dense model, same outputs

``ctf`` / ``ctf_loss`` / ``anneal`` are the coarse-to-fine variant (also reachable as
``sparsify(..., granularity="ctf")``), and ``create_model("sparse_ensemble", ...)`` builds a
``MultiLevelEnsemble``. Importing this package registers ``sparse_ensemble``;
``skelray.models`` imports it last so the registry always lists it.
"""

from __future__ import annotations

from skelray.sparsity._api import is_sparse, on_epoch_start, penalty, sparsify
from skelray.sparsity._compact import compact
from skelray.sparsity._ctf import anneal, ctf, ctf_loss
from skelray.sparsity._ensemble import MultiLevelEnsemble
from skelray.sparsity._report import report
from skelray.sparsity._schedule import Schedule

__all__ = [
    "MultiLevelEnsemble",
    "Schedule",
    "anneal",
    "compact",
    "ctf",
    "ctf_loss",
    "is_sparse",
    "on_epoch_start",
    "penalty",
    "report",
    "sparsify",
]
