"""Verdicts: how the per-seed differences of a claim's two sides decide it.

Each seed gives one difference d = a - b (test top-1, as a fraction); their mean gets a 95%
Student-t interval (``skelray.sweep.stats.interval``, the one home of the statistics). Rules:

- ``better`` (a beats b by at least ``by``): *not held* if the interval's upper end is below
  ``by`` (the data exclude an improvement as large as claimed); *held* if its lower end is above
  0 and its upper end reaches ``by`` (a is better, and the claimed size is within the
  interval); *inconclusive* otherwise (the interval contains 0 and ``by``).
- ``noninferior`` (a loses at most ``margin`` against b): *held* if the interval's lower end is
  above ``-margin``; *not held* if its upper end is below ``-margin`` (a loss larger than the
  margin is certain); *inconclusive* otherwise.
- ``equivalent`` (a equals b within ``within``): *held* if the whole interval lies inside
  [-within, within]; *not held* if it lies wholly outside it; *inconclusive* otherwise.

Before the rule: fewer than 2 paired seeds give no interval (*inconclusive*, "an interval needs
2 or more seeds"); after it, a run shorter than the paper's schedule turns a verdict about the
paper's claim into *inconclusive*, saying what the data alone would say.
"""

from __future__ import annotations

from dataclasses import dataclass

from skelray.sweep.stats import Interval, interval, seeds_needed

HELD, NOT_HELD, INCONCLUSIVE = "held", "not held", "inconclusive"


@dataclass(frozen=True)
class Decision:
    verdict: str
    rule: str  # the rule, with its numbers, in words
    reason: str  # why this verdict, in words


def _pts(x: float) -> str:
    return f"{100 * x:+.2f}"


def _more_seeds(iv: Interval, half_width: float) -> str:
    """How many seeds would decide an inconclusive claim: those whose interval, at the spread
    seen, is narrower than ``half_width`` (the distance from the mean to the nearer threshold
    it would have to clear)."""
    n = seeds_needed(iv, half_width)
    if n is None:
        return "the mean sits on the threshold: more seeds narrow the interval, not the question"
    if n > 100:
        return "at this spread more than 100 seeds would be needed to decide it"
    return f"at this spread about {n} seeds would decide it, against {iv.n} run"


def decide(rule: str, diffs: list[float], *, by: float = 0.0, within: float = 0.01,
           margin: float = 0.01, epochs: int | None = None,
           paper_epochs: int | None = None) -> tuple[Decision, Interval | None]:
    """The decision on the per-seed differences ``diffs`` (fractions), and their interval."""
    if rule == "better":
        text = (f"a - b over seeds, 95% t interval [lo, hi]: not held if hi < {100 * by:.2f} points; "
                f"held if lo > 0 and hi >= {100 * by:.2f}; else inconclusive")
    elif rule == "equivalent":
        text = (f"a - b over seeds, 95% t interval [lo, hi]: held if inside +-{100 * within:.2f} points; "
                "not held if wholly outside; else inconclusive")
    elif rule == "noninferior":
        text = (f"a - b over seeds, 95% t interval [lo, hi]: held if lo > -{100 * margin:.2f} points; "
                f"not held if hi < -{100 * margin:.2f}; else inconclusive")
    else:
        raise ValueError(f"unknown rule {rule!r}")
    if len(diffs) < 2:
        return Decision(INCONCLUSIVE, text, f"{len(diffs)} paired seed(s): an interval needs 2 or more "
                        "(run the size with seeds >= 2, or a larger size)"), (interval(diffs) if diffs else None)
    iv = interval(diffs)
    assert iv.low is not None and iv.high is not None
    # Shown cut to [-100, +100] points, the range a difference of two top-1s can take (the rules
    # compare with thresholds inside it, so cutting changes no verdict).
    span = (f"mean {_pts(iv.mean)} points, interval [{_pts(max(iv.low, -1.0))}, {_pts(min(iv.high, 1.0))}], "
            f"{iv.n} seeds")
    if rule == "better":
        if iv.high < by:
            d = Decision(NOT_HELD, text, f"{span}: the upper end is below the claimed {100 * by:.2f} points")
        elif iv.low > 0:
            d = Decision(HELD, text, f"{span}: a is better and the claimed size is inside the interval")
        else:
            d = Decision(INCONCLUSIVE, text, f"{span}: the interval holds both no gain and the claimed one "
                         f"({_more_seeds(iv, max(iv.mean, by - iv.mean))})")
    elif rule == "noninferior":
        if iv.low > -margin:
            d = Decision(HELD, text, f"{span}: any loss is smaller than {100 * margin:.2f} points")
        elif iv.high < -margin:
            d = Decision(NOT_HELD, text, f"{span}: the loss is larger than {100 * margin:.2f} points")
        else:
            d = Decision(INCONCLUSIVE, text, f"{span}: holds losses both within and beyond "
                         f"{100 * margin:.2f} points ({_more_seeds(iv, abs(iv.mean + margin))})")
    else:
        if -within <= iv.low and iv.high <= within:
            d = Decision(HELD, text, f"{span}: inside the tolerance")
        elif iv.low > within or iv.high < -within:
            d = Decision(NOT_HELD, text, f"{span}: wholly outside the tolerance")
        else:
            d = Decision(INCONCLUSIVE, text, f"{span}: straddles the tolerance "
                         f"({_more_seeds(iv, abs(abs(iv.mean) - within))})")
    if paper_epochs is not None and epochs is not None and epochs < paper_epochs:
        d = Decision(INCONCLUSIVE, text, f"trained {epochs} epochs, the paper's schedule is {paper_epochs}: "
                     f"on these epochs the data alone say '{d.verdict}' ({d.reason})")
    return d, iv
