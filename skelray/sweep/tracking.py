"""Weights & Biases for a sweep: one run per trial, grouped by sweep, offline without a key.

The API key is only ever read from the environment by wandb itself: it is never passed to
the callback, because Tune pickles the run configuration (callbacks included) into the
experiment folder, and a key passed here would end up on disk.
"""

from __future__ import annotations

import os
from typing import Any

from skelray.sweep.results import Location

# Metrics that are bookkeeping, not results: keep the W&B charts readable.
EXCLUDED = ["time_this_iter_s", "timestamp", "time_since_restore", "iterations_since_restore", "pid",
            "hostname", "date", "checkpoint_dir_name", "should_checkpoint", "done"]


def wandb_mode(requested: str | None) -> str:
    """``online`` only when asked for (or left unset) and a key is present; else ``offline``."""
    if requested == "disabled":
        return "disabled"
    if requested == "offline" or not os.environ.get("WANDB_API_KEY"):
        return "offline"
    return "online"


def wandb_dir(sweep: Location) -> str:
    """Where offline runs are written: inside the sweep folder when it is local, so a run is
    never lost in a temp folder; under ~/.skelray/wandb/<sweep> when results go to a bucket."""
    from pyarrow.fs import LocalFileSystem

    if isinstance(sweep.fs, LocalFileSystem):
        path = sweep.join("wandb").path
    else:
        path = os.path.expanduser(os.path.join("~", ".skelray", "wandb", sweep.name))
    os.makedirs(path, exist_ok=True)
    return path


def wandb_callback(spec: Any, sweep: Location):
    """The Tune callback logging every trial, or None when W&B is disabled."""
    w = spec.wandb
    mode = wandb_mode(w.mode)
    if mode == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    if mode == "offline":
        # Ray's callback asks for a key unless the mode is set in the environment.
        os.environ["WANDB_MODE"] = "offline"
    from ray.air.integrations.wandb import WandbLoggerCallback

    kwargs: dict[str, Any] = {"mode": mode, "dir": wandb_dir(sweep)}
    if w.entity:
        kwargs["entity"] = w.entity
    return WandbLoggerCallback(project=w.project or "skelray", group=w.group or spec.name,
                               log_config=False, excludes=EXCLUDED, **kwargs)
