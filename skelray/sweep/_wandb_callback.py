"""Ray's W&B callback, made to close the runs of trials that a sweep-wide stop cuts short.

When a ``Stopper`` ends the whole experiment (a sweep's ``target`` reached), Tune calls
``on_experiment_end`` without first calling ``log_trial_end`` for the trials still running.
Ray's callback then waits its whole upload timeout (30 minutes) for logging actors that were
never told to finish. This subclass tells them first, so their runs end cleanly at once.
"""

from __future__ import annotations

from typing import Any

from ray.air.integrations.wandb import WandbLoggerCallback


class SweepWandbCallback(WandbLoggerCallback):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ended: set[Any] = set()

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        self._ended.add(trial)
        super().log_trial_end(trial, failed=failed)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        for trial in list(self._trial_queues):
            if trial not in self._ended:
                self._signal_logging_actor_stop(trial=trial)
                self._ended.add(trial)
        super().on_experiment_end(trials, **info)
