"""The trials of a sweep that can join an ensemble, with their saved logits and sizes.

A candidate is a trial's chosen checkpoint (the best epoch's, or the last one when the sweep's
``scope`` judges trials by their last epochs): its ``logits.npz`` (a ``skelray.record.Logits``)
holds the validation and test logits of that epoch, for the same clips in the same order in
every trial of the sweep (the data layer fixes the split), so logits of different trials can be
summed clip by clip; its ``trial.json`` (a ``skelray.record.TrialRecord``) the sizes and the
structure key of its inference form, whose batch-1 latency the sweep's ``costs.json`` gives
(measured once per architecture, alone on a node: ``skelray.sweep.costs``), so identical
members are charged the same milliseconds. Sweeps of older versions have no ``costs.json``:
their trials' own timings are used.
"""

from __future__ import annotations

import math
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skelray import record
from skelray.ensemble.combine import top1
from skelray.errors import DataError

USABLE = ("TERMINATED", "STOPPED")  # ERROR, DIVERGED and PENDING trials never join


@dataclass
class Candidate:
    """One trial's chosen checkpoint, as the builder sees it."""

    key: str  # "<run>/<trial_name>", unique in the sweep
    run: str
    trial_name: str
    checkpoint: str  # relative to the sweep folder
    model: str
    stream: str
    pa_count: int | None
    sparsity: float | None
    params: float
    macs: float
    latency_ms: float  # batch-1 latency of the inference form: the sweep's one measurement of its structure
    val_logits: np.ndarray
    val_labels: np.ndarray
    test_logits: np.ndarray
    test_labels: np.ndarray
    # Where the sweep ranks the trial (``skelray.sweep.aggregate.best_first``: lower is better),
    # the leaderboard's rule; None for a candidate not read from a sweep's trials table.
    order: tuple | None = None

    @property
    def val_top1(self) -> float:
        return top1(self.val_logits, self.val_labels)

    @property
    def test_top1(self) -> float | None:
        return top1(self.test_logits, self.test_labels) if len(self.test_labels) else None


FOLD_COLUMN = "config.data.split.fold"


def _number(*values: Any) -> float | None:
    for v in values:
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            return float(v)
    return None


def _test_logits(saved: record.Logits) -> tuple[np.ndarray, np.ndarray]:
    """The test logits and labels of a checkpoint; empty when its epoch did not evaluate test."""
    if saved.test_labels is None:
        return np.zeros((0, 0)), np.zeros((0,), dtype=np.int64)
    return saved.test_logits, saved.test_labels


def load_candidates(sweep_dir: str | Path) -> tuple[list[Candidate], list[str]]:
    """Every usable trial of the sweep, and a line per trial left out saying why."""
    from skelray.sweep.aggregate import best_first
    from skelray.sweep.results import Location, load_costs, read_results, require_sweep

    require_sweep(str(sweep_dir))  # before anything is read: a wrong folder is refused untouched
    sweep = Path(sweep_dir).resolve()
    trials, _ = read_results(str(sweep))
    costs = load_costs(Location.parse(str(sweep)))
    mode = record.load_sweep_state(sweep).mode
    out: list[Candidate] = []
    skipped: list[str] = []
    rows = trials.to_pylist()
    # Folds of a k-fold sweep validate on different clips, and members are chosen clip by clip
    # on validation logits: ensemble the trials of one fold (the first).
    folds = sorted({r.get(FOLD_COLUMN) for r in rows if r.get(FOLD_COLUMN) is not None})
    for row in rows:
        name = f"{row['run']}/{row['trial_name']}"
        if len(folds) > 1 and row.get(FOLD_COLUMN) != folds[0]:
            skipped.append(f"{name}: fold {row.get(FOLD_COLUMN)} (members are chosen on the clips of fold "
                           f"{folds[0]}; other folds validate on other clips)")
            continue
        if row.get("status") not in USABLE:
            skipped.append(f"{name}: status {row.get('status')}")
            continue
        if not row.get("best_checkpoint"):
            skipped.append(f"{name}: no checkpoint")
            continue
        rel = posixpath.join(row["run"], row["trial_name"], row["best_checkpoint"])
        ckpt = sweep / rel
        if not record.has_checkpoint_record(ckpt):
            skipped.append(f"{name}: {rel} lacks {record.LOGITS_FILE} or {record.TRIAL_FILE}")
            continue
        info = record.load_checkpoint_record(ckpt)
        logits = record.load_logits(ckpt)
        test_logits, test_labels = _test_logits(logits)
        b1 = record.latency_key(1)
        params = _number(info.sizes.get(record.PARAMS), row.get(record.PARAMS))
        measured = costs.entries.get(info.sizes.get(record.STRUCTURE) or "")
        latency = _number(measured.latency_ms(1) if measured else None, info.sizes.get(b1), row.get(b1))
        if params is None or latency is None:
            skipped.append(f"{name}: no measured params/latency")
            continue
        model = info.model
        out.append(Candidate(
            key=name, run=row["run"], trial_name=row["trial_name"], checkpoint=rel,
            model=(model.name if model else None) or row.get("config.model.name", "?"),
            stream=(info.preprocess or {}).get("stream") or row.get("config.data.stream", "j"),
            pa_count=model.kwargs.get("pa_count") if model else None,
            sparsity=model.sparsity_level if model else None, params=params,
            macs=_number(info.sizes.get(record.MACS), row.get(record.MACS)) or 0.0,
            latency_ms=latency, val_logits=logits.val_logits, val_labels=logits.val_labels,
            test_logits=test_logits, test_labels=test_labels, order=best_first(row, mode)))
    _check_same_clips(out)
    return out, skipped



def _check_same_clips(cands: list[Candidate]) -> None:
    """Summing logits clip by clip only means something if every trial saw the same clips."""
    if not cands:
        return
    ref = cands[0]
    if len(ref.val_labels) == 0:
        raise DataError("the trials saved no validation logits (an empty validation split)", where=ref.key,
                        fix="choosing members needs validation clips: set data.split.val "
                            "(or null for a hold-out)")
    for c in cands[1:]:
        for split in ("val", "test"):
            a, b = getattr(ref, f"{split}_labels"), getattr(c, f"{split}_labels")
            if a.shape != b.shape or not np.array_equal(a, b):
                raise DataError(f"its {split} labels differ from {ref.key}'s ({len(b)} vs {len(a)} clips)",
                                where=c.key, fix="ensemble trials of one sweep trained on one dataset split")
        if c.val_logits.shape[1] != ref.val_logits.shape[1]:
            raise DataError(f"has {c.val_logits.shape[1]} classes, {ref.key} has {ref.val_logits.shape[1]}",
                            where=c.key, fix="ensemble trials trained on the same classes")
