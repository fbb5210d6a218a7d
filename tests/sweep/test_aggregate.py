"""Per-config summaries: means and intervals over seeds, computed from the trial rows."""

from __future__ import annotations

import math

import pytest

from skelray.sweep.aggregate import aggregate, config_id

T975_2 = 4.302652729749752  # Student t, 97.5% quantile, 2 degrees of freedom


def row(pa_count: int, seed: int, score: float, test: float, status: str = "TERMINATED") -> dict:
    return {"trial_name": f"t-pa{pa_count}-s{seed}", "status": status, "score": score,
            "best.val/top1": score, "best.test/top1": test, "params": 1000.0, "macs": 5.0, "latency_ms_b1": 2.0,
            "config.model.kwargs.pa_count": pa_count, "config.train.seed": seed, "config.train.lr": 0.1}


def test_seeds_of_one_config_share_its_id_and_other_configs_do_not() -> None:
    assert config_id(row(1, 0, 0.5, 0.5)) == config_id(row(1, 2, 0.9, 0.1))
    assert config_id(row(1, 0, 0.5, 0.5)) != config_id(row(3, 0, 0.5, 0.5))


def test_interval_is_computed_from_the_trial_rows() -> None:
    rows = [row(1, s, v, t) for s, (v, t) in enumerate([(0.80, 0.70), (0.84, 0.74), (0.82, 0.75)])]
    rows += [row(3, s, v, t) for s, (v, t) in enumerate([(0.60, 0.50), (0.62, 0.52), (0.61, 0.51)])]
    trials, configs = aggregate(rows)
    best, other = configs
    assert best["config.model.kwargs.pa_count"] == 1 and best["rank"] == 1 and other["rank"] == 2
    assert "config.train.seed" not in best and best["n"] == 3 and best["replicates"] == "train.seed"
    se = math.sqrt(((0.80 - 0.82) ** 2 + (0.84 - 0.82) ** 2) / 2) / math.sqrt(3)
    assert best["score_mean"] == pytest.approx(0.82) and best["score_se"] == pytest.approx(se)
    assert best["score_low"] == pytest.approx(0.82 - T975_2 * se)
    assert best["score_high"] == pytest.approx(0.82 + T975_2 * se)
    tests = [0.70, 0.74, 0.75]
    mean = sum(tests) / 3
    se_t = math.sqrt(sum((x - mean) ** 2 for x in tests) / 2) / math.sqrt(3)
    assert best["test_top1_mean"] == pytest.approx(mean) and best["test_top1_high"] == pytest.approx(mean + T975_2 * se_t)
    assert best["tie"] is True and other["tie"] is False
    # Every trial row carries its config's summary.
    assert {r["per_config.rank"] for r in trials if r["config.model.kwargs.pa_count"] == 3} == {2}
    assert all(r["per_config.score_mean"] == pytest.approx(0.82) for r in trials[:3])


def test_overlapping_configs_tie_and_min_mode_ranks_low_first() -> None:
    rows = [row(1, s, v, 0.5) for s, v in enumerate([0.80, 0.90, 0.85])]
    rows += [row(3, s, v, 0.5) for s, v in enumerate([0.82, 0.84, 0.83])]
    _, configs = aggregate(rows)
    assert [c["tie"] for c in configs] == [True, True]
    _, configs = aggregate(rows, mode="min")
    assert configs[0]["score_mean"] == pytest.approx(0.83)


def test_unfinished_trials_do_not_count_and_one_seed_has_no_interval() -> None:
    rows = [row(1, 0, 0.8, 0.7), row(1, 1, 0.1, 0.1, status="ERROR"), row(5, 0, None, None, status="PENDING")]
    _, configs = aggregate(rows)
    one, empty = configs
    assert one["n"] == 1 and one["score_mean"] == pytest.approx(0.8) and one["score_low"] is None
    assert one["replicates"] == "train.seed" and one["trials"] == ["t-pa1-s0"]
    assert empty["n"] == 0 and empty["rank"] is None and empty["score_mean"] is None
