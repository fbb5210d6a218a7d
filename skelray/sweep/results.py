"""The Parquet results store of a sweep, built from the experiment directory alone.

Tune leaves, per trial, ``params.json`` (its config), ``result.json`` (one JSON line per epoch)
and ``checkpoint_*/`` folders (``trial.json`` + ``logits.npz`` written by the trial). This module
reads those, from a local path or any pyarrow filesystem URI, and writes

  <sweep>/results/trials.parquet   one row per trial: flattened config, its score (the metric
                                   over the epochs the sweep's scope names), the chosen
                                   checkpoint's (best.*) and the final metrics, params, MACs,
                                   latency, status, node, wall time, chosen checkpoint
  <sweep>/results/epochs.parquet   one row per trial and epoch

so the CLI's leaderboard, plots and the ensemble builder never need Ray.
"""

from __future__ import annotations

import json
import math
import posixpath
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from skelray.errors import DataError

RESULTS_DIR = "results"
SIZE_KEYS = ("params", "macs", "latency_ms_b1", "latency_ms_b64")


@dataclass
class Location:
    """A directory on some filesystem; ``uri`` is what users type, ``path`` what pyarrow wants."""

    fs: pafs.FileSystem
    path: str

    @classmethod
    def parse(cls, uri: str) -> Location:
        if "://" not in uri:
            import os

            uri = os.path.abspath(os.path.expanduser(uri))
        fs, path = pafs.FileSystem.from_uri(uri)
        return cls(fs, path)

    def join(self, *parts: str) -> Location:
        return Location(self.fs, posixpath.join(self.path, *parts))

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.Directory

    def read_text(self) -> str:
        with self.fs.open_input_stream(self.path) as f:
            return f.read().decode()

    def children(self) -> list[Location]:
        if not self.is_dir():
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.path))
        return [Location(self.fs, i.path) for i in sorted(infos, key=lambda i: i.path)
                if i.type == pafs.FileType.Directory]

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


def _read_epochs(trial: Location) -> list[dict[str, Any]]:
    path = trial.join("result.json")
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def _checkpoints(trial: Location) -> list[tuple[Location, dict[str, Any]]]:
    out = []
    for child in trial.children():
        if child.name.startswith("checkpoint_") and child.join("trial.json").exists():
            out.append((child, json.loads(child.join("trial.json").read_text())))
    return out


def is_trial_dir(loc: Location) -> bool:
    return loc.join("params.json").exists()


def trial_dirs(sweep: Location) -> list[tuple[str, Location]]:
    """``(run name, trial dir)`` for every trial of every run (``run-0``, ``run-1`` after --more)."""
    out = []
    for run in sweep.children():
        if run.name == RESULTS_DIR:
            continue
        trials = [t for t in run.children() if is_trial_dir(t)]
        names = [t.name for t in trials]
        for t in trials:
            # A trial that had started but reported nothing when its driver died is restarted on
            # resume in a fresh folder, Tune's name plus a suffix: the empty first one is dropped.
            superseded = any(n.startswith(f"{t.name}_") for n in names)
            if superseded and not _read_epochs(t):
                continue
            out.append((run.name, t))
    return out


def _better(a: float, b: float, mode: str) -> bool:
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return True
    return a > b if mode == "max" else a < b


def scope_score(values: list[float], scope: str, mode: str) -> float | None:
    """A trial's score from its metric per epoch (in order), by Ray Tune's ``scope`` rules."""
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return None
    if scope == "all":
        return max(values) if mode == "max" else min(values)
    if scope == "last":
        return values[-1]
    tail = values if scope == "avg" else values[-int(scope.split("-")[1]):]
    return sum(tail) / len(tail)


def _chosen(values: list[float | None], scope: str, mode: str) -> int | None:
    """Which of a trial's epochs (or checkpoints), in order, judges it: the last under any scope
    but all; under all the best value, ties to the later one (Tune keeps the newer of tied
    checkpoints). None when there is none."""
    if scope != "all":
        return len(values) - 1 if values else None
    best = None
    for i, v in enumerate(values):
        if v is not None and (best is None or not _better(values[best], v, mode)):
            best = i
    return best


def trial_row(run: str, trial: Location, *, metric: str, mode: str, epochs_total: int | None,
              status: str | None = None, scope: str = "all") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    config = json.loads(trial.join("params.json").read_text())
    epochs = _read_epochs(trial)
    total = epochs_total or config.get("train", {}).get("epochs")
    final = epochs[-1] if epochs else {}
    # The chosen checkpoint is what ensembling and export use, so the row's best.* metrics are
    # that checkpoint's epoch. With scope all it is the best checkpoint by the metric (ties go
    # to the later epoch: Tune keeps the newer of tied checkpoints); with any other scope the
    # trial is judged by its last epochs, and the last checkpoint is the one used. Without
    # checkpoints, the epoch of the log that the same rule picks.
    ckpts = sorted(_checkpoints(trial), key=lambda c: c[1].get("epoch", 0))
    pick = _chosen([info.get("metrics", {}).get(metric) for _, info in ckpts], scope, mode)
    best_ckpt = ckpts[pick] if pick is not None else None
    if best_ckpt is not None:
        best = next((row for row in reversed(epochs) if row.get("epoch") == best_ckpt[1].get("epoch")), None)
    else:
        pick = _chosen([row.get(metric) for row in epochs], scope, mode)
        best = epochs[pick] if pick is not None else None
    error_file = trial.join("error.txt")
    error_text = error_file.read_text() if error_file.exists() else ""
    # error.txt stays after a retry succeeds, so a finished run wins over a recorded failure.
    if status is None:
        if final.get("diverged"):
            status = "DIVERGED"
        elif final and total and final.get("epoch") == total:
            status = "TERMINATED"
        elif error_text:
            status = "ERROR"
        else:
            status = "STOPPED" if epochs else "PENDING"
    error = error_text[-2000:] if status == "ERROR" else None
    row: dict[str, Any] = {
        "run": run,
        "trial_id": final.get("trial_id") or trial.name,
        "trial_name": trial.name,
        "status": status,
        "epochs_run": int(final.get("epoch", 0)) if final else 0,
        "best_epoch": int(best["epoch"]) if best else None,
        # What the sweep ranks trials by: the metric over the epochs the scope names.
        "score": scope_score([e.get(metric) for e in epochs], scope, mode),
        "node_ip": final.get("node_ip"),
        "node_id": final.get("node_id"),
        "wall_time_s": final.get("time_total_s"),
        "best_checkpoint": posixpath.relpath(best_ckpt[0].path, trial.path) if best_ckpt else None,
        "error": error,
        "failures": error_text.count("Failure #"),
        # Per-class accuracy of the best checkpoint, as JSON lists indexed by label.
        "best.val/per_class": json.dumps(best_ckpt[1].get("val_per_class")) if best_ckpt else None,
        "best.test/per_class": json.dumps(best_ckpt[1].get("test_per_class")) if best_ckpt else None,
    }
    for key in ("val/top1", "val/top5", "val/loss", "test/top1", "test/top5", "test/loss", "train/loss",
                "sparsity"):
        row[f"best.{key}"] = best.get(key) if best else None
        row[f"final.{key}"] = final.get(key) if final else None
    for key in SIZE_KEYS:
        row[key] = final.get(key) if final else None
    row.update({k: v for k, v in final.items() if k.startswith("latency_ms_b")})
    row.update(flatten(config, "config."))
    epoch_rows = [{"run": run, "trial_id": row["trial_id"], "trial_name": trial.name,
                   **{k: v for k, v in e.items() if k not in ("config",) and not isinstance(v, (dict, list))}}
                  for e in epochs]
    return row, epoch_rows


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    return pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows])


def collect(sweep_uri: str, *, metric: str = "val/top1", mode: str = "max", scope: str = "all",
            statuses: dict[str, str] | None = None) -> tuple[pa.Table, pa.Table]:
    """Read every trial of the sweep at ``sweep_uri`` and write its two Parquet tables."""
    sweep = Location.parse(sweep_uri)
    if not sweep.is_dir():
        raise DataError(f"no sweep directory at {sweep_uri}", fix="pass the directory `skelray sweep run` printed")
    trials, epochs = [], []
    for run, trial in trial_dirs(sweep):
        row, epoch_rows = trial_row(run, trial, metric=metric, mode=mode, epochs_total=None,
                                    status=(statuses or {}).get(trial.name), scope=scope)
        trials.append(row)
        epochs += epoch_rows
    trials_t, epochs_t = _table(trials), _table(epochs)
    out = sweep.join(RESULTS_DIR)
    out.fs.create_dir(out.path, recursive=True)
    for name, table in (("trials", trials_t), ("epochs", epochs_t)):
        # Write beside, then move: a reader never sees half a table.
        tmp = out.join(f".{name}.parquet.tmp")
        pq.write_table(table, tmp.path, filesystem=out.fs)
        out.fs.move(tmp.path, out.join(f"{name}.parquet").path)
    return trials_t, epochs_t


def collect_as_run(sweep_uri: str, state: dict[str, Any]) -> tuple[pa.Table, pa.Table]:
    """``collect`` with the metric, mode and scope the sweep ran with (from its state file)."""
    return collect(sweep_uri, metric=state.get("metric", "val/top1"), mode=state.get("mode", "max"),
                   scope=state.get("scope", "all"))


def read_results(sweep_uri: str) -> tuple[pa.Table, pa.Table]:
    """The stored tables; rebuilt from the trial folders when absent."""
    sweep = Location.parse(sweep_uri)
    res = sweep.join(RESULTS_DIR)
    if not res.join("trials.parquet").exists():
        return collect_as_run(sweep_uri, sweep_state(sweep))
    return (pq.read_table(res.join("trials.parquet").path, filesystem=res.fs),
            pq.read_table(res.join("epochs.parquet").path, filesystem=res.fs))


def sweep_state(sweep: Location) -> dict[str, Any]:
    """The sweep's ``sweep_state.json`` (the runner writes it): metric, mode, scope, runs."""
    path = sweep.join("sweep_state.json")
    return json.loads(path.read_text()) if path.exists() else {}
