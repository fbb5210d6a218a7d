"""Training: where a ``TrialConfig`` becomes a trained model and a checkpoint record.

``run_trial(cfg)`` loads the config's data (``load_splits``), builds the model, trains it epoch
by epoch and, after each, hands its metrics and a checkpoint folder to a ``report`` callback:
``state.pt`` (weights, optimiser, RNG) and the ``skelray.record`` files, a ``TrialRecord``
(``trial.json``) and a ``Logits`` (``logits.npz``). ``tune_trainable`` is the same run inside a
Ray Tune trial, with the data shared per node (``node_splits``). ``model_from_checkpoint`` turns
a checkpoint folder back into the trained model and its record; ``measure.sizes`` gives the
params, MACs and structure key of a model's inference form, which every checkpoint records.
Latency is not timed here while trials train beside it: the sweep measures each structure
once, alone on a node (``skelray.sweep.costs``, on ``measure.time_forward``).

Submodules: ``trial`` (the run and its checkpoints), ``loop`` (one epoch, evaluation, optimiser
and schedule, free of Ray), ``data`` (splits and the per-node cache), ``measure`` (sizes, structure key, the latency timer).
This package imports nothing from ``skelray.sweep``: a sweep calls it, not the other way round.
"""

from __future__ import annotations

# ``measure`` is the module (``measure.measure``, ``measure.latency_ms``): re-exporting its
# function under the same name would hide the module from ``import skelray.train.measure``.
from skelray.train import measure
from skelray.train.data import DataBundle, load_splits, node_splits, shutdown_caches
from skelray.train.trial import build_model, model_from_checkpoint, run_trial, tune_trainable

__all__ = [
    "DataBundle",
    "build_model",
    "load_splits",
    "measure",
    "model_from_checkpoint",
    "node_splits",
    "run_trial",
    "shutdown_caches",
    "tune_trainable",
]
