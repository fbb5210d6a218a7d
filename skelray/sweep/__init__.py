"""Sweeps: a sweep YAML (native or W&B format) -> a validated ``SweepSpec`` -> Ray Tune trials.

Where a sweep YAML becomes trials: ``spec.load_sweep`` (read, convert, parse the ``search:``
leaves, validate) -> ``tune_builders`` (each leaf's Tune domain, the searcher and scheduler)
-> ``runner.run_sweep`` (the Tuner; each trial's sampled config becomes a
``skelray.config.TrialConfig`` trained by ``skelray.train``) -> ``results`` (the Parquet store).

``load_sweep`` reads and checks a file (the per-trial sections it embeds live in
``skelray.config``); ``SweepSpec`` is what the rest of the code passes
around; ``skelray.sweep.tune_builders`` (imports Ray) builds the param space, searcher,
scheduler and ``TuneConfig`` from it. The format is documented in ``spec.py`` (sections and
defaults), ``leaves.py`` (search leaves) and ``wandb_format.py`` (W&B files).
"""

from __future__ import annotations

from skelray.sweep.leaves import Leaf
from skelray.sweep.spec import (
    CheckpointSpec,
    FailureSpec,
    ResourcesSpec,
    SchedulerSpec,
    SearcherSpec,
    SweepSpec,
    WandbSpec,
    check_resources,
    load_sweep,
    trial_name,
)

__all__ = [
    "CheckpointSpec",
    "FailureSpec",
    "Leaf",
    "ResourcesSpec",
    "SchedulerSpec",
    "SearcherSpec",
    "SweepSpec",
    "WandbSpec",
    "check_resources",
    "load_sweep",
    "trial_name",
]
