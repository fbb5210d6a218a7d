"""Ensembles of a sweep's trials: chosen on validation logits under a size or latency budget.

``build_ensemble(sweep_dir, budget_ms=20)`` returns an ``EnsembleSpec`` (saved as ENSEMBLE.json);
``skelray.ensemble.combine`` is the one definition of how members' logits are combined.
"""

from __future__ import annotations

from skelray.ensemble.builder import EnsembleMember, EnsembleSpec, build_ensemble, ensemble_of
from skelray.ensemble.combine import softmax, top_k, weighted_logits

__all__ = ["EnsembleMember", "EnsembleSpec", "build_ensemble", "ensemble_of", "softmax", "top_k",
           "weighted_logits"]
