"""Choosing the validation clips: the hold-out that mirrors the test protocol, and k-fold folds."""

from __future__ import annotations

import numpy as np
import pytest

from skelray.config import DataSpec
from skelray.config.trial import FoldSpec
from skelray.data import synthetic
from skelray.data._types import SkeletonSequence
from skelray.errors import DataError
from skelray.record import TrialRecord
from skelray.train.data import (
    DataBundle,
    describe_validation,
    differing_tags,
    fold_values,
    load_splits,
    plan_fold,
    plan_holdout,
)

# 4 classes x 20 clips, 10 subjects (2 clips of each class each): subjects 0-4 train, 5-9 test.
SUBJECTS = {"format": "synthetic", "layout": "kinect_v1_20", "num_classes": 4, "num_per_class": 20,
            "frames": 8, "persons": 1, "subjects": 10}


def _subject_data(**split) -> tuple[DataBundle, dict[str, dict]]:
    spec = DataSpec(**SUBJECTS, split={"train": "xsub_train", "val": None, "test": "xsub_test", **split})
    tags = {s.id: s.tags for s in synthetic(4, 20, "kinect_v1_20", 8, 0, subjects=10).sequences}
    return load_splits(spec), tags


def _subjects(bundle: DataBundle, tags: dict[str, dict], split: str) -> set[int]:
    return {tags[i]["subject"] for i in bundle.splits[split].ids}


@pytest.mark.parametrize("group", ["auto", ["subject"]])
def test_cross_subject_validation_holds_out_whole_training_subjects(group):
    bundle, tags = _subject_data(holdout_group=group)
    train, val, test = (_subjects(bundle, tags, s) for s in ("train", "val", "test"))
    assert val and not val & train  # no training subject has a clip in validation
    assert train | val == {0, 1, 2, 3, 4} and test == {5, 6, 7, 8, 9}
    # A held-out subject goes whole: every class of it (2 clips each).
    held = [tags[i] for i in bundle.splits["val"].ids]
    assert len(held) == 8 * len(val) and sorted(bundle.splits["val"].labels.tolist()) == sorted([0, 1, 2, 3] * 2)
    why = "the test split differs from train by subject" if group == "auto" else "holdout_group: [subject]"
    assert bundle.holdout == f"whole subjects ({why}): 1 of 5 training subjects (2), 8 clips (20% of the training split)"


def test_clip_by_clip_validation_scores_training_subjects():
    bundle, tags = _subject_data(holdout_group="clip")
    assert _subjects(bundle, tags, "val") <= _subjects(bundle, tags, "train")
    assert bundle.holdout == "clip by clip (holdout_group: clip), 10% of each class: 4 clips"


def test_auto_without_a_differing_tag_or_a_test_split_is_the_recording_rule():
    # The per-class train/test split of the same clips: every subject is on both sides.
    spec = DataSpec(**SUBJECTS, split={"train": "train", "val": None, "test": "test"})
    assert describe_validation(spec) == [
        "clip by clip, 10% of each class (no tag tells the test split apart from train): 4 clips"]
    spec = DataSpec(**SUBJECTS, split={"train": "xsub_train", "val": None, "test": None})
    assert describe_validation(spec) == ["clip by clip, 10% of each class (no test split to mirror): 4 clips"]


def _views(train_views, test_views, subjects=4, takes=3, classes=3) -> tuple[list, list[int], list[int]]:
    """Every (class, subject, take) filmed once from each view: one recording, several clips."""
    seqs, train, test = [], [], []
    for c in range(classes):
        for s in range(subjects):
            for e in range(takes):
                for v in (*train_views, *test_views):
                    (train if v in train_views else test).append(len(seqs))
                    seqs.append(SkeletonSequence(f"a{c}_s{s}_e{e}_v{v}", c, np.zeros((1, 2, 20, 3), np.float32),
                                                 tags={"subject": s, "take": e, "view": v}))
    return seqs, train, test


def _recording(q: SkeletonSequence) -> tuple:
    return q.label, q.tags["subject"], q.tags["take"]


def test_two_training_views_fall_back_to_keeping_recordings_together():
    # NW-UCLA's cross-view protocol: views 1 and 2 train, view 3 tests. A whole view would be
    # half the training clips, so auto keeps the views of a recording together instead.
    seqs, train, test = _views((1, 2), (3,))
    assert differing_tags(seqs, train, test) == ["view"]
    plan = plan_holdout(seqs, train, test, "auto")
    in_train = {_recording(seqs[i]) for i in plan.kept}
    assert plan.held and not any(_recording(seqs[i]) in in_train for i in plan.held)
    assert {seqs[i].tags["view"] for i in plan.held} == {1, 2}
    assert plan.rule == ("the views of one recording together, 10% of each class (the test split differs from "
                         "train by view, but each of the 2 training views holds over 25% of the training clips): "
                         "6 clips")
    # Asked for by name, whole views are refused: there is no way to hold one out within the cap.
    with pytest.raises(DataError) as info:
        plan_holdout(seqs, train, test, ["view"])
    assert info.value.where == "data.split.holdout_group" and "auto" in info.value.fix


def test_five_training_views_hold_out_a_whole_view():
    seqs, train, test = _views((1, 2, 3, 4, 5), (6,))
    plan = plan_holdout(seqs, train, test, "auto")
    held_views = {seqs[i].tags["view"] for i in plan.held}
    assert len(held_views) == 1 and not held_views & {seqs[i].tags["view"] for i in plan.kept}
    assert plan.rule.startswith("whole views (the test split differs from train by view): 1 of 5 training views")


def test_k_fold_partitions_the_training_subjects():
    ds = synthetic(4, 20, "kinect_v1_20", 8, 0, subjects=10)
    index = {s.id: i for i, s in enumerate(ds.sequences)}
    train = sorted(index[i] for i in ds.splits["xsub_train"])
    folds = fold_values(ds.sequences, train, "subject", 3)
    flat = [v for f in folds for v in f]
    assert sorted(flat) == ["0", "1", "2", "3", "4"] and len(set(flat)) == 5 and all(folds)
    spec = FoldSpec(folds=3, by="subject")
    seen: list[int] = []
    for k in range(3):
        plan = plan_fold(ds.sequences, train, spec, k)
        val = {str(ds.sequences[i].tags["subject"]) for i in plan.held}
        assert val == set(folds[k]) and not val & {str(ds.sequences[i].tags["subject"]) for i in plan.kept}
        assert sorted(plan.kept + plan.held) == train
        assert plan.rule.startswith(f"fold {k} of 3 by subject: {len(val)} of 5 training subjects")
        seen += plan.held
    assert sorted(seen) == train  # every training clip validates in exactly one fold
    # Through the data spec: one rule per fold, and the fold's bundle says which.
    data = DataSpec(**SUBJECTS, split={"train": "xsub_train", "val": {"folds": 3, "by": "subject"},
                                       "test": "xsub_test", "fold": 2})
    assert load_splits(data).holdout == describe_validation(data)[2]


def test_k_fold_mistakes_name_the_field_and_the_fix():
    split = {"train": "xsub_train", "test": "xsub_test"}
    with pytest.raises(DataError) as info:
        load_splits(DataSpec(**SUBJECTS, split={**split, "val": {"folds": 6, "by": "subject"}}))
    assert info.value.where == "data.split.val" and "folds: 5 or fewer" in info.value.fix
    with pytest.raises(DataError) as info:
        load_splits(DataSpec(**SUBJECTS, split={**split, "val": {"folds": 2, "by": "performer"}}))
    assert info.value.where == "data.split.val" and "fold, pattern, subject" in info.value.fix
    with pytest.raises(DataError) as info:
        load_splits(DataSpec(**SUBJECTS, split={**split, "val": {"folds": 2, "by": "subject"}, "fold": 2}))
    assert info.value.where == "data.split.fold" and "0 to 1" in info.value.fix
    with pytest.raises(DataError) as info:
        load_splits(DataSpec(**SUBJECTS, split={**split, "val": None, "fold": 0}))
    assert info.value.where == "data.split.fold"


def test_the_rule_is_kept_in_the_trial_record():
    rule = "whole subjects (holdout_group: [subject]): 1 of 5 training subjects (2), 8 clips"
    text = TrialRecord(epoch=1, holdout=rule).to_text()
    assert TrialRecord.from_text(text, "t").holdout == rule
    assert TrialRecord.from_text('{"epoch": 1}', "t").holdout is None  # older records


def _gap(holdout_group: str, seed: int) -> tuple[float, float]:
    """Validation and test top-1 of one tiny trial on the subject-effect data (cross-subject)."""
    from skelray.config import TrialConfig
    from skelray.train.trial import run_trial

    cfg = TrialConfig.model_validate({
        "data": {"format": "synthetic", "layout": "kinect_v1_20", "num_classes": 6, "num_per_class": 120,
                 "frames": 16, "persons": 1, "subjects": 10, "subject_effect": 1.5, "seed": 0,
                 "split": {"train": "xsub_train", "val": None, "test": "xsub_test",
                           "holdout_group": holdout_group}},
        "model": {"name": "hpigcn_rp", "kwargs": {"pa_count": 1, "width": 0.25}},
        "train": {"epochs": 25, "batch_size": 32, "optimizer": "adamw", "lr": 0.01, "weight_decay": 0.01,
                  "precise_bn_batches": 0, "latency_batches": [1], "test_every": 25, "seed": seed}})
    last = run_trial(cfg, device="cpu")
    return last["val/top1"], last["test/top1"]


@pytest.mark.slow
def test_validation_that_mirrors_the_protocol_predicts_test_better():
    """The issue's claim on data with a subject effect (5 training subjects, 5 test subjects,
    each with its own size and speed): validating on clips of the training subjects
    (holdout_group: clip) scores well above the test subjects; validating on a held-out
    training subject (auto) is closer to test. Measured with this recipe (data seed 0, train
    seeds 0-3, one thread): val - test is +0.156, +0.094, +0.164, +0.172 with clip and +0.069,
    +0.086, +0.075, +0.081 with auto. The auto hold-out is one subject, so that subject's own
    difficulty still shows as a gap; the leak is larger on every seed measured, and here it is
    asserted on the mean of two."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as measured (results differ in the last digits with the thread count)
    try:
        gaps = {group: [v - t for v, t in (_gap(group, seed) for seed in (0, 1))] for group in ("clip", "auto")}
    finally:
        torch.set_num_threads(threads)
    print(f"val - test gaps: {gaps}")
    assert all(g > 0 for g in gaps["clip"])  # the leak: training subjects' clips are easier than new subjects
    assert np.mean(np.abs(gaps["auto"])) < np.mean(np.abs(gaps["clip"]))
