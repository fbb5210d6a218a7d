"""Greedy selection on hand-made logits: with replacement, under each budget, never worse
than the best candidate that fits."""

from __future__ import annotations

import numpy as np
import pytest

from skelray.ensemble._candidates import Candidate
from skelray.ensemble._select import Budget, greedy_select, refine_weights
from skelray.ensemble.combine import softmax, top1, top_k, weighted_logits
from skelray.sweep.aggregate import best_first

LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])


def cand(key: str, right: list[int], *, params: float = 100.0, ms: float = 1.0,
         margin: float = 2.0) -> Candidate:
    """A candidate whose logits favour the true class on the clips in ``right`` and class
    (label + 1) % 3 elsewhere."""
    logits = np.zeros((len(LABELS), 3), dtype=np.float32)
    for i, y in enumerate(LABELS):
        logits[i, y if i in right else (y + 1) % 3] = margin
    return Candidate(key=key, run="run-0", trial_name=key, checkpoint=f"run-0/{key}/c", model="m", stream="j",
                     pa_count=1, sparsity=None, params=params, macs=0.0, latency_ms=ms, val_logits=logits,
                     val_labels=LABELS, test_logits=logits, test_labels=LABELS)


def test_complementary_members_beat_the_best_single():
    # a and b are each right on different halves; c is right on their overlap only.
    a = cand("a", [0, 1, 2, 3, 4, 5, 6])
    b = cand("b", [3, 4, 5, 6, 7, 8, 9])
    c = cand("c", [7, 8, 9], margin=3.0)
    sel = greedy_select([a, b, c], Budget())
    assert sel is not None
    assert sel.val_top1 > max(x.val_top1 for x in (a, b, c))
    w = sel.weights()
    assert abs(sum(w.values()) - 1) < 1e-9
    combined = weighted_logits([[a, b, c][i].val_logits for i in w], list(w.values()))
    assert top1(combined, LABELS) == pytest.approx(sel.val_top1)


def test_selection_is_with_replacement():
    # b alone is best; a helps only when b counts double (a's margin is larger).
    a = cand("a", [0, 1, 2, 3], margin=3.0)
    b = cand("b", [3, 4, 5, 6, 7, 8, 9], margin=2.0)
    sel = greedy_select([a, b], Budget(), rounds=10)
    assert sel is not None and max(sel.counts.values()) >= 2


def test_parameter_budget_bounds_distinct_members():
    a = cand("a", [0, 1, 2, 3, 4, 5, 6], params=100)
    b = cand("b", [3, 4, 5, 6, 7, 8, 9], params=100)
    c = cand("c", [0, 1, 2, 3, 4, 5], params=50)
    sel = greedy_select([a, b, c], Budget(params=150))
    chosen = [[a, b, c][i] for i in sel.counts]
    assert sum(x.params for x in chosen) <= 150
    # the best candidate that fits on its own is matched or beaten
    assert sel.val_top1 >= max(x.val_top1 for x in (a, b, c))


def test_latency_budget_and_max_members():
    cands = [cand("a", [0, 1, 2, 3, 4, 5, 6], ms=5), cand("b", [3, 4, 5, 6, 7, 8, 9], ms=5),
             cand("c", [7, 8, 9], ms=1, margin=3.0)]
    sel = greedy_select(cands, Budget(latency_ms=6))
    assert sum(cands[i].latency_ms for i in sel.counts) <= 6
    sel = greedy_select(cands, Budget(max_members=1))
    assert len(sel.counts) == 1


def test_nothing_fits_gives_none():
    assert greedy_select([cand("a", [0], params=10)], Budget(params=5)) is None


def test_refined_weights_keep_top1_and_sum_to_one():
    cands = [cand("a", [0, 1, 2, 3, 4, 5, 6]), cand("b", [3, 4, 5, 6, 7, 8, 9]),
             cand("c", [7, 8, 9], margin=3.0)]
    sel = greedy_select(cands, Budget())
    before = sel.weights()
    after = refine_weights(cands, before)
    assert set(after) == set(before) and abs(sum(after.values()) - 1) < 1e-9
    acc = lambda w: top1(weighted_logits([cands[i].val_logits for i in w], list(w.values())), LABELS)
    assert acc(after) >= acc(before)


def test_top_k_is_sorted_and_labelled():
    probs = softmax(np.array([[0.0, 2.0, 1.0]]))
    (row,) = top_k(probs, 2, ["x", "y", "z"])
    assert [r["label"] for r in row] == ["y", "z"]
    assert row[0]["probability"] > row[1]["probability"]
    assert len(top_k(probs, 10, ["x", "y", "z"])[0]) == 3


def test_best_single_is_the_sweeps_pick_when_trials_have_scores():
    from skelray.ensemble.builder import _best

    sharp, steady = cand("sharp", list(range(9))), cand("steady", list(range(7)))
    assert _best([sharp, steady]).key == "sharp"  # no scores: validation top-1 of the checkpoints
    # The sweep ranked steady first (e.g. by its last five epochs): the report compares with that.
    sharp.order = best_first({"score": 0.80, "run": "run-0", "trial_name": "t00000-sharp"})
    steady.order = best_first({"score": 0.85, "run": "run-0", "trial_name": "t00001-steady"})
    assert _best([sharp, steady]).key == "steady"
    steady.order = None  # a candidate not read from a trials table: validation top-1 for all
    assert _best([sharp, steady]).key == "sharp"


def test_ties_rank_as_the_leaderboard_ranks_them():
    # Equal scores: the earlier trial first, whatever order the rows come in, and the
    # leaderboard and the ensemble's best single trial name the same one.
    import pyarrow as pa

    from skelray.ensemble.builder import _best
    from skelray.sweep.report import trial_leaderboard

    rows = [{"run": "run-1", "trial_name": "t00000-b", "status": "TERMINATED", "epochs_run": 1, "score": 0.5},
            {"run": "run-0", "trial_name": "t00002-c", "status": "TERMINATED", "epochs_run": 1, "score": 0.5},
            {"run": "run-0", "trial_name": "t00001-a", "status": "TERMINATED", "epochs_run": 1, "score": 0.4}]
    for mode, first in (("max", "t00002-c"), ("min", "t00001-a")):
        table = trial_leaderboard(pa.Table.from_pylist(rows), mode=mode)
        listed = list(table.columns[1].cells)
        cands = [cand(r["trial_name"], list(range(5))) for r in rows]
        for c, r in zip(cands, rows):
            c.order = best_first(r, mode)
        assert listed[0] == first and _best(cands).key == first
    # The --more run's trial with the same score comes after run-0's; run-10 after run-2.
    assert sorted(["run-10", "run-2", "run-0"], key=lambda run: best_first({"run": run, "score": 1.0})) == \
        ["run-0", "run-2", "run-10"]
