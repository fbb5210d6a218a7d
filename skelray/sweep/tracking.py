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


def prepare_env(spec: Any) -> str:
    """Set the W&B environment for this process and the Ray workers it starts; return the mode.

    Called before a run starts and before a restored run resumes (whose pickled callback
    checks the environment again)."""
    mode = wandb_mode(spec.wandb.mode)
    os.environ.setdefault("WANDB_SILENT", "true")
    if mode != "online":
        # Ray's callback asks for a key unless the mode is set in the environment.
        os.environ["WANDB_MODE"] = mode
    return mode


def wandb_callback(spec: Any, sweep: Location):
    """The Tune callback logging every trial, or None when W&B is disabled."""
    w = spec.wandb
    mode = prepare_env(spec)
    if mode == "disabled":
        return None
    from skelray.sweep._wandb_callback import SweepWandbCallback

    kwargs: dict[str, Any] = {"mode": mode, "dir": wandb_dir(sweep)}
    if w.entity:
        kwargs["entity"] = w.entity
    return SweepWandbCallback(project=w.project or "skelray", group=w.group or spec.name,
                               log_config=False, excludes=EXCLUDED, **kwargs)


# -- reading offline runs back -------------------------------------------------------------------
# wandb 0.31 ships no Python reader for its ``.wandb`` files. The format is a 7-byte header
# (":W&B", magic 0xBEE1, version) followed by a LevelDB-style record log: 32 KiB blocks, each
# record chunk with a 7-byte header (crc32c, little-endian length, type FULL/FIRST/MIDDLE/LAST)
# and a protobuf ``Record`` as payload.
_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(data: bytes):
    if data[:4] != b":W&B":
        raise ValueError("not a W&B run file")
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < 7:  # block trailer: zero padding
            pos += room
            continue
        length = int.from_bytes(data[pos + 4:pos + 6], "little")
        kind = data[pos + 6]
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""


def read_offline_run(path: str) -> dict[str, Any]:
    """Config, per-step history, summary and identity of an offline W&B run file."""
    import json as _json

    from wandb.proto import wandb_internal_pb2 as pb

    with open(path, "rb") as f:
        data = f.read()
    run: dict[str, Any] = {"config": {}, "history": [], "summary": {}}
    for raw in _records(data):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run.update(id=rec.run.run_id, name=rec.run.display_name, group=rec.run.run_group,
                       project=rec.run.project)
            run["config"].update({i.key: _json.loads(i.value_json) for i in rec.run.config.update})
        elif kind == "config":
            run["config"].update({i.key: _json.loads(i.value_json) for i in rec.config.update})
        elif kind == "history":
            run["history"].append({i.key or "/".join(i.nested_key): _json.loads(i.value_json)
                                   for i in rec.history.item})
        elif kind == "summary":
            run["summary"].update({i.key or "/".join(i.nested_key): _json.loads(i.value_json)
                                   for i in rec.summary.update})
    return run


def offline_runs(sweep: Location) -> list[str]:
    """Paths of every offline run file written for a sweep."""
    import glob

    root = wandb_dir(sweep)
    return sorted(glob.glob(os.path.join(root, "wandb", "offline-run-*", "run-*.wandb")))
