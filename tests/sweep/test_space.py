"""Search leaves -> Tune param space, searchers, schedulers and TuneConfig; shipped sweeps;
trial names. Nothing here starts Ray: variants are expanded with Tune's own generator."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from ray import tune
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
)
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.sample import Categorical, Float, Function, Integer
from ray.tune.search.variant_generator import generate_variants

from skelray.config import TrialConfig
from skelray.sweep import load_sweep
from skelray.sweep.space import OptunaSpace
from skelray.sweep.spec import count_trials, grid_size
from skelray.sweep.tune_builders import (
    build_param_space,
    build_scheduler,
    build_search_alg,
    build_tune_config,
    trial_resources,
)

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"
MIN = "name: t\ndata: {format: synthetic}\nmodel: {name: hpigcn_rp}\ntrain: {epochs: 10}\n"


def variants(spec, seed: int = 0) -> list[dict]:
    """Every trial config Tune's grid/random expansion makes from the spec (one sample)."""
    return [config for _, config in generate_variants(build_param_space(spec), random_state=seed)]


def needs_sparse_ensemble():
    from skelray.models import list_models

    if "sparse_ensemble" not in list_models():
        pytest.skip("model 'sparse_ensemble' is not registered yet (skelray.models / skelray.sparsity); the "
                    "sweep checks its model names against the live registry, so it cannot load until then")


# -- shipped sweeps ----------------------------------------------------------------------------

SHIPPED = {
    # file: (overrides, number of grid trials, expected trial names or None)
    "demo.yaml": ({}, 4,
                  {"pa_count=1,stream=j", "pa_count=1,stream=b", "pa_count=3,stream=j",
                   "pa_count=3,stream=b"}),
    "pa_count.yaml": ({}, 12,
                      {f"pa_count={p},stream={s}" for p in (1, 3, 5) for s in ("j", "b", "jm", "bm")}),
    "sparsity_levels.yaml": ({}, 5, {"level=0.6", "level=0.8", "level=0.95", "level=0.99",
                                     "name=sparse_ensemble,ensemble_levels=0.6-0.8-0.95-0.99"}),
    "ucla_pa_count.yaml": ({"data.path": "TMP"}, 6,
                           {f"pa_count={p},stream={s}" for p in (1, 3, 5) for s in "jb"}),
    "ucla_sparsity.yaml": ({"data.path": "TMP"}, 5, None),
    "wandb_format.yaml": ({}, 1, None),
}


def test_every_shipped_sweep_is_covered():
    assert {p.name for p in SWEEPS.glob("*.yaml")} == set(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_sweep_loads_with_the_expected_grid_and_names(name, tmp_path):
    if "sparsity" in name:
        needs_sparse_ensemble()
    overrides, size, names = SHIPPED[name]
    overrides = {k: str(tmp_path) if v == "TMP" else v for k, v in overrides.items()}
    spec = load_sweep(SWEEPS / name, overrides=overrides, env={})
    assert grid_size(spec) == size
    if spec.searcher_type == "optuna":
        assert build_param_space(spec) == spec.base_config()  # the space lives in the searcher
        return
    configs = variants(spec)
    assert len(configs) == size == count_trials(spec)
    for config in configs:
        TrialConfig.from_tune(config)  # every trial's config is complete and valid
    got = [spec.trial_name(c) for c in configs]
    assert len(set(got)) == len(got)
    assert got == [load_sweep(SWEEPS / name, overrides=overrides, env={}).trial_name(c) for c in configs]
    if names is not None:
        assert set(got) == names


def test_ucla_sweeps_need_the_data_path_at_run_time():
    from skelray.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data\.path.*SKELRAY_UCLA.*--data PATH"):
        load_sweep(SWEEPS / "ucla_pa_count.yaml", env={})


# -- leaves -> domains -------------------------------------------------------------------------

@pytest.mark.parametrize(("leaf", "kind", "check"), [
    ("{grid: [0.1, 0.2]}", dict, lambda d: d == {"grid_search": [0.1, 0.2]}),
    ("{choice: [0.1, 0.2]}", Categorical, lambda d: d.categories == [0.1, 0.2]),
    ("{uniform: [0.01, 0.1]}", Float, lambda d: (d.lower, d.upper) == (0.01, 0.1)),
    ("{loguniform: [0.001, 0.1]}", Float, lambda d: type(d.get_sampler()).__name__ == "_LogUniform"),
    ("{quniform: [0.05, 0.5, 0.05]}", Float, lambda d: d.get_sampler().q == 0.05),
    ("{qloguniform: [0.001, 0.1, 0.001]}", Float, lambda d: d.get_sampler().q == 0.001),
    ("{normal: [0.05, 0.01]}", Float, lambda d: d.get_sampler().mean == 0.05),
    ("{lognormal: [-3, 0.5]}", Float, lambda d: "lognormal" in str(d.get_sampler())),
    ("{expr: '0.1 * train.batch_size / 64'}", Function, lambda d: True),
])
def test_each_leaf_kind_becomes_its_tune_domain(leaf, kind, check):
    spec = load_sweep(MIN + f"search: {{train.lr: {leaf}}}\n")
    domain = build_param_space(spec)["train"]["lr"]
    assert isinstance(domain, kind) and check(domain)


def test_randint_is_upper_exclusive_as_in_tune():
    spec = load_sweep(MIN + "search: {model.kwargs.pa_count: {randint: [1, 6]}}\n")
    domain = build_param_space(spec)["model"]["kwargs"]["pa_count"]
    assert isinstance(domain, Integer) and (domain.lower, domain.upper) == (1, 6)


def test_depends_map_is_resolved_by_tune_after_its_source():
    spec = load_sweep(MIN + "search:\n  train.lr: {depends: model.kwargs.pa_count, map: {1: 0.1, 3: 0.05}}\n"
                            "  model.kwargs.pa_count: {grid: [1, 3]}\n")
    got = {(c["model"]["kwargs"]["pa_count"], c["train"]["lr"]) for c in variants(spec)}
    assert got == {(1, 0.1), (3, 0.05)}


def test_expression_can_read_sampled_dependent_and_constant_values():
    spec = load_sweep(MIN.replace("epochs: 10", "epochs: 10, batch_size: 32") + "search:\n"
                            "  train.momentum: {expr: '0.9 if train.lr < 0.1 else 0.8'}\n"
                            "  train.lr: {expr: '0.1 * train.batch_size / 64 * "
                            "(2 if data.stream == \"b\" else 1)'}\n"
                            "  data.stream: {grid: [j, b]}\n")
    got = {(c["data"]["stream"], c["train"]["lr"], c["train"]["momentum"]) for c in variants(spec)}
    assert got == {("j", 0.05, 0.9), ("b", 0.1, 0.8)}


def test_random_leaves_are_reproducible_with_the_searcher_seed():
    spec = load_sweep(MIN + "search: {train.lr: {loguniform: [0.001, 0.1]}, data.stream: {choice: [j, b]}}\n")
    first = [(c["train"]["lr"], c["data"]["stream"]) for c in variants(spec, seed=5)]
    assert first == [(c["train"]["lr"], c["data"]["stream"]) for c in variants(spec, seed=5)]
    assert 0.001 <= first[0][0] <= 0.1


def test_subtree_options_merge_into_the_base_config():
    # Options merge into the base, so keys that differ between options stay out of the base.
    spec = load_sweep("name: t\ndata: {format: synthetic}\ntrain: {epochs: 10}\n"
                      "model: {name: hpigcn_rp, kwargs: {dropout: 0.1}}\n"
                      "search:\n  model:\n    grid:\n      - {kwargs: {pa_count: 3}}\n"
                      "      - {name: stgcn, kwargs: {edge_importance: false}}\n")
    configs = variants(spec)
    assert [c["model"] for c in configs] == [
        {"name": "hpigcn_rp", "kwargs": {"dropout": 0.1, "pa_count": 3}, "sparsity": None},
        {"name": "stgcn", "kwargs": {"dropout": 0.1, "edge_importance": False}, "sparsity": None}]
    assert [spec.trial_name(c) for c in configs] == ["pa_count=3", "name=stgcn,edge_importance=false"]


def test_subtree_option_whose_merge_is_invalid_names_the_option():
    from skelray.errors import ConfigError

    with pytest.raises(ConfigError, match=r"search\.model.*'stgcn' has no argument 'pa_count'"):
        load_sweep("name: t\ndata: {format: synthetic}\nmodel: {name: hpigcn_rp, kwargs: {pa_count: 3}}\n"
                   "search: {model: {grid: [{name: stgcn}]}}\n")


def test_search_nested_and_dotted_forms_are_the_same():
    nested = load_sweep(MIN + "search: {model: {kwargs: {pa_count: {grid: [1, 3]}}}, "
                              "data: {stream: {grid: [j]}}}\n")
    dotted = load_sweep(MIN + "search: {model.kwargs.pa_count: {grid: [1, 3]}, data.stream: {grid: [j]}}\n")
    assert nested.search == dotted.search


def test_seed_offset_moves_the_trial_seed():
    spec = load_sweep(MIN)
    assert build_param_space(spec, seed_offset=1000)["train"]["seed"] == 1000
    spec = load_sweep(MIN + "search: {train.seed: {grid: [0, 1]}}\n")
    assert build_param_space(spec, seed_offset=1000)["train"]["seed"] == {"grid_search": [1000, 1001]}


# -- trial names -------------------------------------------------------------------------------

def test_trial_names_disambiguate_colliding_labels():
    spec = load_sweep(MIN + "search: {train.seed: {grid: [0]}, data.seed: {grid: [1]}, "
                            "data.stream: {grid: [j]}}\n")
    assert spec.trial_name(variants(spec)[0]) == "train.seed=0,data.seed=1,stream=j"


def test_trial_names_are_safe_folder_names_and_bounded():
    from torch import nn

    from skelray.models import _registry, register_model

    def naming_test_net(num_classes: int = 2, layout: str = "ntu25", tag: str = "") -> nn.Module:
        return nn.Linear(1, num_classes)  # any text is a valid ``tag``: only the names are tested

    long = "x" * 300
    register_model(naming_test_net)
    try:
        spec = load_sweep("name: t\ndata: {format: synthetic}\nmodel: {name: naming_test_net}\n"
                          f"search: {{model.kwargs.tag: {{grid: ['a/b c', '{long}']}}}}\n")
        names = [spec.trial_name(c) for c in variants(spec)]
    finally:
        _registry._entry_points.pop("naming_test_net", None)
    assert names[0] == "tag=a_b_c"
    assert len(names[1]) <= 180 and names[1] != spec.trial_name({"model.kwargs.tag": "x" * 301})


def test_sampled_floats_are_shortened_in_names():
    spec = load_sweep(MIN + "search: {train.lr: {loguniform: [0.001, 0.1]}}\n")
    assert spec.trial_name({"train.lr": 0.0123456789}) == "lr=0.01235"


# -- searchers ---------------------------------------------------------------------------------

def test_grid_searcher_is_tunes_default_unless_concurrency_is_limited():
    assert build_search_alg(load_sweep(MIN + "search: {train.lr: {grid: [0.1]}}\n")) is None
    alg = build_search_alg(load_sweep(MIN + "max_concurrent: 2\nsearch: {train.lr: {grid: [0.1]}}\n"))
    assert isinstance(alg, BasicVariantGenerator) and alg.max_concurrent == 2


def test_random_searcher_is_a_seeded_basic_variant_generator():
    spec = load_sweep(MIN + "searcher: {type: random, seed: 7}\nmax_concurrent: 3\n"
                            "search: {train.lr: {uniform: [0.01, 0.1]}}\n")
    alg = build_search_alg(spec)
    assert isinstance(alg, BasicVariantGenerator) and alg.max_concurrent == 3
    again = build_search_alg(spec)
    assert alg._random_state.rng.bit_generator.state == again._random_state.rng.bit_generator.state


def test_optuna_searcher_has_metric_mode_seed_and_a_concurrency_limit():
    spec = load_sweep(MIN + "searcher: {type: optuna, seed: 3}\nmax_concurrent: 2\n"
                            "metric: val/loss\nmode: min\n"
                            "search: {train.lr: {loguniform: [0.001, 0.1]}}\n")
    alg = build_search_alg(spec)
    assert isinstance(alg, ConcurrencyLimiter) and alg.max_concurrent == 2
    inner = alg.searcher
    assert isinstance(inner, OptunaSearch)
    assert (inner.metric, inner.mode, inner._seed) == ("val/loss", "min", 3)
    assert isinstance(inner._space, OptunaSpace)


def test_optuna_suggestions_are_nested_and_fill_dependent_values():
    spec = load_sweep(MIN + "searcher: {type: optuna}\nsearch:\n  train.lr: {loguniform: [0.001, 0.1]}\n"
                            "  model.kwargs.pa_count: {choice: [1, 3]}\n  train.epochs: {randint: [2, 5]}\n"
                            "  train.momentum: {depends: model.kwargs.pa_count, map: {1: 0.9, 3: 0.8}}\n"
                            "  data.frames: {quniform: [30, 70, 16]}\n")
    alg = build_search_alg(spec)
    suggested = alg.suggest("trial_1")
    assert set(suggested) == {"train", "model", "data"}
    pa = suggested["model"]["kwargs"]["pa_count"]
    assert suggested["train"]["momentum"] == {1: 0.9, 3: 0.8}[pa]
    assert 0.001 <= suggested["train"]["lr"] <= 0.1 and 2 <= suggested["train"]["epochs"] <= 4
    assert suggested["data"]["frames"] in (32, 48, 64)
    # What Tune merges into the constant param space is a valid trial config.
    from skelray.sweep._tree import deep_merge

    TrialConfig.from_tune(deep_merge(build_param_space(spec), suggested))


def test_optuna_space_suggests_mapping_options_by_index():
    spec = load_sweep(MIN + "searcher: {type: optuna}\n"
                            "search: {model: {choice: [{kwargs: {pa_count: 1}}, {name: stgcn}]}}\n")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = OptunaSpace(spec.search, spec.base_config())(study.ask())
    assert out["model"] in ({**spec.base_config()["model"], "kwargs": {"pa_count": 1}},
                            {**spec.base_config()["model"], "name": "stgcn"})


# -- schedulers --------------------------------------------------------------------------------

def test_fifo_is_the_default_scheduler():
    assert isinstance(build_scheduler(load_sweep(MIN)), FIFOScheduler)


def test_asha_gets_its_parameters_and_counts_epochs():
    spec = load_sweep(MIN + "scheduler: {type: asha, grace_period: 2, reduction_factor: 2, brackets: 2}\n")
    sch = build_scheduler(spec)
    assert isinstance(sch, ASHAScheduler)
    assert (sch._time_attr, sch._max_t, sch._reduction_factor, len(sch._brackets)) == ("training_iteration",
                                                                                       10, 2, 2)
    assert sch._brackets[0]._rungs[-1][0] == 2
    assert sch.metric is None  # metric/mode come from TuneConfig; Ray refuses both


def test_hyperband_gets_max_t_and_eta():
    sch = build_scheduler(load_sweep(MIN + "scheduler: {type: hyperband, max_t: 9, reduction_factor: 3}\n"))
    assert isinstance(sch, HyperBandScheduler)
    assert (sch._time_attr, sch._max_t_attr, sch._eta) == ("training_iteration", 9, 3)


def test_median_stopping_gets_grace_and_min_samples():
    spec = load_sweep(MIN + "scheduler: {type: median, grace_period: 3, min_samples_required: 4}\n")
    sch = build_scheduler(spec)
    assert isinstance(sch, MedianStoppingRule)
    assert (sch._time_attr, sch._grace_period, sch._min_samples_required) == ("training_iteration", 3, 4)


def test_pbt_gets_nested_mutations():
    sch = build_scheduler(load_sweep(MIN + "scheduler:\n  type: pbt\n  perturbation_interval: 2\n"
                                           "  hyperparam_mutations:\n"
                                           "    train.lr: {loguniform: [0.001, 0.1]}\n"
                                           "    train.momentum: {choice: [0.8, 0.9]}\n"))
    assert isinstance(sch, PopulationBasedTraining)
    assert (sch._time_attr, sch._perturbation_interval) == ("training_iteration", 2)
    mutations = sch._hyperparam_mutations["train"]
    assert isinstance(mutations["lr"], Float) and mutations["momentum"] == [0.8, 0.9]


# -- TuneConfig and resources ------------------------------------------------------------------

def test_tune_config_carries_metric_mode_searcher_scheduler_and_samples():
    spec = load_sweep(MIN + "metric: val/top5\nsearch: {train.lr: {uniform: [0.01, 0.1]}}\nnum_samples: 4\n"
                            "scheduler: {type: asha}\n")
    cfg = build_tune_config(spec)
    assert isinstance(cfg, tune.TuneConfig)
    assert (cfg.metric, cfg.mode, cfg.num_samples) == ("val/top5", "max", 4)
    assert isinstance(cfg.search_alg, BasicVariantGenerator) and isinstance(cfg.scheduler, ASHAScheduler)
    assert build_tune_config(spec, num_samples=2).num_samples == 2


def test_trial_resources_are_for_with_resources():
    spec = load_sweep(MIN + "resources: {cpu: 0.5, gpu: 0.25}\n")
    assert trial_resources(spec) == {"cpu": 0.5, "gpu": 0.25}
    tune.with_resources(lambda config: None, trial_resources(spec))  # accepted as is
