"""Sweeps: a sweep YAML (native or W&B format) -> a validated ``SweepSpec`` -> Ray Tune objects.

``load_sweep`` reads and checks a file; ``SweepSpec`` is what the rest of the code passes
around; ``skelray.sweep.tune_builders`` (imports Ray) builds the param space, searcher,
scheduler and ``TuneConfig`` from it. The format is documented in ``spec.py`` (sections and
defaults), ``leaves.py`` (search leaves) and ``wandb_format.py`` (W&B files).
"""

from __future__ import annotations

from skelray.sweep._source import parse_overrides
from skelray.sweep.leaves import Leaf
from skelray.sweep.spec import (
    CheckpointSpec,
    DataSpec,
    FailureSpec,
    ModelSpec,
    ResourcesSpec,
    SchedulerSpec,
    SearcherSpec,
    SparsitySpec,
    SweepSpec,
    TrainSpec,
    TrialConfig,
    WandbSpec,
    check_resources,
    load_sweep,
    trial_name,
)

__all__ = [
    "CheckpointSpec",
    "DataSpec",
    "FailureSpec",
    "Leaf",
    "ModelSpec",
    "ResourcesSpec",
    "SchedulerSpec",
    "SearcherSpec",
    "SparsitySpec",
    "SweepSpec",
    "TrainSpec",
    "TrialConfig",
    "WandbSpec",
    "check_resources",
    "load_sweep",
    "parse_overrides",
    "trial_name",
]
