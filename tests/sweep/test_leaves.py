"""The search-leaf classes: each kind reads its YAML mapping and writes it back, gives its grid
points, Tune domain and Optuna suggestion, and the quantised kinds share one rule for the
multiples of q they take. Tune and Optuna are real here; nothing starts Ray."""

from __future__ import annotations

import math
import pickle

import optuna
import pytest
import yaml
from ray.tune.search.sample import (
    Categorical,
    Float,
    Function,
    Integer,
    Normal,
    Quantized,
    _BackwardsCompatibleNumpyRng,
)
from ray.tune.search.variant_generator import generate_variants

from skelray.config._problems import Problems
from skelray.errors import ConfigError
from skelray.sweep import load_sweep
from skelray.sweep._tune_samplers import DependentValue
from skelray.sweep.leaves import (
    LEAF_TYPES,
    Choice,
    Depends,
    Expr,
    Grid,
    Leaf,
    QLogUniform,
    QUniform,
    RandInt,
    grid_trials,
    parse_leaf,
    quantized_bounds,
    quantized_grid,
)
from skelray.sweep.space import OptunaSpace
from skelray.sweep.tune_builders import build_param_space, build_search_alg

MIN = "name: t\ndata: {format: synthetic}\nmodel: {name: hpigcn_rp}\ntrain: {epochs: 10}\n"

# One leaf of every kind, as a user writes it, and the YAML form it is written back as
# (a distribution's numbers become floats, randint's stay ints).
WRITTEN = {
    "grid": ("{grid: [0.1, 0.2]}", {"grid": [0.1, 0.2]}),
    "choice": ("{choice: [j, b], weights: [3, 1]}", {"choice": ["j", "b"], "weights": [3.0, 1.0]}),
    "uniform": ("{uniform: [0, 1]}", {"uniform": [0.0, 1.0]}),
    "quniform": ("{quniform: [0.05, 0.5, 0.05]}", {"quniform": [0.05, 0.5, 0.05]}),
    "loguniform": ("{loguniform: [0.001, 0.1]}", {"loguniform": [0.001, 0.1]}),
    "qloguniform": ("{qloguniform: [0.001, 0.1, 0.001]}", {"qloguniform": [0.001, 0.1, 0.001]}),
    "randint": ("{randint: [1, 6]}", {"randint": [1, 6]}),
    "normal": ("{normal: [0.05, 0.01]}", {"normal": [0.05, 0.01]}),
    "qnormal": ("{qnormal: [0.05, 0.01, 0.01]}", {"qnormal": [0.05, 0.01, 0.01]}),
    "lognormal": ("{lognormal: [-3, 0.5]}", {"lognormal": [-3.0, 0.5]}),
    "qlognormal": ("{qlognormal: [-3, 0.5, 0.001]}", {"qlognormal": [-3.0, 0.5, 0.001]}),
    "beta": ("{beta: [2, 5]}", {"beta": [2.0, 5.0]}),
    "qbeta": ("{qbeta: [2, 5, 0.1]}", {"qbeta": [2.0, 5.0, 0.1]}),
    "depends": ("{depends: model.kwargs.pa_count, map: {1: 0.1, 3: 0.05}, default: 0.01}",
                {"depends": "model.kwargs.pa_count", "map": {1: 0.1, 3: 0.05}, "default": 0.01}),
    "expr": ("{expr: '0.1 * train.batch_size / 256'}", {"expr": "0.1 * train.batch_size / 256"}),
}


def parsed(text: str) -> Leaf:
    problems = Problems()
    leaf = parse_leaf(yaml.safe_load(text), "search.x", problems)
    assert not problems and leaf is not None, problems.items
    return leaf


def leaf_of(kind: str) -> Leaf:
    return parsed(WRITTEN[kind][0])


def test_every_kind_has_its_own_class_in_the_registry_and_an_example_here():
    assert set(WRITTEN) == set(LEAF_TYPES)
    for kind, cls in LEAF_TYPES.items():
        assert cls.kind == kind and type(leaf_of(kind)) is cls


@pytest.mark.parametrize("kind", sorted(WRITTEN))
def test_each_leaf_round_trips_through_its_yaml_form(kind):
    leaf = leaf_of(kind)
    assert leaf.to_yaml() == WRITTEN[kind][1]
    assert parsed(yaml.safe_dump(leaf.to_yaml())) == leaf  # through YAML text, as a saved spec is
    assert pickle.loads(pickle.dumps(leaf)) == leaf  # Tune pickles leaves into its experiment state


def test_a_pydantic_field_of_leaves_dumps_each_in_its_yaml_form():
    from pydantic import BaseModel

    class Holder(BaseModel):
        search: dict[str, Leaf]

    leaves = {kind: leaf_of(kind) for kind in WRITTEN}
    dumped = Holder(search=leaves).model_dump(mode="json")["search"]
    assert dumped["depends"]["map"] == {"1": 0.1, "3": 0.05}  # JSON keys are text, and still match
    assert {kind: parsed(yaml.safe_dump(form)) for kind, form in dumped.items()} == leaves | {
        "depends": Depends("model.kwargs.pa_count", (("1", 0.1), ("3", 0.05)), 0.01)}


# -- grid points and counting ------------------------------------------------------------------

def test_only_a_grid_has_grid_points_and_the_grid_size_is_their_product():
    assert parsed("{grid: [1, 2, 3]}").grid_points() == (1, 2, 3)
    assert all(leaf_of(kind).grid_points() is None for kind in WRITTEN if kind != "grid")
    leaves = [Grid((1, 2, 3)), Grid(("a", "b")), Choice((1, 2)), RandInt(1, 6)]
    assert grid_trials(leaves) == 6 and grid_trials([]) == 1


def test_exact_values_are_those_a_depends_map_can_key_on():
    assert parsed("{grid: [1, 3]}").exact_values() == (1, 3)
    assert parsed("{choice: [a, b]}").exact_values() == ("a", "b")
    assert parsed("{randint: [1, 4]}").exact_values() == (1, 2, 3)
    assert parsed("{quniform: [1, 4, 1]}").exact_values() is None  # float samples: 2.0000000000000004 is no key


def test_shifted_moves_listed_values_and_integer_bounds_only():
    assert Grid((0, 1)).shifted(1000) == Grid((1000, 1001))
    assert Choice((0, 1), (1.0, 2.0)).shifted(5) == Choice((5, 6), (1.0, 2.0))
    assert RandInt(0, 10).shifted(7) == RandInt(7, 17)
    leaf = leaf_of("uniform")
    assert leaf.shifted(3) is leaf


# -- the Tune domain of each kind, as before the classes -----------------------------------------

def domain(kind: str):
    return leaf_of(kind).tune_domain("train.lr")


@pytest.mark.parametrize(("kind", "check"), [
    ("grid", lambda d: d == {"grid_search": [0.1, 0.2]}),
    ("choice", lambda d: isinstance(d, Categorical) and d.categories == ["j", "b"]
     and d.get_sampler().p == [0.75, 0.25]),
    ("uniform", lambda d: type(d) is Float and (d.lower, d.upper) == (0.0, 1.0)
     and type(d.get_sampler()).__name__ == "_Uniform"),
    ("loguniform", lambda d: type(d) is Float and (d.lower, d.upper) == (0.001, 0.1)
     and type(d.get_sampler()).__name__ == "_LogUniform"),
    ("quniform", lambda d: type(d) is Float and (d.lower, d.upper) == (0.05, 0.5)
     and isinstance(d.get_sampler(), Quantized) and d.get_sampler().q == 0.05),
    ("qloguniform", lambda d: type(d) is Float and (d.lower, d.upper) == (0.001, 0.1)
     and type(d.get_sampler().get_sampler()).__name__ == "_LogUniform" and d.get_sampler().q == 0.001),
    ("randint", lambda d: type(d) is Integer and (d.lower, d.upper) == (1, 6)),
    ("normal", lambda d: isinstance(d.get_sampler(), Normal) and (d.get_sampler().mean, d.get_sampler().sd)
     == (0.05, 0.01)),
    ("qnormal", lambda d: isinstance(d.get_sampler(), Quantized) and d.get_sampler().q == 0.01
     and d.get_sampler().get_sampler().mean == 0.05),
    ("depends", lambda d: isinstance(d, Function) and isinstance(d.func, DependentValue)),
    ("expr", lambda d: isinstance(d, Function) and isinstance(d.func, DependentValue)),
])
def test_each_kind_gives_its_tune_domain(kind, check):
    assert check(domain(kind))


@pytest.mark.parametrize(("kind", "draw"), [
    ("lognormal", lambda rng, n: [math.exp(v) for v in rng.normal(-3, 0.5, size=n)]),
    ("qlognormal", lambda rng, n: [round(math.exp(v) / 0.001) * 0.001 for v in rng.normal(-3, 0.5, size=n)]),
    ("beta", lambda rng, n: [float(v) for v in rng.beta(2, 5, size=n)]),
    ("qbeta", lambda rng, n: [round(float(v) / 0.1) * 0.1 for v in rng.beta(2, 5, size=n)]),
])
def test_distributions_tune_lacks_are_drawn_from_tunes_seeded_rng(kind, draw):
    d = domain(kind)
    assert type(d) is Float and kind in str(d.get_sampler())
    assert d.sample(size=50, random_state=3) == draw(_BackwardsCompatibleNumpyRng(3), 50)


def test_a_mapping_option_is_merged_into_the_base_sub_tree():
    leaf = parsed("{grid: [{kwargs: {pa_count: 3}}, {name: stgcn}]}")
    base = {"name": "hpigcn_rp", "kwargs": {"dropout": 0.1}}
    assert leaf.tune_domain("model", base) == {"grid_search": [
        {"name": "hpigcn_rp", "kwargs": {"dropout": 0.1, "pa_count": 3}}, {"name": "stgcn", "kwargs": {"dropout": 0.1}}]}
    assert leaf.pbt_mutation("model", base) == list(leaf.values)  # PBT steps through the options as written


def test_computed_leaves_evaluate_from_the_config_and_say_what_they_read():
    depends, expr = leaf_of("depends"), leaf_of("expr")
    config = {"model.kwargs.pa_count": "3", "train.batch_size": 512}
    assert depends.references() == ["model.kwargs.pa_count"] and expr.references() == ["train.batch_size"]
    assert depends.evaluate(config.__getitem__) == 0.05  # a key written as text matches
    assert depends.evaluate({"model.kwargs.pa_count": 7}.__getitem__) == 0.01  # the default
    assert expr.evaluate(config.__getitem__) == 0.2
    with pytest.raises(KeyError, match="no value in 'map'"):
        Depends("a", ((1, 2),)).evaluate({"a": 5}.__getitem__)
    fn = pickle.loads(pickle.dumps(expr.tune_domain("train.lr").func))
    assert fn({"train": {"batch_size": 256}}) == 0.1


# -- Optuna --------------------------------------------------------------------------------------

def suggested(text: str, base=None):
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    value = parsed(WRITTEN[text][0] if text in WRITTEN else text).suggest(trial, "x", base)
    return value, trial.distributions["x"]


def test_each_kind_optuna_has_gives_its_suggestion():
    value, dist = suggested("uniform")
    assert (dist.low, dist.high, dist.log, dist.step) == (0.0, 1.0, False, None) and 0.0 <= value <= 1.0
    _, dist = suggested("loguniform")
    assert (dist.low, dist.high, dist.log) == (0.001, 0.1, True)
    _, dist = suggested("quniform")
    assert (dist.low, dist.high, dist.step) == (0.05, 0.5, 0.05)
    value, dist = suggested("qloguniform")
    assert (dist.low, dist.high, dist.log) == (0.001, 0.1, True) and round(value / 0.001, 9) % 1 == 0
    value, dist = suggested("randint")
    assert (dist.low, dist.high) == (1, 5) and value in range(1, 6)
    value, dist = suggested("{choice: [j, b]}")
    assert dist.choices == ("j", "b") and value in ("j", "b")
    value, dist = suggested("{choice: [{name: stgcn}, {kwargs: {pa_count: 1}}]}", {"name": "x", "kwargs": {}})
    assert dist.choices == (0, 1) and value in ({"name": "stgcn", "kwargs": {}}, {"name": "x", "kwargs": {"pa_count": 1}})


def test_optuna_refuses_the_kinds_it_lacks_with_a_fix():
    for kind in WRITTEN:
        problem = leaf_of(kind).optuna_problem("search.x")
        if kind in ("grid", "choice", "normal", "qnormal", "lognormal", "qlognormal", "beta", "qbeta"):
            assert problem is not None and problem.where == "search.x" and problem.fix
        else:
            assert problem is None, kind
    assert "{choice: [...]}" in leaf_of("grid").optuna_problem("x").fix
    assert "choice with weights" in leaf_of("choice").optuna_problem("x").message
    assert parsed("{choice: [1, 2]}").optuna_problem("x") is None


def test_optuna_space_starts_each_trial_from_the_base_config():
    # A nested mapping option is merged into the base; the base must not keep the last trial's.
    spec = load_sweep(MIN + "searcher: {type: optuna}\n"
                            "search: {model.kwargs: {choice: [{pa_count: 1}, {tcn_kernel: 5}]}}\n")
    space = OptunaSpace(spec.search, spec.base_config())
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = [space(study.ask())["model/kwargs"] for _ in range(12)]
    assert {tuple(sorted(s)) for s in seen} == {("pa_count",), ("tcn_kernel",)}


# -- the quantised grid: one rule ----------------------------------------------------------------

QUANTISED = [(0.05, 0.15, 0.05), (30, 70, 16), (0.25, 1.0, 0.25), (1, 10, 3), (0.001, 0.01, 0.002)]


@pytest.mark.parametrize(("low", "high", "q"), QUANTISED)
def test_the_quantised_rule_is_the_multiples_of_q_within_the_bounds(low, high, q):
    grid = quantized_grid(low, high, q)
    assert all(low - 1e-9 <= v <= high + 1e-9 and math.isclose(v / q, round(v / q)) for v in grid)
    assert not (low <= grid[0] - q or grid[-1] + q <= high)  # none left out at either end
    assert quantized_bounds(low, high, q) == (grid[0], grid[-1])
    assert quantized_grid(0.05, 0.15, 0.05) == [0.05, 0.1, 0.15]  # 3 * 0.05 is 0.15 despite rounding


@pytest.mark.parametrize(("low", "high", "q"), QUANTISED)
def test_tune_optuna_the_checks_and_w_and_b_grids_take_the_same_multiples(low, high, q):
    grid = quantized_grid(low, high, q)
    for cls in (QUniform, QLogUniform):
        leaf = cls(low, high, q)
        assert leaf.sample_points() == [grid[0], grid[-1]]  # what the sweep checks type-check
        tune_values = {_on(grid, v) for v in leaf.tune_domain("x").sample(size=400, random_state=0)}
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        optuna_values = {_on(grid, leaf.suggest(study.ask(), "x")) for _ in range(200)}
        assert tune_values <= set(grid) and optuna_values <= set(grid)
        if cls is QUniform:
            assert tune_values == optuna_values == set(grid)  # uniform over the same multiples
    wandb = ("method: grid\nparameters:\n  skelray: {value: {data: {format: synthetic}, "
             "model: {name: hpigcn_rp}}}\n"
             f"  lr: {{distribution: q_uniform, min: {low}, max: {high}, q: {q}}}\n")
    assert build_param_space(load_sweep(wandb))["train"]["lr"] == {"grid_search": grid}


def _on(grid: list, value: float):
    """The grid point ``value`` is (within float rounding), or ``value`` itself if none."""
    return next((g for g in grid if math.isclose(g, value, abs_tol=1e-12)), value)


def test_quantised_bounds_need_not_be_multiples_of_q():
    # Ray refuses a quniform whose bounds are not multiples of q; the leaf hands it the multiples.
    spec = load_sweep(MIN + "searcher: {type: random}\nsearch: {data.frames: {quniform: [30, 70, 16]}}\n")
    frames = {c["data"]["frames"] for _, c in generate_variants(build_param_space(spec), random_state=0)}
    assert frames <= {32, 48, 64}
    assert build_search_alg(spec) is not None


def test_a_quantised_range_without_a_multiple_of_q_is_refused():
    with pytest.raises(ConfigError) as info:
        load_sweep(MIN + "search: {train.lr: {quniform: [0.1, 0.2, 0.5]}}\n")
    msg = str(info.value)
    assert "search.train.lr.quniform" in msg and "no multiple of q (0.5) lies in [0.1, 0.2]" in msg
    assert "lower q or widen the range" in msg


# -- parsing: messages and paths ---------------------------------------------------------------

@pytest.mark.parametrize(("text", "where", "message"), [
    ("{uniform: [1, 2, 3]}", "search.x.uniform", "uniform takes [low, high], got [1, 2, 3]"),
    ("{qbeta: [1, -2, 0]}", "search.x.qbeta", "beta needs a > 0 and b > 0, got [1, -2, 0]"),
    ("{qbeta: [1, -2, 0]}", "search.x.qbeta", "q must be > 0, got 0"),
    ("{randint: [1.5, 6]}", "search.x.randint", "randint bounds must be whole numbers"),
    ("{qloguniform: [0, 1, 0.1]}", "search.x.qloguniform", "qloguniform needs low > 0, got 0"),
    ("{normal: [0, 0]}", "search.x.normal", "sigma must be > 0, got 0"),
    ("{choice: [1, 2], weights: [1]}", "search.x.weights", "weights must be 2 non-negative numbers"),
    ("{grid: [{a: {grid: [1]}}]}", "search.x.grid[0]", "cannot hold another search leaf"),
    ("{depends: 3, map: {1: 2}}", "search.x.depends", "depends must be a config path"),
    ("{depends: a.b}", "search.x.map", "depends needs a non-empty 'map'"),
    ("{expr: 3}", "search.x.expr", "expr must be a string"),
    ("{grid: [1], choice: [2]}", "search.x", "a leaf takes one kind, got grid, choice"),
])
def test_each_kind_reports_its_problems_at_its_path(text, where, message):
    problems = Problems()
    assert parse_leaf(yaml.safe_load(text), "search.x", problems) is None
    assert any(p.where == where and message in p.message and p.fix for p in problems.items), problems.items


def test_a_leaf_with_an_unknown_key_is_still_checked_so_every_problem_shows_at_once():
    for raw, wheres in [({"uniform": [2, 1], "step": 1}, ["search.x.step", "search.x.uniform"]),
                        ({"grid": [], "weights": [1]}, ["search.x.weights", "search.x.grid"]),
                        ({"choice": [1, 2], "weights": [1], "seed": 3}, ["search.x.seed", "search.x.weights"])]:
        problems = Problems()
        assert parse_leaf(raw, "search.x", problems) is None
        assert [p.where for p in problems.items] == wheres, problems.items


def test_depends_checks_its_map_against_the_leaf_it_reads():
    leaf = Depends("a", ((1, 0.1), ("3", 0.2)))
    assert leaf.check_against({"a": Grid((1, 3))}, "search.b") == []
    [problem] = leaf.check_against({"a": RandInt(1, 5)}, "search.b")
    assert problem.where == "search.b.map" and "= 2, 4" in problem.message
    [problem] = leaf.check_against({"a": leaf_of("uniform")}, "search.b")
    assert "sampled from uniform" in problem.message
    assert Depends("a", ((1, 0.1),), default=0.5).check_against({"a": RandInt(1, 5)}, "search.b") == []
    assert leaf.check_against({"a": Expr("1 + 2")}, "search.b") == []


# -- the direction of the dependencies inside skelray.sweep ------------------------------------

# Each module may import (outside TYPE_CHECKING) only modules of the layers below its own.
LAYERS = [
    {"_expr", "_tree", "_tune_samplers", "_wandb_schema"},
    {"leaves"},
    {"space", "_naming", "_trial_checks", "_source"},
    {"_validate", "wandb_format"},
    {"spec", "tune_builders"},
]


def test_leaves_are_the_bottom_and_the_spec_the_top():
    import ast
    from pathlib import Path

    import skelray.sweep

    folder = Path(skelray.sweep.__file__).parent
    for level, layer in enumerate(LAYERS):
        below = set().union(*LAYERS[:level])
        for name in layer:
            tree = ast.parse((folder / f"{name}.py").read_text())
            typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                           and getattr(node.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(node)}
            imported = {node.module.rsplit(".", 1)[-1] for node in ast.walk(tree)
                        if isinstance(node, ast.ImportFrom) and id(node) not in typing_only
                        and (node.module or "").startswith("skelray.sweep.")}
            imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                         and id(node) not in typing_only and node.module == "skelray.sweep"
                         for alias in node.names}
            assert imported <= below, f"{name} imports {sorted(imported - below)} from its own layer or above"
