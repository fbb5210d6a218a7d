"""Trainable sparsity: score masks, coarse-to-fine pruning, compaction, the multi-level ensemble.

How a trainer uses it (``skelray.train.trial`` does exactly this)::

    model = sparsify(create_model("hpigcn_rp", ...), 0.9, granularity="channel",
                     schedule={"warmup_epochs": 1, "ramp_epochs": 2})
    for epoch in range(epochs):
        on_epoch_start(model, epoch)                    # sets this epoch's level
        ... loss = task_loss + penalty(model) ...       # 0 unless a penalty / CTF / member loss is on
    report(model)["overall"]                            # achieved sparsity
    deployed = inference_form(model)                    # skelray.models: compact, then fuse

``ctf`` / ``ctf_loss`` / ``anneal`` are the coarse-to-fine variant (also reachable as
``sparsify(..., granularity="ctf")``), and ``create_model("sparse_ensemble", ...)`` builds a
``MultiLevelEnsemble``: a plug-in of the model registry (named in
``skelray.models._registry.BUILTIN_PLUGINS``), imported when the name is first used.

Importing this package registers its masks and its compaction rules for the zoo's blocks with
``skelray.models`` (``_compact``), so ``skelray.models.inference_form`` compacts a masked model
without the zoo knowing this package; ``compact`` here is that same function.
"""

from __future__ import annotations

from skelray.models import compact
from skelray.sparsity import _compact  # noqa: F401  registers the masks and block rules
from skelray.sparsity._api import is_sparse, on_epoch_start, penalty, sparsify
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
