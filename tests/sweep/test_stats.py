"""Per-config intervals and ties, checked against values computed by hand and known tables."""

from __future__ import annotations

import math
import random

import pytest

from skelray.sweep.stats import Interval, interval, t_cdf, t_quantile, ties


@pytest.mark.parametrize(("df", "q"), [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423),
                                       (1000, 1.9623)])
def test_t_quantile_matches_the_tables(df: int, q: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(q, abs=1e-4)
    assert t_quantile(0.025, df) == pytest.approx(-q, abs=1e-4)
    assert t_cdf(q, df) == pytest.approx(0.975, abs=1e-5)  # q is rounded to 4 places


def test_interval_of_three_seeds_by_hand() -> None:
    iv = interval([0.80, 0.84, 0.82])
    sd = math.sqrt(((0.80 - 0.82) ** 2 + (0.84 - 0.82) ** 2) / 2)  # 0.02
    se = sd / math.sqrt(3)
    assert iv.mean == pytest.approx(0.82) and iv.n == 3 and iv.se == pytest.approx(se)
    assert iv.low == pytest.approx(0.82 - 4.302653 * se) and iv.high == pytest.approx(0.82 + 4.302653 * se)


def test_one_value_has_no_interval_and_nans_are_dropped() -> None:
    iv = interval([0.7, float("nan")])
    assert (iv.mean, iv.n, iv.se, iv.low, iv.high) == (0.7, 1, None, None, None)
    with pytest.raises(ValueError):
        interval([])


def test_the_interval_covers_the_true_mean_about_95_percent_of_the_time() -> None:
    rng = random.Random(0)
    hits = sum(interval([rng.gauss(1.0, 0.3) for _ in range(4)]).overlaps(Interval(1.0, 1, None, None, None))
               for _ in range(4000))
    assert 0.935 < hits / 4000 < 0.965


def test_configs_whose_intervals_overlap_the_best_are_ties() -> None:
    best = interval([0.90, 0.92, 0.91])
    close = interval([0.89, 0.91, 0.90])
    far = interval([0.70, 0.71, 0.72])
    assert ties([close, best, far]) == [True, True, False]
    assert ties([close, best, far], mode="min") == [False, False, True]
    assert ties([]) == []


def test_seeds_needed_is_the_fewest_whose_interval_is_narrow_enough() -> None:
    import math

    from skelray.sweep.stats import interval, seeds_needed, t_quantile

    iv = interval([0.80, 0.83, 0.86])  # sd 0.03
    n = seeds_needed(iv, 0.01)
    assert n is not None and 2 < n <= 100
    half = lambda k: t_quantile(0.975, k - 1) * 0.03 / math.sqrt(k)  # noqa: E731
    assert half(n) <= 0.01 + 1e-12 < half(n - 1)
    assert seeds_needed(iv, 0.3) == 2  # two seeds: 12.71 x 0.03 / sqrt(2) = 0.27
    assert seeds_needed(iv, 1e-6) == 101  # past the cap
    assert seeds_needed(interval([0.8]), 0.01) is None and seeds_needed(iv, 0.0) is None
