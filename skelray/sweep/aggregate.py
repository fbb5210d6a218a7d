"""Per-config summaries of a sweep's trials: one row per configuration, over its replicates.

A configuration run with several seeds (``seeds: N`` or a grid over ``train.seed``) or folds
(``data.split.val: {folds: K}``) has several trials that differ only in those columns. Ranking
trials would reward the luckiest seed; ranking configurations by their mean, with a Student-t
interval (``skelray.sweep.stats``), says how sure the ranking is. A configuration whose score
interval overlaps the best one's is marked as tied with it.

``aggregate(rows)`` is the one place this is computed: ``skelray.sweep.results`` writes it
as ``results/configs.parquet`` and adds each trial's config summary to ``trials.parquet``; the
leaderboard, the Pareto plots and the ensemble builder read it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from skelray import record
from skelray.sweep.stats import LEVEL, Interval, interval, ties

# The config columns that make replicates of one configuration rather than different ones.
REPLICATE_COLUMNS = ("config.train.seed", "config.data.split.fold")
PREFIX = "per_config."  # the trials table's columns that carry a trial's config summary
# What is summarised per config: the trials table column and its name in the summary.
SUMMARISED = {"score": "score", "val_top1": f"best.{record.VAL_TOP1}", "test_top1": f"best.{record.TEST_TOP1}"}
FINISHED = ("TERMINATED", "STOPPED")  # statuses whose scores count (ASHA-stopped trials count too)


def config_id(row: Mapping[str, Any]) -> str:
    """A short stable id of a trial's configuration: every config column but the replicate ones."""
    items = sorted((k, row.get(k)) for k in row if k.startswith("config.") and k not in REPLICATE_COLUMNS)
    return hashlib.sha1(json.dumps(items, default=str).encode()).hexdigest()[:10]


def _replicate_axes(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Replicate columns that vary within at least one configuration."""
    by_config: dict[str, dict[str, set]] = {}
    for r in rows:
        seen = by_config.setdefault(r["per_config.id"], {})
        for col in REPLICATE_COLUMNS:
            seen.setdefault(col, set()).add(json.dumps(r.get(col), default=str))
    return [c for c in REPLICATE_COLUMNS if any(len(s.get(c, ())) > 1 for s in by_config.values())]


def aggregate(trials: Iterable[Mapping[str, Any]], *, mode: str = "max",
              level: float = LEVEL) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(trial rows with per-config columns, config rows)`` from the trials table's rows.

    Each config row has: ``id``, the config columns (replicate columns dropped), ``n`` (trials
    with a score), ``trials`` (their names), and for score, val top-1 and test top-1 (at each
    trial's chosen checkpoint): ``*_mean``, ``*_se``, ``*_low``, ``*_high`` (a two-sided
    ``level`` Student-t interval; None with one replicate); ``tie`` (its score interval
    overlaps the best config's, the best included) and ``rank`` (by mean score). Sizes come
    from the config's first trial (replicates share an architecture). Only finished or
    early-stopped trials count; a config with none has ``n`` 0 and no rank.
    """
    rows = [dict(r) for r in trials]
    for r in rows:
        r[f"{PREFIX}id"] = config_id(r)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r[f"{PREFIX}id"], []).append(r)
    configs: list[dict[str, Any]] = []
    for cid, members in groups.items():
        scored = [m for m in members if m.get("status") in FINISHED and m.get("score") is not None]
        first = members[0]
        out: dict[str, Any] = {"id": cid, "n": len(scored), "trials": [m["trial_name"] for m in scored]}
        out.update({k: v for k, v in first.items() if k.startswith("config.") and k not in REPLICATE_COLUMNS})
        for key in record.SIZE_KEYS:
            out[key] = first.get(key)
        out.update({k: v for k, v in first.items() if record.is_latency_key(k)})
        for name, column in SUMMARISED.items():
            values = [m[column] for m in scored if m.get(column) is not None]
            iv = interval(values, level) if values else None
            out[f"{name}_mean"] = iv.mean if iv else None
            out[f"{name}_se"] = iv.se if iv else None
            out[f"{name}_low"] = iv.low if iv else None
            out[f"{name}_high"] = iv.high if iv else None
            out[f"{name}_n"] = iv.n if iv else 0
        configs.append(out)
    ranked = [c for c in configs if c["score_mean"] is not None]
    sign = -1.0 if mode == "max" else 1.0
    ranked.sort(key=lambda c: sign * c["score_mean"])  # stable: ties keep the earlier config first
    tied = ties([_interval_of(c) for c in ranked], mode)
    for rank, (c, t) in enumerate(zip(ranked, tied), 1):
        c["rank"], c["tie"] = rank, t
    for c in configs:
        c.setdefault("rank", None)
        c.setdefault("tie", None)
    configs.sort(key=lambda c: (c["rank"] is None, c["rank"] or 0))
    by_id = {c["id"]: c for c in configs}
    for r in rows:
        c = by_id[r[f"{PREFIX}id"]]
        for key in ("n", "rank", "tie", "score_mean", "score_low", "score_high",
                    "test_top1_mean", "test_top1_low", "test_top1_high"):
            r[f"{PREFIX}{key}"] = c[key]
    replicated = _replicate_axes(rows)
    for c in configs:
        c["replicates"] = ",".join(col.removeprefix("config.") for col in replicated)
    return rows, configs


def _interval_of(c: Mapping[str, Any]) -> Interval:
    return Interval(c["score_mean"], c["score_n"], c["score_se"], c["score_low"], c["score_high"])


def _number(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _run_number(run: Any) -> int:
    """``run-10`` -> 10, so the tenth ``--more`` run sorts after the second."""
    tail = str(run or "").rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def best_first(row: Mapping[str, Any], mode: str = "max") -> tuple:
    """The sort key that ranks a sweep's trials, best first: the one rule of the leaderboard
    and of ``skelray ensemble build``'s best single trial (``row``: a trials table row).

    1. trials with a score before those without (the score: the sweep's metric over the
       epochs its scope names; stores from before scores existed: validation top-1);
    2. the better score of the trial's configuration (its mean over seeds / folds,
       ``per_config.score_mean``; the trial's own when it has no replicates);
    3. the better score of the trial itself;
    4. on an exact tie, the earlier trial: the lower run number (``run-0`` before ``--more``
       runs), then the trial name (it starts with Tune's trial counter: the first started).
    """
    sign = -1.0 if mode == "max" else 1.0
    own = _number(row.get("score")) if "score" in row else _number(row.get(SUMMARISED["val_top1"]))
    config = _number(row.get(f"{PREFIX}score_mean"))
    config = own if config is None else config
    return (own is None, sign * (config or 0.0), sign * (own or 0.0), _run_number(row.get("run")),
            str(row.get("trial_name") or ""))
