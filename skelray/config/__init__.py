"""Configuration that every layer shares: one trial's typed sections and the problem collector.

``TrialConfig`` (``data`` / ``model`` / ``train``) is what a sweep hands each trial and what
the trainer reads; ``Problems`` gathers every error in a file before reporting them together,
each with its YAML path and a fix; ``parse_overrides`` reads ``--set KEY=VALUE``. This package
imports nothing else of skelray but ``skelray.errors``, so any layer may use it.
"""

from __future__ import annotations

from skelray.config._problems import (
    Problem,
    Problems,
    did_you_mean,
    loc_to_path,
    pydantic_problems,
    unknown_key_fix,
)
from skelray.config.overrides import parse_overrides
from skelray.config.trial import (
    DEFAULT_LAYOUTS,
    LAYOUT_FILE_SUFFIXES,
    DataSpec,
    ModelSpec,
    Section,
    SparsitySchedule,
    SparsitySpec,
    SplitSpec,
    TrainSpec,
    TrialConfig,
    validate_or_raise,
)

__all__ = [
    "DEFAULT_LAYOUTS",
    "LAYOUT_FILE_SUFFIXES",
    "DataSpec",
    "ModelSpec",
    "Problem",
    "Problems",
    "Section",
    "SparsitySchedule",
    "SparsitySpec",
    "SplitSpec",
    "TrainSpec",
    "TrialConfig",
    "did_you_mean",
    "loc_to_path",
    "parse_overrides",
    "pydantic_problems",
    "unknown_key_fix",
    "validate_or_raise",
]
