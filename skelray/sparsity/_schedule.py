"""When sparsity applies: dense warm-up, then a linear or stepped ramp to the target level.

The trainer calls ``on_epoch_start(model, epoch)`` (in ``skelray.sparsity``) before every epoch;
it asks the schedule for the epoch's level. The schedule's one schema is
``skelray.config.SparsitySchedule`` (a sweep's ``model.sparsity.schedule``); this module only
accepts it or the plain mapping a sweep gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from skelray.config import SparsitySchedule as Schedule
from skelray.config import validate_or_raise
from skelray.errors import ConfigError

__all__ = ["Schedule", "parse_schedule"]


def parse_schedule(schedule: Schedule | Mapping[str, Any] | None) -> Schedule | None:
    """A ``Schedule`` from the dict a sweep gives; every bad field is reported at once."""
    if schedule is None or isinstance(schedule, Schedule):
        return schedule
    if not isinstance(schedule, Mapping):
        raise ConfigError(f"must be a mapping, got {schedule!r}", where="sparsity.schedule",
                          fix="e.g. {warmup_epochs: 1, ramp_epochs: 2}")
    values = {k: v for k, v in schedule.items() if v is not None}
    return validate_or_raise(Schedule, values, "sparsity.schedule", prefix="sparsity.schedule")
