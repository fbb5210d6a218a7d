"""Search leaves -> Ray Tune's ``param_space`` (and Optuna's define-by-run space).

The param space is the *whole* trial config (data/model/train) with each searched path
replaced by a Tune domain, so each trial's ``config`` is complete: the trial validates it
with ``TrialConfig.from_tune`` and needs nothing else. Dependent leaves become
``tune.sample_from`` functions that read the sampled config; Tune resolves them after the
values they read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ray import tune
from ray.tune.search.sample import Categorical, Domain, Float, Sampler
from ray.tune.search.variant_generator import RecursiveDependencyError

from skelray.sweep.leaves import Leaf, deep_merge, get_path, set_path

if TYPE_CHECKING:
    from skelray.sweep.spec import SweepSpec


class _NumpySampler(Sampler):
    """Distributions Tune has no domain for (log-normal, beta), drawn from Tune's seeded RNG."""

    def __init__(self, kind: str, a: float, b: float, q: float | None = None) -> None:
        self.kind, self.a, self.b, self.q = kind, a, b, q

    def sample(self, domain: Domain, config: Any = None, size: int = 1, random_state: Any = None) -> Any:
        if self.kind == "lognormal":
            x = [math.exp(v) for v in random_state.normal(self.a, self.b, size=size)]
        else:
            x = [float(v) for v in random_state.beta(self.a, self.b, size=size)]
        if self.q:
            x = [round(v / self.q) * self.q for v in x]
        return x if size > 1 else x[0]

    def __str__(self) -> str:
        return f"{self.kind}({self.a}, {self.b}{', q=' + str(self.q) if self.q else ''})"


class _Weighted(Sampler):
    """``choice`` with weights: Tune's Categorical only samples uniformly."""

    def __init__(self, weights: tuple[float, ...]) -> None:
        total = float(sum(weights))
        self.p = [w / total for w in weights]

    def sample(self, domain: Domain, config: Any = None, size: int = 1, random_state: Any = None) -> Any:
        idx = random_state.choice(len(self.p), size=size, p=self.p)
        items = [domain.categories[int(i)] for i in idx]
        return items if size > 1 else items[0]

    def __str__(self) -> str:
        return f"Weighted({self.p})"


class DependentValue:
    """The function behind ``tune.sample_from`` for a ``depends``/``expr`` leaf.

    A class (not a closure) so Tune's experiment state pickles it with plain ``pickle``.
    """

    def __init__(self, path: str, leaf: Leaf) -> None:
        self.path, self.leaf = path, leaf

    def __call__(self, config: Mapping[str, Any]) -> Any:
        def lookup(path: str) -> Any:
            node: Any = config
            for part in path.split("."):
                node = node[part]
                if isinstance(node, Domain) or (isinstance(node, Mapping) and "grid_search" in node):
                    # Not sampled yet: Tune retries this leaf after the others.
                    raise RecursiveDependencyError(f"{self.path} waits for {path}")
            return node

        try:
            return self.leaf.evaluate(lookup)
        except KeyError as exc:  # Tune treats KeyError as "old-style spec", so say it plainly
            raise ValueError(f"search.{self.path}: {exc.args[0] if exc.args else exc}") from None


def to_domain(leaf: Leaf, path: str, base_value: Any = None) -> Any:
    """The Tune domain for one leaf; mapping options are merged into ``base_value``."""
    kind, a = leaf.kind, leaf.args
    if kind in ("grid", "choice"):
        merge = isinstance(base_value, Mapping)
        values = [deep_merge(base_value, v) if merge and isinstance(v, Mapping) else v for v in leaf.values]
        if kind == "grid":
            return tune.grid_search(values)
        if leaf.weights is None:
            return tune.choice(values)
        return _categorical(values, leaf.weights)
    simple = {
        "uniform": lambda: tune.uniform(a[0], a[1]),
        "quniform": lambda: tune.quniform(a[0], a[1], a[2]),
        "loguniform": lambda: tune.loguniform(a[0], a[1]),
        "qloguniform": lambda: tune.qloguniform(a[0], a[1], a[2]),
        "randint": lambda: tune.randint(int(a[0]), int(a[1])),
        "normal": lambda: tune.randn(a[0], a[1]),
        "qnormal": lambda: tune.qrandn(a[0], a[1], a[2]),
    }
    if kind in simple:
        return simple[kind]()
    if kind in ("lognormal", "qlognormal", "beta", "qbeta"):
        domain = Float(None, None)
        domain.set_sampler(_NumpySampler(kind.lstrip("q"), a[0], a[1],
                                         a[2] if kind.startswith("q") else None))
        return domain
    return tune.sample_from(DependentValue(path, leaf))


def _categorical(values: list[Any], weights: tuple[float, ...]) -> Categorical:
    domain = Categorical(values)
    domain.set_sampler(_Weighted(weights))
    return domain


def _shift_seed(spec: SweepSpec, offset: int) -> dict[str, Leaf]:
    """The search leaves with ``train.seed`` moved by ``offset`` (new samples of a resumed sweep)."""
    search = dict(spec.search)
    leaf = search.get("train.seed")
    if offset and leaf is not None:
        if leaf.kind in ("grid", "choice"):
            search["train.seed"] = leaf.model_copy(update={"values": tuple(v + offset for v in leaf.values)})
        elif leaf.kind == "randint":
            search["train.seed"] = leaf.model_copy(update={"args": tuple(v + offset for v in leaf.args)})
    return search


def build_param_space(spec: SweepSpec, seed_offset: int = 0) -> dict[str, Any]:
    """``Tuner(param_space=...)``: the full trial config with Tune domains at searched paths.

    With the optuna searcher the space lives in the searcher (``optuna_space``), so this holds
    constants only: Tune refuses domains in both places. ``seed_offset`` moves ``train.seed``
    so extra samples of a resumed sweep do not repeat earlier seeds.
    """
    config = spec.base_config()
    config["train"]["seed"] += seed_offset
    if spec.searcher_type == "optuna":
        return config
    for path, leaf in _shift_seed(spec, seed_offset).items():
        set_path(config, path, to_domain(leaf, path, get_path(config, path, None)))
    return config


def grid_size(spec: SweepSpec) -> int:
    """Trials one sample expands to: the product of the grid leaves' lengths."""
    return math.prod(len(leaf.values) for leaf in spec.search.values() if leaf.is_grid)


def count_trials(spec: SweepSpec, num_samples: int | None = None) -> int:
    """How many trials Tune will start (grid product times samples)."""
    return grid_size(spec) * (num_samples or spec.samples)


def dependency_order(search: Mapping[str, Leaf]) -> list[str]:
    """Dependent paths ordered so each comes after the dependent paths it reads."""
    pending = [p for p, leaf in search.items() if leaf.is_dependent]
    done: list[str] = []
    while pending:
        ready = [p for p in pending if all(r not in pending or r == p for r in search[p].references())]
        if not ready:  # a cycle; validation reports it, keep file order here
            ready = pending[:1]
        done += ready
        pending = [p for p in pending if p not in ready]
    return done


_PRIMITIVE = (str, int, float, bool, type(None))


class OptunaSpace:
    """Optuna's define-by-run space for a sweep: suggests each random leaf, computes dependents.

    Parameters are named by path with ``/`` so Tune unflattens them into the nested config.
    Mapping options are suggested by index and returned merged, as in ``to_domain``.
    """

    def __init__(self, search: Mapping[str, Leaf], base: Mapping[str, Any]) -> None:
        self.search, self.base = dict(search), dict(base)

    def __call__(self, trial: Any) -> dict[str, Any]:
        config = deep_merge(self.base, {})
        out: dict[str, Any] = {}
        for path, leaf in self.search.items():
            if leaf.is_dependent:
                continue
            name, a = path.replace(".", "/"), leaf.args
            if leaf.kind == "choice":
                if all(isinstance(v, _PRIMITIVE) for v in leaf.values):
                    value = trial.suggest_categorical(name, list(leaf.values))
                else:
                    option = leaf.values[trial.suggest_categorical(name, list(range(len(leaf.values))))]
                    current = get_path(config, path, None)
                    value = out[name] = deep_merge(current, option) if isinstance(option, Mapping) else option
            elif leaf.kind == "uniform":
                value = trial.suggest_float(name, a[0], a[1])
            elif leaf.kind == "loguniform":
                value = trial.suggest_float(name, a[0], a[1], log=True)
            elif leaf.kind == "quniform":
                # Tune's quniform takes multiples of q, not low + k*q: give Optuna the same grid.
                lo, hi = math.ceil(a[0] / a[2]) * a[2], math.floor(a[1] / a[2]) * a[2]
                value = trial.suggest_float(name, lo, hi, step=a[2])
            elif leaf.kind == "qloguniform":
                value = out[name] = round(trial.suggest_float(name, a[0], a[1], log=True) / a[2]) * a[2]
            elif leaf.kind == "randint":
                value = trial.suggest_int(name, int(a[0]), int(a[1]) - 1)
            else:  # validation refuses other kinds with optuna
                raise ValueError(f"search.{path}: optuna cannot sample {leaf.kind}")
            set_path(config, path, value)
        for path in dependency_order(self.search):
            value = self.search[path].evaluate(lambda p: get_path(config, p))
            set_path(config, path, value)
            out[path.replace(".", "/")] = value
        return out


def optuna_space(spec: SweepSpec, seed_offset: int = 0) -> OptunaSpace:
    base = spec.base_config()
    base["train"]["seed"] += seed_offset
    return OptunaSpace(_shift_seed(spec, seed_offset), base)
