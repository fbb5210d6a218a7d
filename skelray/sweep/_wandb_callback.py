"""Ray's W&B callback, made to write every epoch of every run it starts, however the sweep ends.

Ray's ``WandbLoggerCallback`` (ray 2.60) logs each trial from a logging actor that reads a
queue and calls ``wandb.log``; at the trial's end it is sent ``END``, calls ``wandb.finish()``
and returns, and the callback then kills it (``ray.kill``). Three gaps, closed here:

- **Nothing waited for a run to be on disk.** ``wandb.finish()`` only *asks* wandb-core (the
  separate process that writes the run's ``.wandb`` file) to close the run (``inform_finish``
  is published, not awaited), and the kill that follows takes wandb-core down with the actor
  (Ray kills a worker's child processes). Whatever wandb-core had not yet written then is lost.
  Here the actor returns only after ``wandb.teardown()``, which waits for wandb-core to close
  every run and exit.
- **A sweep-wide stop left runs open.** When a ``Stopper`` ends the whole experiment (a
  sweep's ``target`` reached; also Ctrl-C), Tune marks the running trials terminated without
  calling ``log_trial_end``, so their actors never get ``END`` and ``on_experiment_end`` waits
  its whole upload timeout (30 minutes) for them. ``on_experiment_end`` sends it first here.
- **A restarted logging actor could only lose data.** Ray creates the actors with
  ``max_restarts=-1``; a restarted one starts a fresh W&B run under the same id, without the
  results its first life had already taken from the queue, and Ray prints an error-level line
  for every such actor whose arguments (the trial config) sit in the object store
  (ray-project/ray#53727). Here they are not restarted (``max_restarts=0``): a logging actor
  that dies leaves its run as written so far.

Which of these emptied the run in the CI failure (``[] == [1]``: a run file with its header
and no epoch) was not caught in the act; the kill without a flush and the restart without the
consumed results are the two ways found that can produce it, and both are closed here.
"""

from __future__ import annotations

import os
from typing import Any

import ray
from ray.air.integrations.wandb import WANDB_ENV_VAR, WandbLoggerCallback, _WandbLoggingActor
from ray.air.util.node import _force_on_current_node


class FlushingWandbLoggingActor(_WandbLoggingActor):
    """Ray's logging actor, returning only once wandb-core has written the run to disk."""

    def run(self) -> None:
        try:
            super().run()
        finally:
            # Blocks until wandb-core has closed its streams and exited. The actor logs one
            # run and is killed next, so nothing else in this process needs wandb afterwards.
            self._wandb.teardown()


class SweepWandbCallback(WandbLoggerCallback):
    _logger_actor_cls = FlushingWandbLoggingActor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ended: set[Any] = set()

    def _start_logging_actor(self, trial: Any, exclude_results: list[str], **wandb_init_kwargs: Any) -> None:
        if not self._remote_logger_class:
            # As Ray's, but never restarted (see the module docstring). The key, when set, reaches
            # the actor through its environment, never through its pickled arguments.
            env = {WANDB_ENV_VAR: os.environ[WANDB_ENV_VAR]} if WANDB_ENV_VAR in os.environ else {}
            self._remote_logger_class = ray.remote(num_cpus=0, **_force_on_current_node(), max_restarts=0,
                                                   runtime_env={"env_vars": env})(self._logger_actor_cls)
        super()._start_logging_actor(trial, exclude_results, **wandb_init_kwargs)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        self._ended.add(trial)
        super().log_trial_end(trial, failed=failed)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        for trial in list(self._trial_queues):
            if trial not in self._ended:
                self._signal_logging_actor_stop(trial=trial)
                self._ended.add(trial)
        super().on_experiment_end(trials, **info)
