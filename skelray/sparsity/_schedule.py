"""When sparsity applies: dense warm-up, then a linear or stepped ramp to the target level.

The trainer calls ``on_epoch_start(model, epoch)`` (in ``skelray.sparsity``) before every epoch;
it asks the schedule for the epoch's level. The schedule is plain data so a checkpoint does
not need it: the level reached is a buffer in the model's state (``sparse_state.level``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from skelray.errors import ConfigError

KINDS = ("linear", "step")


@dataclass(frozen=True)
class Schedule:
    warmup_epochs: int = 0  # dense epochs before pruning starts
    ramp_epochs: int = 0  # epochs over which the level rises to the target (0: at once)
    kind: str = "linear"  # linear: a little more every epoch; step: `steps` equal jumps
    steps: int = 1  # step kind only: how many jumps the ramp has (1: straight to the target)
    penalty: float = 0.0  # weight of the L2 pull on weights about to be pruned (0: off)
    # CTF only (granularity "ctf"): budget-term weight and the temperature's start and end.
    budget_weight: float = 1.0
    temperature: tuple[float, float] = (1.0, 1e-3)

    def progress(self, epoch: int) -> float:
        """0 during warm-up, rising to 1 by the last ramp epoch, then 1.

        The first ramp epoch is already above 0 and the last one is at 1, so a ramp of R
        epochs reaches the target R epochs after the warm-up ends.
        """
        if epoch < self.warmup_epochs:
            return 0.0
        if self.ramp_epochs == 0:
            return 1.0
        return min(1.0, (epoch - self.warmup_epochs + 1) / self.ramp_epochs)

    def fraction(self, epoch: int) -> float:
        """The fraction of the target level in force at ``epoch``."""
        p = self.progress(epoch)
        if self.kind == "step":
            # floor, with a tolerance so 3 * (1/3) counts as a full step
            return math.floor(p * self.steps + 1e-9) / self.steps
        return p


def parse_schedule(schedule: Schedule | Mapping[str, Any] | None) -> Schedule | None:
    """A ``Schedule`` from the dict a sweep gives (``SparsityScheduleSpec.model_dump()``)."""
    if schedule is None or isinstance(schedule, Schedule):
        return schedule
    if not isinstance(schedule, Mapping):
        raise ConfigError(f"must be a mapping, got {schedule!r}", where="sparsity.schedule",
                          fix="e.g. {warmup_epochs: 1, ramp_epochs: 2}")
    known = {f.name for f in fields(Schedule)}
    values: dict[str, Any] = {}
    for key, value in schedule.items():
        if key not in known:
            raise ConfigError(f"unknown key '{key}'", where=f"sparsity.schedule.{key}",
                              fix=f"use {', '.join(sorted(known))}")
        if value is not None:
            values[key] = value
    for key in ("warmup_epochs", "ramp_epochs", "steps"):
        v = values.get(key, 1 if key == "steps" else 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if key == "steps" else 0):
            raise ConfigError(f"must be a whole number >= {1 if key == 'steps' else 0}, got {v!r}",
                              where=f"sparsity.schedule.{key}")
    if values.get("kind", "linear") not in KINDS:
        raise ConfigError(f"unknown kind {values['kind']!r}", where="sparsity.schedule.kind",
                          fix="use linear or step")
    for key in ("penalty", "budget_weight"):
        v = values.get(key, 0.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or not math.isfinite(v):
            raise ConfigError(f"must be a number >= 0, got {v!r}", where=f"sparsity.schedule.{key}")
    if "temperature" in values:
        t = tuple(values["temperature"])
        if len(t) != 2 or not all(isinstance(x, (int, float)) and x > 0 for x in t) or t[1] > t[0]:
            raise ConfigError(f"must be [start, end] with start >= end > 0, got {values['temperature']!r}",
                              where="sparsity.schedule.temperature", fix="e.g. [1.0, 0.001]")
        values["temperature"] = (float(t[0]), float(t[1]))
    return Schedule(**values)
