"""W&B sweep files: validation (ours, and W&B's schema when ../shared has it), the mapping of
each distribution to a Tune domain, early termination, and the errors for invalid files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.sample import Categorical, Float, Integer, LogUniform, Normal, Quantized, Uniform

from skelray.config._problems import Problems
from skelray.errors import ConfigError
from skelray.sweep import load_sweep
from skelray.sweep._wandb_schema import validate_wandb
from skelray.sweep.tune_builders import build_param_space, build_scheduler, build_search_alg, build_stopper

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO.parent / "shared" / "reference" / "wandb-sweeps" / "schema.json"
SHIPPED = sorted(p for p in (REPO / "sweeps").glob("*.yaml") if "method" in yaml.safe_load(p.read_text()))
EXT = ("parameters:\n  skelray: {value: {data: {format: synthetic}, model: {name: hpigcn_rp}, "
       "train: {epochs: 27}}}\n")


def wandb(method: str = "random", params: str = "", extra: str = "") -> str:
    return f"method: {method}\n{extra}{EXT}{params}"


def domain_at(text: str, section: str, key: str):
    spec = load_sweep(text)
    return spec, build_param_space(spec)[section][key]


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_sweep(text)
    return str(info.value)


# -- each distribution -> its Tune domain ------------------------------------------------------

@pytest.mark.parametrize(("param", "domain_type", "sampler_type", "bounds"), [
    ("{distribution: uniform, min: 0.1, max: 0.5}", Float, Uniform, (0.1, 0.5)),
    ("{min: 0.1, max: 0.5}", Float, Uniform, (0.1, 0.5)),
    ("{distribution: log_uniform_values, min: 0.001, max: 0.1}", Float, LogUniform, (0.001, 0.1)),
    ("{distribution: log_uniform, min: -7, max: -2}", Float, LogUniform, (math.exp(-7), math.exp(-2))),
    ("{distribution: inv_log_uniform, min: 2, max: 7}", Float, LogUniform, (math.exp(-7), math.exp(-2))),
    ("{distribution: inv_log_uniform_values, min: 0.001, max: 0.1}", Float, LogUniform, (0.001, 0.1)),
    ("{distribution: q_uniform, min: 0.25, max: 1.0, q: 0.25}", Float, Quantized, (0.25, 1.0)),
    ("{distribution: q_log_uniform_values, min: 0.001, max: 0.1, q: 0.001}", Float, Quantized, (0.001, 0.1)),
    ("{distribution: normal, mu: 0.05, sigma: 0.01}", Float, Normal, None),
    ("{distribution: q_normal, mu: 0.05, sigma: 0.01, q: 0.01}", Float, Quantized, None),
    ("{values: [0.1, 0.2]}", Categorical, None, None),
])
def test_each_float_distribution_maps_to_its_tune_domain(param, domain_type, sampler_type, bounds):
    _, domain = domain_at(wandb(params=f"  lr: {param}\n"), "train", "lr")
    assert type(domain) is domain_type
    if sampler_type is not None:
        assert isinstance(domain.get_sampler(), sampler_type)
    if bounds is not None:
        assert domain.lower == pytest.approx(bounds[0]) and domain.upper == pytest.approx(bounds[1])
    samples = np.array(domain.sample(size=300, random_state=0), dtype=object)
    if bounds is not None:
        assert all(bounds[0] - 1e-12 <= float(s) <= bounds[1] + 1e-12 for s in samples)


def test_quantized_distributions_keep_their_step():
    _, domain = domain_at(wandb(params="  lr: {distribution: q_uniform, min: 0.25, max: 1.0, q: 0.25}\n"),
                          "train", "lr")
    assert domain.get_sampler().q == 0.25
    assert {round(v / 0.25, 9) % 1 for v in domain.sample(size=50, random_state=1)} == {0.0}


def test_int_uniform_includes_max_as_w_and_b_does():
    _, domain = domain_at(wandb(params="  model.kwargs.pa_count: {min: 1, max: 5}\n"), "model", "kwargs")
    domain = domain["pa_count"]
    assert type(domain) is Integer and (domain.lower, domain.upper) == (1, 6)
    assert set(domain.sample(size=400, random_state=0)) == {1, 2, 3, 4, 5}


@pytest.mark.parametrize(("param", "low", "high"), [
    ("{distribution: log_normal, mu: -3, sigma: 0.5}", 0.0, math.inf),
    ("{distribution: q_log_normal, mu: -3, sigma: 0.5, q: 0.001}", 0.0, math.inf),
    ("{distribution: beta, a: 2, b: 5}", 0.0, 1.0),
    ("{distribution: q_beta, a: 2, b: 5, q: 0.1}", 0.0, 1.0),
])
def test_distributions_tune_lacks_sample_from_tunes_seeded_rng(param, low, high):
    _, domain = domain_at(wandb(params=f"  train.label_smoothing: {param}\n".replace("label_smoothing",
                                                                                     "lr")),
                          "train", "lr")
    a = domain.sample(size=200, random_state=3)
    assert a == domain.sample(size=200, random_state=3)  # seeded: reproducible
    assert all(low <= v <= high for v in a)
    if "log_normal" in param:
        assert np.median(np.log(a)) == pytest.approx(-3, abs=0.15)


def test_categorical_with_probabilities_samples_by_weight():
    _, domain = domain_at(wandb(params="  stream: {values: [j, b], probabilities: [0.9, 0.1]}\n"), "data",
                          "stream")
    draws = domain.sample(size=1000, random_state=0)
    assert 850 < draws.count("j") < 950


def test_values_under_grid_become_a_grid_search():
    _, domain = domain_at(wandb("grid", "  stream: {values: [j, b, jm]}\n"), "data", "stream")
    assert domain == {"grid_search": ["j", "b", "jm"]}


def test_int_and_q_uniform_under_grid_are_enumerated():
    spec = load_sweep(wandb("grid", "  model.kwargs.pa_count: {min: 1, max: 3}\n"
                                    "  lr: {distribution: q_uniform, min: 0.05, max: 0.15, q: 0.05}\n"))
    space = build_param_space(spec)
    assert space["model"]["kwargs"]["pa_count"] == {"grid_search": [1, 2, 3]}
    assert space["train"]["lr"] == {"grid_search": [0.05, 0.1, 0.15]}


def test_constants_set_the_base_config_and_nested_blocks_map_to_paths():
    spec = load_sweep(wandb(params="  epochs: {value: 4}\n"
                                   "  train:\n    parameters:\n      momentum: {value: 0.8}\n"
                                   "  model:\n    parameters:\n      kwargs:\n        parameters:\n"
                                   "          pa_count: {values: [1, 3]}\n"))
    assert spec.train.epochs == 4 and spec.train.momentum == 0.8
    assert list(spec.search) == ["model.kwargs.pa_count"]


def test_bare_names_map_through_the_table():
    spec = load_sweep(wandb(params="  lr: {values: [0.1]}\n  pa_count: {values: [1]}\n"
                                   "  stream: {values: [j]}\n  sparsity: {values: [0.9]}\n"
                                   "  seed: {values: [0, 1]}\n  model: {value: hpigcn_op}\n"))
    assert list(spec.search) == ["train.lr", "model.kwargs.pa_count", "data.stream", "model.sparsity.level",
                                 "train.seed"]
    assert spec.model.name == "hpigcn_op"


def test_the_device_settings_map_too_and_are_checked_like_ours():
    spec = load_sweep(wandb(params="  precision: {value: bf16}\n  device: {value: cpu}\n"
                                   "  compile: {value: true}\n  lr: {values: [0.1]}\n"))
    assert (spec.train.precision, spec.train.device, spec.train.compile) == ("bf16", "cpu", True)
    with pytest.raises(ConfigError, match="train.precision: fp16 mixed precision needs a CUDA GPU"):
        load_sweep(wandb(params="  precision: {value: fp16}\n  lr: {values: [0.1]}\n"))


# -- method, metric, early_terminate, run_cap --------------------------------------------------

def test_methods_map_to_searchers():
    grid = load_sweep(wandb("grid", "  lr: {values: [0.1, 0.2]}\n"))
    rand = load_sweep(wandb("random", "  lr: {values: [0.1, 0.2]}\n"))
    bayes = load_sweep(wandb("bayes", "  lr: {min: 0.01, max: 0.1}\n",
                             "metric: {name: val/top1, goal: maximize}\n"))
    assert build_search_alg(grid) is None
    assert isinstance(build_search_alg(rand), BasicVariantGenerator)
    assert isinstance(build_search_alg(bayes), OptunaSearch)


def test_metric_goal_maps_to_mode_and_defaults_to_minimize_as_in_w_and_b():
    spec = load_sweep(wandb(params="  lr: {values: [0.1]}\n",
                            extra="metric: {name: val/top1, goal: maximize}\n"))
    assert (spec.metric, spec.mode) == ("val/top1", "max")
    spec = load_sweep(wandb(params="  lr: {values: [0.1]}\n", extra="metric: {name: val/loss}\n"))
    assert (spec.metric, spec.mode) == ("val/loss", "min")


def test_metric_target_ends_the_sweep_once_a_trial_reaches_it():
    spec = load_sweep(wandb(params="  lr: {values: [0.1]}\n",
                            extra="metric: {name: val/loss, target: 0.5}\n"))
    stopper = build_stopper(spec)
    assert spec.target == 0.5 and not stopper.stop_all()
    assert stopper("a", {"val/loss": 0.7}) is False and not stopper.stop_all()
    assert stopper("b", {"val/loss": 0.5}) is False and stopper.stop_all() and stopper.reached_by == "b"
    assert build_stopper(load_sweep(wandb(params="  lr: {values: [0.1]}\n"))) is None


def test_hyperband_min_iter_becomes_asha():
    spec = load_sweep(wandb(params="  lr: {values: [0.1]}\n",
                            extra="early_terminate: {type: hyperband, min_iter: 2, eta: 2}\n"))
    sch = build_scheduler(spec)
    assert isinstance(sch, ASHAScheduler)
    assert sch._max_t == 27 and sch._reduction_factor == 2  # max_t defaults to train.epochs
    assert sch._brackets[0]._rungs[-1][0] == 2  # the first rung is the grace period
    assert sch._time_attr == "training_iteration"


def test_hyperband_max_iter_and_s_give_grace_max_iter_over_eta_to_the_s():
    spec = load_sweep(wandb(params="  lr: {values: [0.1]}\n",
                            extra="early_terminate: {type: hyperband, max_iter: 27, s: 2, eta: 3}\n"))
    sch = build_scheduler(spec)
    assert (spec.scheduler.grace_period, sch._max_t, sch._reduction_factor) == (3, 27, 3)
    assert [r[0] for r in sch._brackets[0]._rungs] == [27, 9, 3]  # rungs at max_iter / eta**k


def test_run_cap_becomes_num_samples():
    assert load_sweep(wandb(params="  lr: {min: 0.01, max: 0.1}\n", extra="run_cap: 7\n")).samples == 7


def test_run_cap_below_a_grid_is_refused():
    msg = error_of(wandb("grid", "  lr: {values: [0.1, 0.2, 0.3]}\n", "run_cap: 2\n"))
    assert "run_cap" in msg and "3 runs" in msg


# -- invalid files are refused, naming the W&B path ---------------------------------------------

def test_bad_method():
    msg = error_of(wandb("bayesian", "  lr: {values: [0.1]}\n"))
    assert "method" in msg and "grid, random or bayes" in msg


def test_missing_parameters():
    msg = error_of("method: grid\nname: x\n")
    assert "parameters" in msg and "required" in msg


def test_min_above_max():
    msg = error_of(wandb(params="  lr: {min: 0.1, max: 0.01}\n"))
    assert "parameters.lr.min" in msg and "swap" in msg


def test_unknown_distribution():
    msg = error_of(wandb(params="  lr: {distribution: log_uniformm, min: 0.1, max: 1}\n"))
    assert "parameters.lr.distribution" in msg and "did you mean 'log_uniform'" in msg


def test_unknown_bare_parameter_name():
    msg = error_of(wandb(params="  lrate: {values: [0.1]}\n"))
    assert "parameters.lrate" in msg and "model.kwargs.lrate" in msg


def test_top_level_extension_key_is_refused_with_where_to_put_it():
    msg = error_of("method: random\nskelray: {data: {format: synthetic}}\n" + EXT)
    assert "skelray" in msg and "parameters: {skelray: {value: ...}}" in msg


def test_continuous_distribution_under_grid():
    msg = error_of(wandb("grid", "  lr: {min: 0.01, max: 0.1}\n"))
    assert "parameters.lr.distribution" in msg and "method random/bayes" in msg


def test_bayes_without_metric():
    msg = error_of(wandb("bayes", "  lr: {min: 0.01, max: 0.1}\n"))
    assert "metric" in msg and "bayes needs a metric" in msg


def test_extension_block_contradicting_a_w_and_b_key():
    text = ("method: random\nmetric: {name: val/top1, goal: maximize}\n"
            "parameters:\n  skelray: {value: {data: "
            "{format: synthetic}, model: {name: hpigcn_rp}, metric: val/top5}}\n  lr: {values: [0.1]}\n")
    assert "parameters.skelray.value.metric" in error_of(text)


# -- W&B's own schema, when ../shared has it ---------------------------------------------------

@pytest.fixture(scope="module")
def schema_validator():
    if not SCHEMA.is_file():
        pytest.skip(f"W&B sweep schema not found at {SCHEMA} (it lives in ../shared, outside the project)")
    import jsonschema

    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_w_and_b_sweeps_validate_against_w_and_b_schema(path, schema_validator):
    doc = yaml.safe_load(path.read_text())
    assert not list(schema_validator.iter_errors(doc))
    load_sweep(path)


LR = {"lr": {"values": [1]}}


def doc(method: str = "grid", parameters: dict | None = None, **extra) -> dict:
    return {"method": method, "parameters": LR if parameters is None else parameters, **extra}


DOCS = [
    (doc(), True),
    (doc("random", {"lr": {"min": 0.1, "max": 1.0}}, run_cap=3), True),
    (doc("bayes", {"a": {"value": 1}}, metric={"name": "m", "goal": "maximize"},
         early_terminate={"type": "hyperband", "max_iter": 27, "s": 2}), True),
    (doc("random", {"a": {"parameters": {"b": {"distribution": "q_log_uniform_values", "min": 1, "max": 9,
                                               "q": 2}}}}), True),
    (doc("bayesian"), False),
    ({"parameters": LR}, False),
    (doc(parameters={}), False),
    (doc(parameters={"lr": {"values": []}}), False),
    (doc(parameters={"lr": {"distribution": "log_uniformm", "min": 1, "max": 2}}), False),
    (doc(parameters={"lr": {"distribution": "uniform", "min": 1, "max": 2, "q": 1}}), False),
    (doc(parameters={"lr": {"distribution": "log_uniform_values", "min": 0, "max": 2}}), False),
    (doc(skelray={}), False),
    (doc(early_terminate={"type": "hyperband"}), False),
    (doc(early_terminate={"type": "hyperband", "min_iter": 1, "eta": 1}), False),
    (doc(metric={"goal": "maximize"}), False),
    (doc(run_cap=0), False),
]


@pytest.mark.parametrize(("doc", "valid"), DOCS)
def test_built_in_rules_agree_with_w_and_b_schema(doc, valid, schema_validator):
    problems = Problems()
    validate_wandb(doc, problems)
    assert (not problems) is valid, problems.items
    assert (not list(schema_validator.iter_errors(doc))) is valid
