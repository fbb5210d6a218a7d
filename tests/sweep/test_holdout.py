"""The validation hold-out carved from the training split when ``data.split.val`` is null."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from skelray.data._types import SkeletonDataset, SkeletonSequence
from skelray.data.readers.npz import write_npz
from skelray.errors import DataError
from skelray.sweep import load_sweep
from skelray.train.data import _holdout, holdout_groups, load_splits, plan_holdout


def _recordings(views=(1, 2), subjects=5, takes=4, classes=3, extra_tags=None) -> SkeletonDataset:
    """Every (class, subject, take) filmed once per view: one recording, several clips."""
    seqs = []
    for c in range(classes):
        for s in range(subjects):
            for e in range(takes):
                for v in views:
                    tags = {"subject": s, "take": e, **({"view": v} if v is not None else {}), **(extra_tags or {})}
                    seqs.append(SkeletonSequence(id=f"c{c}_s{s}_e{e}_v{v}", label=c,
                                                 keypoints=np.full((1, 4, 20, 3), c, np.float32), tags=tags))
    return SkeletonDataset(seqs, "kinect_v1_20", {"train": [q.id for q in seqs], "test": [seqs[0].id]})


def _split(ds: SkeletonDataset, group_by) -> tuple[list[int], list[int]]:
    labels = np.array([q.label for q in ds.sequences])
    ids = list(range(len(ds.sequences)))
    return _holdout(ids, labels, 0.1, seed=0, groups=holdout_groups(ds.sequences, ids, group_by))


def _recording(q: SkeletonSequence) -> tuple:
    return q.label, q.tags["subject"], q.tags["take"]


def test_auto_keeps_the_views_of_a_recording_together():
    ds = _recordings()
    kept, held = _split(ds, "auto")
    in_train = {_recording(ds.sequences[i]) for i in kept}
    assert held and not any(_recording(ds.sequences[i]) in in_train for i in held)
    # About a tenth of each class: 40 clips per class, 4 held out (two recordings of two views).
    for c in range(3):
        assert sum(ds.sequences[i].label == c for i in held) == 4
    # Clip by clip, the same seed leaves other views of held-out recordings in training.
    kept, held = _split(ds, "clip")
    in_train = {_recording(ds.sequences[i]) for i in kept}
    assert any(_recording(ds.sequences[i]) in in_train for i in held)


def test_grouping_by_a_tag_holds_out_whole_subjects():
    ds = _recordings()
    ids = list(range(len(ds.sequences)))
    plan = plan_holdout(ds.sequences, ids, [], ["subject"])
    kept, held = plan.kept, plan.held
    for c in range(3):
        train_subjects = {ds.sequences[i].tags["subject"] for i in kept if ds.sequences[i].label == c}
        val_subjects = {ds.sequences[i].tags["subject"] for i in held if ds.sequences[i].label == c}
        assert len(val_subjects) == 1 and not train_subjects & val_subjects
    # Whole subjects, not a subject per class: no training subject has any clip in validation.
    assert not {ds.sequences[i].tags["subject"] for i in kept} & {ds.sequences[i].tags["subject"] for i in held}
    assert plan.rule.startswith("whole subjects (holdout_group: [subject]): 1 of 5 training subjects")


def test_without_view_tags_auto_is_the_clip_by_clip_hold_out():
    # Tags that are not views (here a fold shared by every clip) must not merge clips.
    ds = _recordings(views=(None,), extra_tags={"fold": "train"})
    assert _split(ds, "auto") == _split(ds, "clip")
    assert len(_split(ds, "auto")[1]) == 6  # 20 clips per class, 2 held out


def test_load_splits_reads_the_grouping_from_the_spec(tmp_path):
    write_npz(_recordings(), tmp_path / "rec.npz")

    def splits(**split):
        spec = load_sweep({"name": "h", "data": {"format": "npz", "path": str(tmp_path / "rec.npz"), "frames": 4,
                                                 "persons": 1, "split": {"train": "train", "val": None, **split}},
                           "model": {"name": "stgcn"}})
        return load_splits(spec.trial_config().data)

    auto, by_subject = splits().splits, splits(holdout_group=["subject"]).splits
    assert len(auto["val"]) == 12 and len(auto["train"]) == 108
    assert len(by_subject["val"]) == 3 * 8  # one subject (4 takes x 2 views) per class
    # No test split to mirror: the recording rule; nor when the test clip is also a training clip.
    assert splits().holdout == "the views of one recording together, 10% of each class (no test split to mirror): 12 clips"
    assert splits(test="test").holdout == ("the views of one recording together, 10% of each class (no tag tells "
                                           "the test split apart from train): 12 clips")
    with pytest.raises(DataError) as info:
        splits(holdout_group=["performer"])
    assert "data.split.holdout_group" in str(info.value) and "subject, take, view" in str(info.value)


def test_nw_ucla_hold_out_has_no_recording_seen_in_training(ucla_path):
    spec = load_sweep("sweeps/ucla_pa_count.yaml", {"data.path": str(ucla_path)})
    splits = load_splits(spec.trial_config().data).splits

    def recordings(name):  # aAA_sSS_eEE_vVV without the view
        return {i.rsplit("_", 1)[0] for i in splits[name].ids}

    assert all(i.endswith(("_v01", "_v02")) for s in ("train", "val") for i in splits[s].ids)
    assert all(i.endswith("_v03") for i in splits["test"].ids)
    assert not recordings("val") & recordings("train")
    assert 0.09 <= len(splits["val"]) / (len(splits["val"]) + len(splits["train"])) <= 0.12
    # Cross-view with two training views: a whole view is half the training clips, so the rule
    # falls back to keeping recordings together, and says so.
    rule = load_splits(spec.trial_config().data).holdout
    assert rule.startswith("the views of one recording together, 10% of each class (the test split differs "
                           "from train by view, but each of the 2 training views holds over 25%")


def test_validate_says_which_hold_out_and_replicates_it_chose(tmp_path):
    from typer.testing import CliRunner

    from skelray.cli import app

    sweep = {"name": "xsub", "data": {"format": "synthetic", "layout": "kinect_v1_20", "num_classes": 4,
                                      "num_per_class": 20, "frames": 8, "persons": 1, "subjects": 10,
                                      "split": {"train": "xsub_train", "val": None, "test": "xsub_test"}},
             "model": {"name": "hpigcn_rp"}, "seeds": 3,
             "search": {"model.kwargs.pa_count": {"grid": [1, 2]}}}
    path = tmp_path / "xsub.yaml"
    path.write_text(yaml.safe_dump(sweep))
    result = CliRunner().invoke(app, ["sweep", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "6 trials" in result.output and "replicates: 3 seeds of every config (2 configs)" in result.output
    assert ("validation: whole subjects (the test split differs from train by subject): 1 of 5 training "
            "subjects (2), 8 clips") in result.output
    # [subject] is printed as written (not read as console markup).
    result = CliRunner().invoke(app, ["sweep", "validate", str(path), "--set", "data.split.holdout_group=[subject]"])
    assert result.exit_code == 0, result.output
    assert "whole subjects (holdout_group: [subject])" in result.output
    sweep["data"]["split"]["val"] = {"folds": 3, "by": "subject"}
    path.write_text(yaml.safe_dump(sweep))
    result = CliRunner().invoke(app, ["sweep", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "18 trials" in result.output and "replicates: 3 folds x 3 seeds of every config (2 configs)" in result.output
    assert [line.split(":")[1].strip() for line in result.output.splitlines() if line.startswith("validation:")] == [
        f"fold {k} of 3 by subject" for k in range(3)]
