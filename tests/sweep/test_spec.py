"""Sweep YAML -> SweepSpec: defaults, overrides, and one test per mistake a user can make,
each asserting the YAML path and the fix in the message."""

from __future__ import annotations

import pytest
import yaml

from skelray.errors import ConfigError
from skelray.sweep import SweepSpec, check_resources, load_sweep, parse_overrides, trial_name

MIN = "name: t\ndata: {format: synthetic}\nmodel: {name: hpigcn_rp}\n"


def error_of(text: str, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_sweep(text, **kwargs)
    return str(info.value)


# -- what works --------------------------------------------------------------------------------

def test_minimal_sweep_gets_defaults():
    spec = load_sweep(MIN)
    assert isinstance(spec, SweepSpec)
    assert (spec.metric, spec.mode, spec.searcher_type, spec.samples) == ("val/top1", "max", "grid", 1)
    assert spec.scheduler.type == "fifo" and spec.resources.cpu == 1 and spec.resources.gpu == 0
    assert spec.data.resolved_layout() == "ntu25" and spec.train.epochs == 30


def test_random_leaves_make_the_default_searcher_random_with_ten_samples():
    spec = load_sweep(MIN + "search: {train.lr: {loguniform: [0.001, 0.1]}}\n")
    assert spec.searcher_type == "random" and spec.samples == 10


def test_overrides_win_over_the_file(tmp_path):
    text = "name: t\ndata: {format: ucla, path: /nope}\nmodel: {name: hpigcn_rp}\n"
    spec = load_sweep(text, overrides={"data.path": str(tmp_path), "train.epochs": 2})
    assert spec.data.path == str(tmp_path) and spec.train.epochs == 2


def test_env_variables_are_interpolated(tmp_path):
    text = "name: t\ndata: {format: ucla, path: '${MY_UCLA}'}\nmodel: {name: hpigcn_rp}\n"
    assert load_sweep(text, env={"MY_UCLA": str(tmp_path)}).data.path == str(tmp_path)
    assert load_sweep(text.replace("${MY_UCLA}", f"${{MY_UCLA:-{tmp_path}}}"),
                      env={}).data.path == str(tmp_path)


def test_sweep_file_path_is_read(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(MIN)
    assert load_sweep(path).name == "t" and load_sweep(str(path)).name == "t"


def test_parse_overrides_reads_values_as_yaml():
    assert parse_overrides(["train.epochs=3", "data.path=/d", "data.scale=[0.9, 1.1]"]) == {
        "train.epochs": 3, "data.path": "/d", "data.scale": [0.9, 1.1]}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["train.epochs"])


def test_trial_config_merges_flat_and_nested_overrides():
    spec = load_sweep("name: t\ndata: {format: synthetic}\n"
                      "model: {name: hpigcn_rp, kwargs: {tcn_kernel: 5}}\n")
    cfg = spec.trial_config({"model.kwargs.pa_count": 3, "data": {"stream": "b"}})
    assert cfg.model.kwargs == {"tcn_kernel": 5,
                                "pa_count": 3} and cfg.data.stream == "b" and cfg.train.lr == spec.train.lr


def test_trial_config_error_names_the_path():
    spec = load_sweep(MIN)
    with pytest.raises(ConfigError, match=r"data\.stream.*'x'"):
        spec.trial_config({"data.stream": "x"})


def test_spec_round_trips_through_its_yaml_dump():
    text = MIN + ("search:\n  model.kwargs.pa_count: {randint: [1, 6]}\n"
                  "  train.lr: {choice: [0.1, 0.2], weights: [1, 2]}\n"
                  "  train.momentum: {expr: '0.9 if train.lr < 0.15 else 0.8'}\n"
                  "scheduler: {type: pbt, hyperparam_mutations: "
                  "{train.weight_decay: {uniform: [0.0, 0.001]}}}\n"
                  "train: {epochs: 5}\n")
    spec = load_sweep(text)
    again = load_sweep(yaml.safe_load(yaml.safe_dump(spec.model_dump(mode="json"))))
    assert again.search == spec.search and again.scheduler == spec.scheduler and again.train == spec.train


def test_trial_names_need_the_spec_for_a_whole_config():
    spec = load_sweep(MIN + "search: {model.kwargs.pa_count: {grid: [1, 3]}}\n")
    config = spec.merged_config({"model.kwargs.pa_count": 3})
    assert trial_name(config, spec) == "pa_count=3"
    assert trial_name({"model/kwargs/pa_count": 3, "data/stream": "j"}) == "pa_count=3,stream=j"
    with pytest.raises(ValueError, match="spec"):
        trial_name(config)


# -- one test per mistake ----------------------------------------------------------------------

def test_unknown_top_level_key_suggests_the_right_one():
    msg = error_of(MIN + "trian: {epochs: 3}\n")
    assert "trian" in msg and "did you mean 'train'" in msg


def test_unknown_nested_key_suggests_the_right_one():
    msg = error_of(MIN + "train: {epocs: 3}\n")
    assert "train.epocs" in msg and "did you mean 'epochs'" in msg


def test_unknown_search_path_suggests_the_right_one():
    msg = error_of(MIN + "search: {train.lrr: {grid: [0.1, 0.2]}}\n")
    assert "search.train.lrr" in msg and "did you mean 'lr'" in msg


def test_misspelt_model_kwarg_in_a_search_path_is_caught():
    msg = error_of(MIN + "search: {model.kwargs.pa_cuont: {grid: [1, 3]}}\n")
    assert "search.model.kwargs.pa_cuont" in msg and "did you mean 'pa_count'" in msg


def test_unknown_model_kwarg_in_the_base_config_is_caught():
    msg = error_of("name: t\ndata: {format: synthetic}\nmodel: {name: hpigcn_rp, kwargs: {pa_cont: 3}}\n")
    assert "model.kwargs.pa_cont" in msg and "did you mean 'pa_count'" in msg


def test_model_kwargs_the_trial_sets_from_the_data_are_refused():
    msg = error_of("name: t\ndata: {format: synthetic}\nmodel: {name: hpigcn_rp, kwargs: {num_persons: 1}}\n")
    assert "model.kwargs.num_persons" in msg and "data.persons" in msg


def test_wrong_type_names_the_path_and_the_expected_type():
    msg = error_of(MIN + "train: {epochs: three}\n")
    assert "train.epochs" in msg and "whole number" in msg


def test_searched_value_of_the_wrong_type_is_caught_before_any_trial():
    msg = error_of(MIN + "search: {train.epochs: {uniform: [1, 5]}}\n")
    assert "search.train.epochs" in msg and "whole number" in msg


def test_empty_grid():
    msg = error_of(MIN + "search: {train.lr: {grid: []}}\n")
    assert "search.train.lr.grid" in msg and "at least one value" in msg


def test_low_not_below_high():
    msg = error_of(MIN + "search: {train.lr: {loguniform: [0.1, 0.01]}}\n")
    assert "search.train.lr.loguniform" in msg and "must be less than high" in msg and "swap" in msg


def test_not_a_leaf_under_search():
    msg = error_of(MIN + "search: {train.lr: [0.1, 0.2]}\n")
    assert "search.train.lr" in msg and "{grid: [0.1, 0.2]}" in msg


def test_unknown_model_suggests_a_registered_one():
    models = pytest.importorskip("skelray.models",
                                 reason="the model registry (skelray.models) is not in this checkout")
    assert "hpigcn_rp" in models.list_models()
    msg = error_of("name: t\ndata: {format: synthetic}\nmodel: {name: hpigcn_pr}\n")
    assert "model.name" in msg and "did you mean 'hpigcn_rp'" in msg


def test_unknown_model_among_searched_names_is_caught():
    pytest.importorskip("skelray.models",
                        reason="the model registry (skelray.models) is not in this checkout")
    msg = error_of(MIN + "search: {model.name: {grid: [hpigcn_rp, stgnc]}}\n")
    assert "search.model.name" in msg and "did you mean 'stgcn'" in msg


def test_unknown_layout():
    msg = error_of("name: t\ndata: {format: synthetic, layout: ntu52}\nmodel: {name: hpigcn_rp}\n")
    assert "data.layout" in msg and "did you mean 'ntu25'" in msg


def test_data_path_that_does_not_exist():
    msg = error_of("name: t\ndata: {format: ntu, path: /no/such/folder}\nmodel: {name: hpigcn_rp}\n")
    assert "data.path" in msg and "does not exist" in msg and "check the path" in msg


def test_data_path_required_for_real_data():
    msg = error_of("name: t\ndata: {format: ucla}\nmodel: {name: hpigcn_rp}\n")
    assert "data.path" in msg and "--data PATH" in msg


def test_unset_environment_variable_names_the_key_and_the_flag():
    msg = error_of("name: t\ndata: {format: ucla, path: '${SKELRAY_TEST_UNSET}'}\n"
                   "model: {name: hpigcn_rp}\n", env={})
    assert "data.path" in msg and "SKELRAY_TEST_UNSET" in msg and "--data PATH" in msg
    assert "does not exist" not in msg  # one problem, not two


def test_pbt_without_hyperparam_mutations():
    msg = error_of(MIN + "scheduler: {type: pbt}\ntrain: {epochs: 5}\n")
    assert "scheduler.hyperparam_mutations" in msg and "hyperparam_mutations: {train.lr" in msg


def test_grid_searcher_with_a_continuous_distribution():
    msg = error_of(MIN + "searcher: {type: grid}\nsearch: {train.lr: {uniform: [0.01, 0.1]}}\n")
    assert "search.train.lr" in msg and "searcher: {type: random}" in msg


def test_optuna_with_a_grid_leaf():
    msg = error_of(MIN + "searcher: {type: optuna}\nsearch: {train.lr: {grid: [0.01, 0.1]}}\n")
    assert "search.train.lr" in msg and "{choice: [...]}" in msg


def test_optuna_with_a_distribution_it_lacks():
    msg = error_of(MIN + "searcher: {type: optuna}\nsearch: {train.lr: {lognormal: [-3, 1]}}\n")
    assert "search.train.lr" in msg and "optuna has no lognormal" in msg


def test_pbt_with_optuna():
    msg = error_of(MIN + "searcher: {type: optuna}\ntrain: {epochs: 5}\n"
                   "scheduler: {type: pbt, hyperparam_mutations: {train.lr: {uniform: [0.01, 0.1]}}}\n")
    assert "searcher.type" in msg and "random or grid" in msg


def test_metric_and_mode_that_disagree():
    msg = error_of(MIN + "metric: val/loss\n")
    assert "mode" in msg and "set mode: min" in msg


def test_a_metric_no_trial_reports():
    msg = error_of(MIN + "metric: val/top_1\n")
    assert "metric" in msg and "no trial reports 'val/top_1'" in msg and "did you mean 'val/top1'" in msg
    msg = error_of(MIN + "metric: accuracy\nmode: max\n")
    assert "use one of" in msg and "test/top5" in msg


def test_latency_metrics_follow_the_measured_batch_sizes():
    assert load_sweep(MIN + "metric: latency_ms_b8\nmode: min\ntrain: {latency_batches: [1, 8]}\n")
    assert "did you mean 'latency_ms_b1'" in error_of(MIN + "metric: latency_ms_b8\nmode: min\n"
                                                      "train: {latency_batches: [1]}\n")


def test_scheduler_parameter_of_another_scheduler():
    msg = error_of(MIN + "scheduler: {type: asha, perturbation_interval: 2}\n")
    assert "scheduler.perturbation_interval" in msg and "type to pbt" in msg


def test_asha_max_t_beyond_the_epochs():
    msg = error_of(MIN + "train: {epochs: 3}\nscheduler: {type: asha, max_t: 10}\n")
    assert "scheduler.max_t" in msg and "max_t: 3" in msg


def test_fractional_gpu_above_one():
    msg = error_of(MIN + "resources: {gpu: 1.5}\n")
    assert "resources.gpu" in msg and "fraction" in msg


def test_unknown_storage_scheme():
    msg = error_of(MIN + "storage: 'ftp://host/x'\n")
    assert "storage" in msg and "s3" in msg


def test_step_schedule_without_milestones():
    msg = error_of(MIN + "train: {schedule: step}\n")
    assert "train.milestones" in msg and "milestones: [20, 40]" in msg


def test_sparsity_with_both_a_level_and_ensemble_levels():
    msg = error_of("name: t\ndata: {format: synthetic}\n"
                   "model: {name: hpigcn_rp, sparsity: {level: 0.9, ensemble_levels: [0.6, 0.9]}}\n")
    assert "model.sparsity.ensemble_levels" in msg and "level: null" in msg


def test_dependent_map_missing_a_searched_value():
    msg = error_of(MIN + "search:\n  model.kwargs.pa_count: {grid: [1, 3, 5]}\n"
                   "  train.lr: {depends: model.kwargs.pa_count, map: {1: 0.1, 3: 0.05}}\n")
    assert "search.train.lr.map" in msg and "= 5" in msg and "default" in msg


def test_expression_reading_an_unknown_path():
    msg = error_of(MIN + "search: {train.lr: {expr: '0.1 * train.batch_sise / 256'}}\n")
    assert "search.train.lr" in msg and "did you mean 'batch_size'" in msg


def test_expression_outside_the_safe_language():
    msg = error_of(MIN + "search: {train.lr: {expr: '__import__(\"os\").getcwd()'}}\n")
    assert "search.train.lr.expr" in msg and "not allowed" in msg


def test_dependent_values_that_form_a_cycle():
    msg = error_of(MIN + "search:\n  train.lr: {expr: 'train.momentum / 9'}\n"
                         "  train.momentum: {expr: 'train.lr * 9'}\n")
    assert "cycle" in msg and "plain value" in msg


def test_path_searched_inside_a_searched_subtree():
    msg = error_of(MIN + "search:\n  model: {grid: [{name: stgcn}, {name: hpigcn_rp}]}\n"
                         "  model.kwargs.dropout: {grid: [0.0, 0.1]}\n")
    assert "search.model.kwargs.dropout" in msg and "inside search.model" in msg


def test_yaml_syntax_error_reports_line_and_column():
    msg = error_of(MIN + "train:\n  epochs: 3\n   lr: 0.1\n")
    assert "line 6, column 6" in msg and "YAML syntax error" in msg and "indentation" in msg


def test_key_written_twice_in_yaml():
    msg = error_of(MIN + "train: {epochs: 3}\ntrain: {epochs: 4}\n")
    assert "train (line 5)" in msg and "written twice" in msg


def test_every_problem_is_listed_at_once():
    msg = error_of(MIN + "trian: 1\nsearch: {train.lr: {grid: []}}\nmode: maximum\n")
    assert "3 problems" in msg
    for path in ("trian", "search.train.lr.grid", "mode"):
        assert f"  - {path}" in msg


def test_error_lists_each_problem_programmatically():
    with pytest.raises(ConfigError) as info:
        load_sweep(MIN + "trian: 1\nsearch: {train.lr: {grid: []}}\n")
    assert sorted(p.where for p in info.value.problems) == ["search.train.lr.grid", "trian"]


# -- the live cluster's resources --------------------------------------------------------------

def _node(cpu: float, gpu: float = 0, alive: bool = True) -> dict:
    return {"Alive": alive, "Resources": {"CPU": cpu, **({"GPU": gpu} if gpu else {})}}


def test_check_resources_refuses_more_gpus_than_any_node_has():
    spec = load_sweep(MIN + "resources: {cpu: 1, gpu: 2}\n")
    with pytest.raises(ConfigError) as info:
        check_resources(spec, [_node(8, 1), _node(8, 1), _node(16, 4, alive=False)])
    assert "resources.gpu" in str(info.value) and "resources.gpu <= 1" in str(info.value)


def test_check_resources_accepts_a_fractional_gpu_and_fitting_cpus():
    spec = load_sweep(MIN + "resources: {cpu: 0.5, gpu: 0.25}\n")
    check_resources(spec, [_node(2), _node(4, 1)])


def test_check_resources_refuses_more_cpus_than_any_node_has():
    spec = load_sweep(MIN + "resources: {cpu: 8}\n")
    with pytest.raises(ConfigError, match=r"resources\.cpu.*largest node has 2"):
        check_resources(spec, [_node(2)])
