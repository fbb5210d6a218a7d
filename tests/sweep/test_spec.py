"""Sweep YAML -> SweepSpec: defaults, overrides, and one case per mistake a user can make,
each asserting the YAML path and the fix in the message."""

from __future__ import annotations

import pytest
import yaml

from skelray.errors import ConfigError
from skelray.sweep import SweepSpec, check_resources, load_sweep, trial_name

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


# -- one case per mistake --------------------------------------------------------------------

# Each mistake, and what its message must hold: the YAML path and the fix.
MISTAKES = [
    pytest.param(MIN + "trian: {epochs: 3}\n",
                 ['trian', "did you mean 'train'"],
                 id="unknown_top_level_key_suggests_the_right_one"),
    pytest.param(MIN + "train: {epocs: 3}\n",
                 ['train.epocs', "did you mean 'epochs'"],
                 id="unknown_nested_key_suggests_the_right_one"),
    pytest.param(MIN + "search: {train.lrr: {grid: [0.1, 0.2]}}\n",
                 ['search.train.lrr', "did you mean 'lr'"],
                 id="unknown_search_path_suggests_the_right_one"),
    pytest.param(MIN + "search: {model.kwargs.pa_cuont: {grid: [1, 3]}}\n",
                 ['search.model.kwargs.pa_cuont', "did you mean 'pa_count'"],
                 id="misspelt_model_kwarg_in_a_search_path_is_caught"),
    pytest.param("name: t\ndata: {format: synthetic}\nmodel: {name: hpigcn_rp, kwargs: {pa_cont: 3}}\n",
                 ['model.kwargs.pa_cont', "did you mean 'pa_count'"],
                 id="unknown_model_kwarg_in_the_base_config_is_caught"),
    pytest.param("name: t\ndata: {format: synthetic}\nmodel: {name: hpigcn_rp, kwargs: {num_persons: 1}}\n",
                 ['model.kwargs.num_persons', 'data.persons'],
                 id="model_kwargs_the_trial_sets_from_the_data_are_refused"),
    pytest.param(MIN + "train: {epochs: three}\n",
                 ['train.epochs', 'whole number'],
                 id="wrong_type_names_the_path_and_the_expected_type"),
    pytest.param(MIN + "search: {train.epochs: {uniform: [1, 5]}}\n",
                 ['search.train.epochs', 'whole number'],
                 id="searched_value_of_the_wrong_type_is_caught_before_any_trial"),
    pytest.param(MIN + "search: {train.lr: {grid: []}}\n",
                 ['search.train.lr.grid', 'at least one value'],
                 id="empty_grid"),
    pytest.param(MIN + "search: {train.lr: {loguniform: [0.1, 0.01]}}\n",
                 ['search.train.lr.loguniform', 'must be less than high', 'swap'],
                 id="low_not_below_high"),
    pytest.param(MIN + "search: {train.lr: [0.1, 0.2]}\n",
                 ['search.train.lr', '{grid: [0.1, 0.2]}'],
                 id="not_a_leaf_under_search"),
    pytest.param("name: t\ndata: {format: synthetic, layout: ntu52}\nmodel: {name: hpigcn_rp}\n",
                 ['data.layout', "did you mean 'ntu25'"],
                 id="unknown_layout"),
    pytest.param("name: t\ndata: {format: synthetic, layout: hand21, mirror: true}\nmodel: {name: hpigcn_rp}\n",
                 ['data.mirror', "layout 'hand21' cannot be mirrored", 'set mirror: false'],
                 id="mirror_augmentation_on_a_layout_without_left_and_right"),
    pytest.param("name: t\ndata: {format: synthetic, layout: hand21}\n"
                 "model: {name: hpigcn_rp, kwargs: {mirror_tta: true}}\n",
                 ['model.kwargs.mirror_tta', "layout 'hand21'", 'left_*/right_*'],
                 id="mirror_tta_on_a_layout_without_left_and_right"),
    pytest.param("name: t\ndata: {format: synthetic}\nmodel: {name: hpigcn_rp, kwargs: {pa_count: 0}}\n",
                 ['model.kwargs.pa_count', 'must be an integer >= 1, got 0'],
                 id="bad_model_option_value_is_caught_before_the_sweep_starts"),
    pytest.param(MIN + "search: {model.kwargs.tcn_kernel: {grid: [5, 7]}}\n",
                 ['search.model.kwargs.tcn_kernel', 'value 7', 'use one of 5, 9'],
                 id="bad_model_option_value_in_a_grid"),
    pytest.param("name: t\ndata: {format: ntu, path: /no/such/folder}\nmodel: {name: hpigcn_rp}\n",
                 ['data.path', 'does not exist', 'check the path'],
                 id="data_path_that_does_not_exist"),
    pytest.param("name: t\ndata: {format: ucla}\nmodel: {name: hpigcn_rp}\n",
                 ['data.path', '--data PATH'],
                 id="data_path_required_for_real_data"),
    pytest.param(MIN + "scheduler: {type: pbt}\ntrain: {epochs: 5}\n",
                 ['scheduler.hyperparam_mutations', 'hyperparam_mutations: {train.lr'],
                 id="pbt_without_hyperparam_mutations"),
    pytest.param(MIN + "searcher: {type: grid}\nsearch: {train.lr: {uniform: [0.01, 0.1]}}\n",
                 ['search.train.lr', 'searcher: {type: random}'],
                 id="grid_searcher_with_a_continuous_distribution"),
    pytest.param(MIN + "searcher: {type: optuna}\nsearch: {train.lr: {grid: [0.01, 0.1]}}\n",
                 ['search.train.lr', '{choice: [...]}'],
                 id="optuna_with_a_grid_leaf"),
    pytest.param(MIN + "searcher: {type: optuna}\nsearch: {train.lr: {lognormal: [-3, 1]}}\n",
                 ['search.train.lr', 'optuna has no lognormal'],
                 id="optuna_with_a_distribution_it_lacks"),
    pytest.param(MIN + "searcher: {type: optuna}\ntrain: {epochs: 5}\n"
                 "scheduler: {type: pbt, hyperparam_mutations: {train.lr: {uniform: [0.01, 0.1]}}}\n",
                 ['searcher.type', 'random or grid'],
                 id="pbt_with_optuna"),
    pytest.param(MIN + "metric: val/loss\n",
                 ['mode', 'set mode: min'],
                 id="metric_and_mode_that_disagree"),
    pytest.param(MIN + "scheduler: {type: asha, perturbation_interval: 2}\n",
                 ['scheduler.perturbation_interval', 'type to pbt'],
                 id="scheduler_parameter_of_another_scheduler"),
    pytest.param(MIN + "train: {epochs: 3}\nscheduler: {type: asha, max_t: 10}\n",
                 ['scheduler.max_t', 'max_t: 3'],
                 id="asha_max_t_beyond_the_epochs"),
    pytest.param(MIN + "resources: {gpu: 1.5}\n",
                 ['resources.gpu', 'fraction'],
                 id="fractional_gpu_above_one"),
    pytest.param(MIN + "train: {device: cuda}\n",
                 ['train.device', 'resources.gpu is 0', 'device: auto'],
                 id="cuda_without_a_gpu"),
    pytest.param(MIN + "train: {precision: fp16}\n",
                 ['train.precision', 'fp16 mixed precision needs a CUDA GPU', 'precision: auto'],
                 id="fp16_on_the_cpu"),
    pytest.param(MIN + "train: {precision: fp16, device: cpu}\nresources: {gpu: 1}\n",
                 ['train.precision', '(device: cpu)'],
                 id="fp16_with_a_gpu_but_device_cpu"),
    pytest.param(MIN + "storage: 'ftp://host/x'\n",
                 ['storage', 's3'],
                 id="unknown_storage_scheme"),
    pytest.param(MIN + "train: {schedule: step}\n",
                 ['train.milestones', 'milestones: [20, 40]'],
                 id="step_schedule_without_milestones"),
    pytest.param("name: t\ndata: {format: synthetic}\n"
                 "model: {name: hpigcn_rp, sparsity: {level: 0.9, ensemble_levels: [0.6, 0.9]}}\n",
                 ['model.sparsity.ensemble_levels', 'level: null'],
                 id="sparsity_with_both_a_level_and_ensemble_levels"),
    pytest.param(MIN + "search:\n  model.kwargs.pa_count: {grid: [1, 3, 5]}\n"
                 "  train.lr: {depends: model.kwargs.pa_count, map: {1: 0.1, 3: 0.05}}\n",
                 ['search.train.lr.map', '= 5', 'default'],
                 id="dependent_map_missing_a_searched_value"),
    pytest.param(MIN + "search: {train.lr: {expr: '0.1 * train.batch_sise / 256'}}\n",
                 ['search.train.lr', "did you mean 'batch_size'"],
                 id="expression_reading_an_unknown_path"),
    pytest.param(MIN + "search: {train.lr: {expr: '__import__(\"os\").getcwd()'}}\n",
                 ['search.train.lr.expr', 'not allowed'],
                 id="expression_outside_the_safe_language"),
    pytest.param(MIN + "search:\n  train.lr: {expr: 'train.momentum / 9'}\n  train.momentum: {expr: 'train.lr * 9'}\n",
                 ['cycle', 'plain value'],
                 id="dependent_values_that_form_a_cycle"),
    pytest.param(MIN + "search:\n  model: {grid: [{name: stgcn}, {name: hpigcn_rp}]}\n"
                 "  model.kwargs.dropout: {grid: [0.0, 0.1]}\n",
                 ['search.model.kwargs.dropout', 'inside search.model'],
                 id="path_searched_inside_a_searched_subtree"),
    pytest.param(MIN + "train:\n  epochs: 3\n   lr: 0.1\n",
                 ['line 6, column 6', 'YAML syntax error', 'indentation'],
                 id="yaml_syntax_error_reports_line_and_column"),
    pytest.param(MIN + "train: {epochs: 3}\ntrain: {epochs: 4}\n",
                 ['train (line 5)', 'written twice'],
                 id="key_written_twice_in_yaml"),
    pytest.param(MIN + "scope: best\n", ['scope (line 4)', "'best'", 'all, last, avg or last-N-avg'],
                 id="unknown_scope"),
    pytest.param(MIN + "train: {epochs: 8, test_every: 4}\n",
                 ['train.test_every', 'scope all', 'set scope: last'],
                 id="test_every_with_scope_all_could_judge_an_untested_epoch"),
    pytest.param(MIN + "train: {epochs: 8, test_every: 4}\nscope: last\nscheduler: {type: median}\n",
                 ['train.test_every', 'scheduler median may stop a trial after any epoch', 'test_every: 1'],
                 id="test_every_with_a_scheduler_that_stops_anywhere"),
    pytest.param(MIN + "train: {epochs: 30, test_every: 4}\nscope: last-5-avg\n"
                 "scheduler: {type: asha, grace_period: 2, reduction_factor: 3}\n",
                 ['train.test_every', 'epochs [2, 6, 18]', 'after 2, 6, 18', 'a divisor of 2'],
                 id="test_every_off_the_asha_rungs"),
]


@pytest.mark.parametrize(("text", "wanted"), MISTAKES)
def test_mistake_is_named_with_its_fix(text: str, wanted: list[str]) -> None:
    msg = error_of(text)
    missing = [w for w in wanted if w not in msg]
    assert not missing, f"{missing} not in:\n{msg}"


def test_pbt_mutation_of_a_misspelt_model_kwarg_is_named():
    msg = error_of(MIN + "train: {epochs: 5}\nscheduler: {type: pbt, hyperparam_mutations: "
                         "{model.kwargs.dropuot: {uniform: [0.0, 0.5]}}}\n")
    assert "scheduler.hyperparam_mutations.model.kwargs.dropuot" in msg and "did you mean 'dropout'" in msg


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


def test_unset_environment_variable_names_the_key_and_the_flag():
    msg = error_of("name: t\ndata: {format: ucla, path: '${SKELRAY_TEST_UNSET}'}\n"
                   "model: {name: hpigcn_rp}\n", env={})
    assert "data.path" in msg and "SKELRAY_TEST_UNSET" in msg and "--data PATH" in msg
    assert "does not exist" not in msg  # one problem, not two


def test_a_metric_no_trial_reports():
    msg = error_of(MIN + "metric: val/top_1\n")
    assert "metric" in msg and "no trial reports 'val/top_1'" in msg and "did you mean 'val/top1'" in msg
    msg = error_of(MIN + "metric: accuracy\nmode: max\n")
    assert "use one of" in msg and "test/top5" in msg


def test_latency_metrics_follow_the_measured_batch_sizes():
    assert load_sweep(MIN + "metric: latency_ms_b8\nmode: min\ntrain: {latency_batches: [1, 8]}\n")
    assert "did you mean 'latency_ms_b1'" in error_of(MIN + "metric: latency_ms_b8\nmode: min\n"
                                                      "train: {latency_batches: [1]}\n")


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


def test_test_every_on_the_asha_rungs_and_the_stop_epochs_it_is_checked_against():
    from skelray.sweep._validate import stop_epochs

    ok = load_sweep(MIN + "train: {epochs: 32, test_every: 8}\nscope: last-5-avg\n"
                    "scheduler: {type: asha, grace_period: 8, reduction_factor: 3}\n")
    assert stop_epochs(ok) == [8, 24] and ok.train.test_every == 8
    # ASHA judges at the first epoch >= each rung, and stops every trial at a max_t below the epochs.
    capped = load_sweep(MIN + "train: {epochs: 40}\nscheduler: {type: asha, grace_period: 2, "
                        "reduction_factor: 2.5, max_t: 30}\n")
    assert stop_epochs(capped) == [2, 5, 13, 30]
    assert stop_epochs(load_sweep(MIN + "scheduler: {type: median}\n")) is None
    assert stop_epochs(load_sweep(MIN + "train: {epochs: 8}\nscope: last\n")) == []
