"""Intervals for per-config scores: mean, standard error and a Student-t confidence interval
over a config's seeds (or folds), and which configs tie with the best.

A sweep's ranking is only as good as its noise allows: with 3 seeds of a 100-clip validation
set, two configs a point apart are usually indistinguishable. ``interval`` puts a number on
that; ``ties`` marks every config whose interval overlaps the best config's, so a leaderboard
can say "these are tied" instead of ranking noise. No SciPy: the t quantile is computed here
(regularised incomplete beta by continued fraction, inverted by bisection).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """The mean of ``n`` values, its standard error and a two-sided ``level`` interval.
    With one value there is no spread: ``se``, ``low`` and ``high`` are None."""

    mean: float
    n: int
    se: float | None
    low: float | None
    high: float | None
    level: float = LEVEL

    @property
    def half_width(self) -> float | None:
        return None if self.high is None else self.high - self.mean

    def overlaps(self, other: Interval) -> bool:
        """Whether the two intervals share a point (a value without an interval is a point)."""
        lo_a, hi_a = (self.low, self.high) if self.low is not None else (self.mean, self.mean)
        lo_b, hi_b = (other.low, other.high) if other.low is not None else (other.mean, other.mean)
        return lo_a <= hi_b and lo_b <= hi_a


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (``t_quantile(0.975, 2)`` = 4.303)."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"need 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean, standard error (sample sd / sqrt(n)) and the t interval of ``values``."""
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not xs:
        raise ValueError("interval() needs at least one value")
    n = len(xs)
    mean = sum(xs) / n
    if n == 1:
        return Interval(mean, 1, None, None, None, level)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    se = sd / math.sqrt(n)
    half = t_quantile(0.5 + level / 2.0, n - 1) * se
    return Interval(mean, n, se, mean - half, mean + half, level)


def seeds_needed(iv: Interval, half_width: float, *, cap: int = 100) -> int | None:
    """The fewest values whose ``iv.level`` t interval would be at most ``half_width`` wide on
    each side, if their spread stayed that of ``iv``'s values: how many seeds a claim needs to
    be decided. None when ``iv`` has no spread (one value) or ``half_width`` is not positive (the
    mean sits on the threshold itself); ``cap + 1`` when more than ``cap`` would be needed."""
    if iv.se is None or half_width <= 0:
        return None
    sd = iv.se * math.sqrt(iv.n)
    for n in range(2, cap + 1):
        if t_quantile(0.5 + iv.level / 2.0, n - 1) * sd / math.sqrt(n) <= half_width:
            return n
    return cap + 1


def ties(intervals: Sequence[Interval], mode: str = "max") -> list[bool]:
    """For each interval: does it overlap the best one's (by mean; the best ties itself)?"""
    if not intervals:
        return []
    pick = max if mode == "max" else min
    best = pick(range(len(intervals)), key=lambda i: intervals[i].mean)
    return [i == best or iv.overlaps(intervals[best]) for i, iv in enumerate(intervals)]
