"""The Parquet results store of a sweep, built from the experiment directory alone.

Tune leaves, per trial, ``params.json`` (its config), ``result.json`` (one JSON line per epoch)
and ``checkpoint_*/`` folders (``trial.json`` + ``logits.npz`` written by the trial); the files
and their records are defined in ``skelray.record``. This module reads those, from a local path
or any pyarrow filesystem URI, and writes

  <sweep>/results/trials.parquet   one row per trial: flattened config, its score (the metric
                                   over the epochs the sweep's scope names), the chosen
                                   checkpoint's (best.*) and the final metrics, params, MACs,
                                   latency, status, node, wall time, chosen checkpoint
  <sweep>/results/epochs.parquet   one row per trial and epoch
  <sweep>/results/configs.parquet  one row per configuration over its replicates (seeds,
                                   folds): mean, standard error and 95% interval of the score
                                   and of test top-1, rank, tie with the best
                                   (``skelray.sweep.aggregate``; trials.parquet carries each
                                   trial's config summary as per_config.* columns)

so the CLI's leaderboard, plots and the ensemble builder never need Ray.
"""

from __future__ import annotations

import json
import math
import posixpath
import secrets
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from skelray import record
from skelray.errors import DataError
from skelray.record import SweepState, TrialRecord
from skelray.sweep.aggregate import aggregate

RESULTS_DIR = "results"
SPEC_FILE = "sweep.yaml"  # the spec a sweep ran with (written by skelray.sweep.runner)
# What every sweep folder holds, one at least (older versions wrote no sweep_state.json).
SWEEP_MARKERS = (SPEC_FILE, record.SWEEP_STATE_FILE, "run-0")
# The trial metrics each row carries twice: as best.KEY (the chosen checkpoint's epoch) and final.KEY.
SUMMARY_METRICS = (*record.EVAL_METRICS, record.TRAIN_LOSS, record.SPARSITY)


def best_column(key: str) -> str:
    """The trials table's column of ``key`` at the chosen checkpoint's epoch: ``best.val/top1``."""
    return f"best.{key}"


def final_column(key: str) -> str:
    """The trials table's column of ``key`` at the trial's last reported epoch."""
    return f"final.{key}"


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

    def write_text(self, text: str) -> None:
        """Replace the file with ``text`` so that no reader sees it half written: on a local disk
        through ``skelray.record.write_text_atomic`` (temp file + ``os.replace``); elsewhere
        written beside and moved into place (an object store's upload is whole or nothing)."""
        if isinstance(self.fs, pafs.LocalFileSystem):
            record.write_text_atomic(self.path, text)
            return
        self.fs.create_dir(posixpath.dirname(self.path), recursive=True)
        tmp = f"{self.path}.{secrets.token_hex(4)}.tmp"
        try:
            with self.fs.open_output_stream(tmp) as f:
                f.write(text.encode())
            self.fs.move(tmp, self.path)
        except BaseException:
            if self.fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                self.fs.delete_file(tmp)
            raise

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
    path = trial.join(record.RESULT_FILE)
    if not path.exists():
        return []
    return record.epochs_from_text(path.read_text(), path.path)


def sweep_span(sweep: Location) -> tuple[float, float] | None:
    """(start, end) of a sweep's training as Unix times: the earliest trial's first epoch start
    (its first result line's timestamp less that epoch's time) to the latest result line; None
    before any trial has reported. Tune's own timestamps, so it reads the same on any machine."""
    starts, ends = [], []
    for _, trial in trial_dirs(sweep):
        epochs = [e for e in _read_epochs(trial) if e.get("timestamp") is not None]
        if epochs:
            starts.append(float(epochs[0]["timestamp"]) - float(epochs[0].get("time_this_iter_s") or 0.0))
            ends.append(float(epochs[-1]["timestamp"]))
    return (min(starts), max(ends)) if starts else None


def _checkpoints(trial: Location) -> list[tuple[Location, TrialRecord]]:
    out = []
    for child in trial.children():
        info = child.join(record.TRIAL_FILE)
        if child.name.startswith(record.CHECKPOINT_PREFIX) and info.exists():
            out.append((child, TrialRecord.from_text(info.read_text(), info.path)))
    return out


def is_trial_dir(loc: Location) -> bool:
    return loc.join(record.PARAMS_FILE).exists()


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
              status: str | None = None, scope: str = "all", costs: record.CostTable | None = None
              ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One trial's row and its epoch rows. ``costs``: the sweep's measured costs (read from the
    sweep folder's ``costs.json``, the trial folder's grandparent, when not given)."""
    params = trial.join(record.PARAMS_FILE)
    config = record.params_from_text(params.read_text(), params.path)
    epochs = _read_epochs(trial)
    total = epochs_total or config.get("train", {}).get("epochs")
    last = epochs[-1] if epochs else {}
    # The chosen checkpoint is what ensembling and export use, so the row's best.* metrics are
    # that checkpoint's epoch. With scope all it is the best checkpoint by the metric (ties go
    # to the later epoch: Tune keeps the newer of tied checkpoints); with any other scope the
    # trial is judged by its last epochs, and the last checkpoint is the one used. Without
    # checkpoints, the epoch of the log that the same rule picks.
    ckpts = sorted(_checkpoints(trial), key=lambda c: c[1].epoch)
    pick = _chosen([info.metrics.get(metric) for _, info in ckpts], scope, mode)
    best_ckpt = ckpts[pick] if pick is not None else None
    if best_ckpt is not None:
        chosen = next((row for row in reversed(epochs) if row.get(record.EPOCH) == best_ckpt[1].epoch), None)
    else:
        pick = _chosen([row.get(metric) for row in epochs], scope, mode)
        chosen = epochs[pick] if pick is not None else None
    error_file = trial.join(record.ERROR_FILE)
    error_text = error_file.read_text() if error_file.exists() else ""
    # error.txt stays after a retry succeeds, so a finished run wins over a recorded failure.
    if status is None:
        if last.get(record.DIVERGED):
            status = "DIVERGED"
        elif last and total and last.get(record.EPOCH) == total:
            status = "TERMINATED"
        elif error_text:
            status = "ERROR"
        else:
            status = "STOPPED" if epochs else "PENDING"
    error = error_text[-2000:] if status == "ERROR" else None
    row: dict[str, Any] = {
        "run": run,
        "trial_id": last.get(record.TUNE_TRIAL_ID) or trial.name,
        "trial_name": trial.name,
        "status": status,
        "epochs_run": int(last.get(record.EPOCH, 0)) if last else 0,
        "best_epoch": int(chosen[record.EPOCH]) if chosen else None,
        # What the sweep ranks trials by: the metric over the epochs the scope names.
        "score": scope_score([e.get(metric) for e in epochs], scope, mode),
        "node_ip": last.get(record.TUNE_NODE_IP),
        "node_id": last.get(record.NODE_ID),
        "wall_time_s": last.get(record.TUNE_TIME_TOTAL),
        "best_checkpoint": posixpath.relpath(best_ckpt[0].path, trial.path) if best_ckpt else None,
        "holdout": ckpts[-1][1].holdout if ckpts else None,  # how validation was chosen, in words
        "error": error,
        "failures": error_text.count("Failure #"),
    }
    # Per-class accuracy of the best checkpoint, as JSON lists indexed by label.
    for split in record.EVAL_SPLITS:
        per_class = best_ckpt[1].per_class.get(split) if best_ckpt else None
        row[best_column(record.metric_key(split, "per_class"))] = json.dumps(per_class) if best_ckpt else None
    for key in SUMMARY_METRICS:
        row[best_column(key)] = chosen.get(key) if chosen else None
        row[final_column(key)] = last.get(key) if last else None
    row.update(_sizes(trial, best_ckpt[1].sizes if best_ckpt else {}, last, costs))
    row.update(flatten(config, "config."))
    epoch_rows = [{"run": run, "trial_id": row["trial_id"], "trial_name": trial.name,
                   **{k: v for k, v in e.items() if k not in ("config",) and not isinstance(v, (dict, list))}}
                  for e in epochs]
    return row, epoch_rows


def _sizes(trial: Location, sizes: dict[str, Any], last: dict[str, Any],
           costs: record.CostTable | None) -> dict[str, Any]:
    """Params, MACs and latency of the chosen checkpoint's inference form, and where the latency
    comes from. The latency is the sweep's one measurement of that structure (``costs.json``,
    timed alone on a node), so identical architectures show identical latency; trials of older
    versions keep the latency they timed themselves."""
    structure = sizes.get(record.STRUCTURE)
    if not structure:
        out = {key: last.get(key) for key in record.SIZE_KEYS}
        out.update({k: v for k, v in last.items() if record.is_latency_key(k)})
        has = any(record.is_latency_key(k) and v is not None for k, v in out.items())
        return {**out, record.STRUCTURE: None, record.LATENCY_BASIS: record.LATENCY_SELF_TIMED if has else None}
    if costs is None:
        costs = load_costs(Location(trial.fs, posixpath.dirname(posixpath.dirname(trial.path.rstrip("/")))))
    cost = costs.entries.get(structure)
    out = {key: None for key in record.SIZE_KEYS}
    out.update({k: v for k, v in sizes.items() if k != record.STRUCTURE})
    if cost is not None:
        out.update(cost.sizes())
    has = cost is not None and bool(cost.latency)
    return {**out, record.STRUCTURE: structure, record.LATENCY_BASIS: record.LATENCY_MEASURED_ALONE if has else None}


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    return pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows])


def is_sweep_dir(sweep: Location) -> bool:
    """Whether ``sweep`` is a sweep folder: it holds one of ``SWEEP_MARKERS``."""
    return sweep.is_dir() and any(sweep.join(m).exists() for m in SWEEP_MARKERS)


def require_sweep(sweep_uri: str) -> Location:
    """The sweep folder at ``sweep_uri``, or a DataError saying it is not one (and how to tell)
    when it lacks every one of ``SWEEP_MARKERS``. Read commands call it before reading anything,
    so a wrong folder is refused with nothing written into it."""
    sweep = Location.parse(sweep_uri)
    if not is_sweep_dir(sweep):
        what = "does not exist" if not sweep.exists() else "is not a skelray sweep folder"
        raise DataError(f"{what}: a sweep folder holds {SPEC_FILE}, {record.SWEEP_STATE_FILE} and run-0/",
                        where=sweep_uri, fix="pass the <storage>/<name> folder that `skelray sweep run` printed")
    return sweep


def _tables(sweep: Location, *, metric: str, mode: str, scope: str,
            statuses: dict[str, str] | None = None) -> tuple[pa.Table, pa.Table, pa.Table]:
    """The trials, epochs and configs tables, read from the trial folders (nothing written)."""
    trials, epochs = [], []
    for run, trial in trial_dirs(sweep):
        row, epoch_rows = trial_row(run, trial, metric=metric, mode=mode, epochs_total=None,
                                    status=(statuses or {}).get(trial.name), scope=scope)
        trials.append(row)
        epochs += epoch_rows
    trials, configs = aggregate(trials, mode=mode)
    return _table(trials), _table(epochs), _table(configs)


def collect(sweep_uri: str, *, metric: str = record.DEFAULT_METRIC, mode: str = "max", scope: str = "all",
            statuses: dict[str, str] | None = None) -> tuple[pa.Table, pa.Table]:
    """Read every trial of the sweep at ``sweep_uri`` and write its Parquet tables (trials,
    epochs, and configs: one row per configuration over its seeds and folds)."""
    sweep = require_sweep(sweep_uri)
    trials_t, epochs_t, configs_t = _tables(sweep, metric=metric, mode=mode, scope=scope, statuses=statuses)
    out = sweep.join(RESULTS_DIR)
    out.fs.create_dir(out.path, recursive=True)
    for name, table in (("trials", trials_t), ("epochs", epochs_t), ("configs", configs_t)):
        # Write beside, then move: a reader never sees half a table.
        tmp = out.join(f".{name}.parquet.tmp")
        pq.write_table(table, tmp.path, filesystem=out.fs)
        out.fs.move(tmp.path, out.join(f"{name}.parquet").path)
    return trials_t, epochs_t


def collect_as_run(sweep_uri: str, state: SweepState) -> tuple[pa.Table, pa.Table]:
    """``collect`` with the metric, mode and scope the sweep ran with (from its state file)."""
    return collect(sweep_uri, metric=state.metric, mode=state.mode, scope=state.scope)


def read_results(sweep_uri: str) -> tuple[pa.Table, pa.Table]:
    """The stored tables of the sweep at ``sweep_uri``. A read: it writes nothing. Without a
    store yet (a sweep still running, or cut short), the tables are built from the trial
    folders in memory; ``collect`` (``skelray sweep results --refresh``) writes them."""
    sweep = require_sweep(sweep_uri)
    res = sweep.join(RESULTS_DIR)
    if not res.join("trials.parquet").exists():
        state = sweep_state(sweep)
        trials, epochs, _ = _tables(sweep, metric=state.metric, mode=state.mode, scope=state.scope)
        return trials, epochs
    return (pq.read_table(res.join("trials.parquet").path, filesystem=res.fs),
            pq.read_table(res.join("epochs.parquet").path, filesystem=res.fs))


def sweep_state(sweep: Location) -> SweepState:
    """The sweep's ``sweep_state.json`` (the runner writes it): metric, mode, scope, runs; the
    defaults for a folder without one; a DataError naming the file when it is corrupt."""
    path = sweep.join(record.SWEEP_STATE_FILE)
    return SweepState.from_text(path.read_text(), path.path) if path.exists() else SweepState()


def load_costs(sweep: Location) -> record.CostTable:
    """The sweep's ``costs.json`` (one measurement per architecture, ``skelray.sweep.costs``);
    empty for a folder without one (sweeps of older versions)."""
    path = sweep.join(record.COSTS_FILE)
    return record.CostTable.from_text(path.read_text(), path.path) if path.exists() else record.CostTable()


def write_sweep_state(sweep: Location, state: SweepState) -> None:
    """Replace the sweep's ``sweep_state.json`` atomically (``Location.write_text``)."""
    sweep.join(record.SWEEP_STATE_FILE).write_text(state.to_text())
