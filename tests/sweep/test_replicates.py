"""Replicates of a config: ``seeds: N`` and k-fold validation (``data.split.val: {folds: K, by: TAG}``)
each run every config as several Tune trials, named by what differs."""

from __future__ import annotations

from typing import Any

import pytest

from skelray.errors import ConfigError
from skelray.sweep.leaves import Grid
from skelray.sweep.results import read_results
from skelray.sweep.runner import run_sweep
from skelray.sweep.spec import count_trials, load_sweep
from skelray.sweep.tune_builders import build_param_space, build_search_alg

# 10 subjects with one clip of each class each: subjects 0-4 train, 5-9 test.
SUBJECT_DATA = {"format": "synthetic", "layout": "kinect_v1_20", "num_classes": 4, "num_per_class": 10,
                "frames": 8, "persons": 1, "subjects": 10}


def _sweep(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": "rep", "data": {"format": "synthetic", "num_classes": 4, "num_per_class": 4},
                            "model": {"name": "hpigcn_rp"}, "train": {"seed": 5},
                            "search": {"model.kwargs.pa_count": {"grid": [1, 2]}}}
    spec.update(over)
    return spec


def test_seeds_are_a_grid_over_train_seed_counted_and_named():
    spec = load_sweep(_sweep(seeds=3))
    assert count_trials(spec) == 6
    assert spec.replicate_leaves() == {"train.seed": Grid((5, 6, 7))}
    assert build_param_space(spec)["train"]["seed"] == {"grid_search": [5, 6, 7]}
    assert spec.trial_name({"model": {"kwargs": {"pa_count": 2}}, "train": {"seed": 6}}) == "pa_count=2,seed=6"
    # The spec as the runner writes it reads back the same (resume relies on that).
    again = load_sweep(spec.model_dump(mode="json"))
    assert again.seeds == 3 and count_trials(again) == 6


def test_folds_are_a_grid_over_the_fold_counted_and_named():
    data = {**SUBJECT_DATA, "split": {"train": "xsub_train", "val": {"folds": 3, "by": "subject"},
                                      "test": "xsub_test"}}
    spec = load_sweep(_sweep(data=data, seeds=2))
    assert count_trials(spec) == 2 * 3 * 2
    assert list(spec.expanded_search()) == ["model.kwargs.pa_count", "data.split.fold", "train.seed"]
    config = {"model": {"kwargs": {"pa_count": 1}}, "data": {"split": {"fold": 2}}, "train": {"seed": 5}}
    assert spec.trial_name(config) == "pa_count=1,fold=2,seed=5"


def test_random_search_runs_every_seed_of_each_sampled_config():
    # Tune draws random values anew for every grid point unless told to keep them: each
    # sampled learning rate must run with every seed.
    from ray.tune.experiment import Experiment

    spec = load_sweep(_sweep(seeds=2, num_samples=3, search={"train.lr": {"loguniform": [1e-3, 1e-1]}}))
    alg = build_search_alg(spec)
    alg.add_configurations([Experiment("rep", run=lambda c: None, config=build_param_space(spec),
                                       num_samples=spec.samples)])
    drawn: dict[float, list[int]] = {}
    while (trial := alg.next_trial()) is not None:
        drawn.setdefault(trial.config["train"]["lr"], []).append(trial.config["train"]["seed"])
    assert len(drawn) == 3 and all(sorted(seeds) == [5, 6] for seeds in drawn.values())


@pytest.mark.parametrize(("over", "wanted"), [
    ({"seeds": 2, "search": {"train.seed": {"grid": [1, 2]}}}, ["seeds", "search.train.seed"]),
    ({"seeds": 2, "searcher": {"type": "optuna"}, "search": {"train.lr": {"loguniform": [1e-3, 1e-1]}}},
     ["seeds", "optuna", "searcher random"]),
    ({"seeds": 2, "train": {"epochs": 4}, "scheduler": {"type": "pbt", "hyperparam_mutations": {
        "train.lr": {"loguniform": [1e-3, 1e-1]}}}}, ["seeds", "pbt", "fifo or asha"]),
    ({"data": {**SUBJECT_DATA, "split": {"train": "xsub_train", "val": {"folds": 1, "by": "subject"}}}},
     ["data.split.val", "folds: 2 or more"]),
    ({"data": {**SUBJECT_DATA, "split": {"train": "xsub_train", "val": {"folds": 6, "by": "subject"}}}},
     ["data.split.val", "only 5 subjects", "folds: 5 or fewer"]),
    ({"data": {**SUBJECT_DATA, "split": {"train": "xsub_train", "val": {"folds": 2, "by": "performer"}}}},
     ["data.split.val", "fold, pattern, subject"]),
    ({"data": {**SUBJECT_DATA, "split": {"train": "xsub_train", "val": {"folds": 2, "by": "subject"}, "fold": 2}}},
     ["data.split.fold", "0 to 1"]),
    ({"data": {**SUBJECT_DATA, "split": {"train": "xsub_train", "val": None, "fold": 0}}},
     ["data.split.fold", "not k-fold"]),
    ({"data": {"format": "ucla", "path": ".", "subjects": 4}}, ["data.subjects", "only used with format synthetic"]),
])
def test_replicate_mistakes_name_the_keys_and_the_fix(over, wanted):
    with pytest.raises(ConfigError) as info:
        load_sweep(_sweep(**over))
    for text in wanted:
        assert text in str(info.value)


def _tiny(name: str, storage: str, **over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name, "data": SUBJECT_DATA, "model": {"name": "hpigcn_rp", "kwargs": {"pa_count": 1, "width": 0.25}},
        "train": {"epochs": 1, "batch_size": 8, "lr": 0.05, "latency_batches": [1], "precise_bn_batches": 0},
        "resources": {"cpu": 1}, "storage": storage, "wandb": {"mode": "disabled"},
    }
    spec.update(over)
    return spec


def test_a_k_fold_sweep_runs_one_trial_per_fold(tmp_path, local_ray):
    data = {**SUBJECT_DATA, "split": {"train": "xsub_train", "val": {"folds": 3, "by": "subject"},
                                      "test": "xsub_test"}}
    outcome = run_sweep(load_sweep(_tiny("folds", str(tmp_path), data=data)))
    trials, _ = read_results(outcome.sweep_dir)
    rows = sorted(trials.to_pylist(), key=lambda r: r["config.data.split.fold"])
    assert [r["trial_name"] for r in rows] == ["t00000-fold=0", "t00001-fold=1", "t00002-fold=2"]
    assert all(r["status"] == "TERMINATED" for r in rows)
    # Each fold validates on its own training subjects, and the results say which.
    assert [r["holdout"].split(":")[0] for r in rows] == [f"fold {k} of 3 by subject" for k in range(3)]
    assert len({r["holdout"] for r in rows}) == 3


def test_seeds_run_every_config_once_per_seed(tmp_path, local_ray):
    over = {"seeds": 2, "search": {"model.kwargs.pa_count": {"grid": [1, 2]}},
            "data": {**SUBJECT_DATA, "split": {"train": "xsub_train", "val": None, "test": "xsub_test"}}}
    outcome = run_sweep(load_sweep(_tiny("seeds", str(tmp_path), **over)))
    trials, _ = read_results(outcome.sweep_dir)
    got = sorted((r["config.model.kwargs.pa_count"], r["config.train.seed"]) for r in trials.to_pylist())
    assert got == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert sorted(name.split("-", 1)[1] for name in trials.column("trial_name").to_pylist()) == [
        "pa_count=1,seed=0", "pa_count=1,seed=1", "pa_count=2,seed=0", "pa_count=2,seed=1"]
    # Whole held-out subjects, recorded per trial.
    rule = ("whole subjects (the test split differs from train by subject): 1 of 5 training subjects (2), 4 clips "
            "(20% of the training split)")
    assert set(trials.column("holdout").to_pylist()) == {rule}
