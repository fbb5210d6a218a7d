"""Search-space leaves: what one searched config path may take, parsed from the sweep YAML.

Leaf forms (``search:`` maps config paths, nested or dotted, to one of these):

=====================================  =====================================================
``{grid: [a, b, c]}``                  every value, one trial each (Tune ``grid_search``)
``{choice: [a, b], weights: [.7, .3]}``  one value at random per sample (weights optional)
``{uniform: [low, high]}``             float in [low, high)
``{quniform: [low, high, q]}``         uniform rounded to a multiple of q
``{loguniform: [low, high]}``          float whose log is uniform; low > 0
``{qloguniform: [low, high, q]}``      loguniform rounded to a multiple of q
``{randint: [low, high]}``             integer in [low, high) (high excluded, as in Tune)
``{normal: [mu, sigma]}``              normal; ``qnormal: [mu, sigma, q]`` rounded
``{lognormal: [mu, sigma]}``           exp(normal(mu, sigma)); ``qlognormal: [mu, sigma, q]``
``{beta: [a, b]}``                     beta distribution on [0, 1]; ``qbeta: [a, b, q]``
``{depends: PATH, map: {v: x, ...}, default: d}``  x looked up from the value at PATH
``{expr: "0.1 * train.batch_size / 256"}``  arithmetic over config paths (see ``_expr``)
=====================================  =====================================================

A ``grid``/``choice`` value that is a mapping sets a whole sub-tree: it is merged into the
base config at that path (``model: {grid: [{name: a}, {name: b, kwargs: {k: 1}}]}``), so keys
that differ between options belong in the options, not the base. ``expr`` and ``depends``
may read any config path, searched or not; a leaf inside a searched sub-tree is refused.
The quantised kinds take the multiples of q that lie in [low, high] (``quantized_bounds``).

Each kind is a class (``LEAF_TYPES`` maps the YAML key to it) that owns all there is to know
about it: reading and checking its mapping (``from_yaml``), the mapping it is written back as
(``to_yaml``), the values a grid expands it into, its Ray Tune domain, its Optuna suggestion,
and what the sweep checks ask of it. ``Leaf`` is the interface; callers ask the leaf rather
than branch on its kind. This module is the bottom of ``skelray.sweep`` beside ``_tree`` and
``_expr``; Ray is imported only when a Tune domain is built.
"""

from __future__ import annotations

import enum
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

from pydantic_core import core_schema

from skelray.config._problems import Problem, Problems, unknown_key_fix
from skelray.sweep import _expr
from skelray.sweep._tree import deep_merge

Lookup = Callable[[str], Any]  # reads one value of a trial's config by its dotted path
Hint = tuple[str, str]  # the message and fix of one problem with a leaf's numbers
_PRIMITIVE = (str, int, float, bool, type(None))
_OPTUNA_FIX = "use choice, uniform, loguniform, quniform or randint, or searcher random"


class Leaf(ABC):
    """One searched config path: the interface every kind of leaf implements.

    Subclasses are frozen dataclasses whose fields are the leaf's parameters; they set
    ``kind`` (the YAML key) and the flags below. A pydantic field typed ``Leaf`` holds leaf
    objects and dumps each as its ``to_yaml`` mapping.
    """

    kind: ClassVar[str]
    modifiers: ClassVar[frozenset[str]] = frozenset()  # the other keys the mapping may have
    is_grid: ClassVar[bool] = False  # every value runs, one trial each
    is_dependent: ClassVar[bool] = False  # computed from other config values, not drawn
    in_optuna: ClassVar[bool] = False  # Optuna can suggest it (or, if dependent, compute it)

    # -- the YAML form -------------------------------------------------------------------------
    @classmethod
    def holds(cls, arg: Any) -> bool:
        """Whether a mapping whose ``kind`` key holds ``arg`` is this leaf rather than a config
        key of the same name (``model: {kwargs: {beta: {grid: [...]}}}`` is not a beta leaf)."""
        return isinstance(arg, (list, tuple, str))

    @classmethod
    @abstractmethod
    def from_yaml(cls, raw: Mapping[str, Any], where: str, problems: Problems) -> Leaf | None:
        """The leaf the mapping ``raw`` (at YAML path ``where``) describes, or None if it is
        unusable; each problem is added to ``problems`` at its own path with a fix."""

    @abstractmethod
    def to_yaml(self) -> dict[str, Any]:
        """The mapping this leaf is written as; ``from_yaml`` reads it back to an equal leaf."""

    # -- the values a trial can get --------------------------------------------------------------
    @property
    def is_random(self) -> bool:
        return not (self.is_grid or self.is_dependent)

    def grid_points(self) -> tuple[Any, ...] | None:
        """The values a grid expansion runs, one trial each; None for a leaf that is drawn or
        computed once per trial."""
        return None

    def sample_points(self) -> list[Any]:
        """Values a trial may get, used to type-check the leaf against the config schema.

        Continuous leaves include an interior, non-round point so an integer field searched with
        ``uniform`` is caught before a trial gets 2.37 epochs. Computed leaves have none.
        """
        return []

    def exact_values(self) -> tuple[Any, ...] | None:
        """Every value a trial can get, where a ``depends`` map can key on each exactly: a grid's
        or choice's list, a randint's integers. None for float distributions (a sample seldom
        equals a key) and computed leaves."""
        return None

    def shifted(self, offset: int) -> Leaf:
        """This leaf with its values moved by ``offset``: the new training seeds of a resumed
        sweep's extra samples. Leaves without listed values or integer bounds stay as they are."""
        return self

    # -- Ray Tune and Optuna -------------------------------------------------------------------
    @abstractmethod
    def tune_domain(self, path: str, base_value: Any = None) -> Any:
        """Ray Tune's search-space object for ``path``; ``base_value`` is the base config's value
        there, into which mapping options merge."""

    def pbt_mutation(self, path: str, base_value: Any = None) -> Any:
        """What PBT's ``hyperparam_mutations`` takes: the Tune domain, which PBT resamples or
        scales by 0.8/1.2."""
        return self.tune_domain(path, base_value)

    def suggest(self, trial: Any, name: str, base_value: Any = None) -> Any:
        """Optuna's define-by-run form: the value ``trial`` suggests for the parameter ``name``."""
        raise ValueError(f"optuna has no {self.kind} distribution")  # the sweep checks refuse it first

    def optuna_problem(self, where: str) -> Problem | None:
        """Why Optuna cannot search this leaf, or None if it can."""
        return None if self.in_optuna else Problem(where, f"optuna has no {self.kind} distribution", _OPTUNA_FIX)

    # -- computed leaves -------------------------------------------------------------------------
    def references(self) -> list[str]:
        """Config paths a computed leaf reads."""
        return []

    def evaluate(self, lookup: Lookup) -> Any:
        """The value of a computed leaf; ``lookup(path)`` reads the trial config."""
        raise TypeError(f"a {self.kind} leaf is sampled, not computed from the config")

    def values_given(self, lookup: Lookup) -> list[Any]:
        """The values this leaf can give a trial whose config ``lookup`` reads, to type-check
        them; a leaf that is not computed gives its ``sample_points``."""
        return self.sample_points()

    def check_against(self, search: Mapping[str, Leaf], where: str) -> list[Problem]:
        """Problems of this leaf with the other leaves of the search (``where`` is its path)."""
        return []

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        # ``parse_search`` builds the leaves, reporting each problem with its path and fix;
        # pydantic only checks the type, and dumps the YAML form so a saved spec loads again.
        return core_schema.is_instance_schema(
            source, serialization=core_schema.plain_serializer_function_ser_schema(lambda leaf: leaf.to_yaml()))


# -- listed values ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Options(Leaf):
    """A list of values written out (``grid``, ``choice``); a mapping value sets a sub-tree."""

    values: tuple[Any, ...]

    @classmethod
    def from_yaml(cls, raw: Mapping[str, Any], where: str, problems: Problems) -> Leaf | None:
        arg, at = raw[cls.kind], f"{where}.{cls.kind}"
        if not isinstance(arg, (list, tuple)):
            problems.add(at, f"{cls.kind} takes a list of values, got {arg!r}", f"write {cls.kind}: [a, b, ...]")
            return None
        if not arg:
            problems.add(at, f"{cls.kind} is empty", "list at least one value")
            return None
        for i, v in enumerate(arg):
            if _has_leaf(v):
                problems.add(f"{at}[{i}]", "an option may set a sub-tree but cannot hold another search leaf",
                             "search that path separately under search:")
                return None
        return cls._from_values(tuple(arg), raw, where, problems)

    @classmethod
    def _from_values(cls, values: tuple[Any, ...], raw: Mapping[str, Any], where: str,
                     problems: Problems) -> Leaf | None:
        return cls(values)

    def to_yaml(self) -> dict[str, Any]:
        return {self.kind: list(self.values)}

    def sample_points(self) -> list[Any]:
        return list(self.values)

    def exact_values(self) -> tuple[Any, ...]:
        return self.values

    def shifted(self, offset: int) -> Leaf:
        return replace(self, values=tuple(v + offset for v in self.values))

    def pbt_mutation(self, path: str, base_value: Any = None) -> list[Any]:
        return list(self.values)  # PBT steps to a neighbouring value

    def _merged(self, base_value: Any) -> list[Any]:
        """The values as a trial gets them: mapping options merged into the base sub-tree."""
        if not isinstance(base_value, Mapping):
            return list(self.values)
        return [deep_merge(base_value, v) if isinstance(v, Mapping) else v for v in self.values]


@dataclass(frozen=True)
class Grid(_Options):
    """``{grid: [a, b, c]}``: every value, one trial each (Tune ``grid_search``)."""

    kind = "grid"
    is_grid = True

    def grid_points(self) -> tuple[Any, ...]:
        return self.values

    def tune_domain(self, path: str, base_value: Any = None) -> dict[str, list[Any]]:
        from ray import tune

        return tune.grid_search(self._merged(base_value))

    def optuna_problem(self, where: str) -> Problem:
        return Problem(where, "optuna samples values itself and cannot run a grid",
                       "write {choice: [...]} instead, or use searcher grid/random")


@dataclass(frozen=True)
class Choice(_Options):
    """``{choice: [a, b], weights: [.7, .3]}``: one value at random per sample."""

    kind = "choice"
    modifiers = frozenset({"weights"})
    in_optuna = True

    weights: tuple[float, ...] | None = None

    @classmethod
    def _from_values(cls, values: tuple[Any, ...], raw: Mapping[str, Any], where: str,
                     problems: Problems) -> Leaf | None:
        weights = raw.get("weights")
        if weights is None:
            return cls(values)
        if not _numbers(weights) or len(weights) != len(values) or any(w < 0 for w in weights) \
                or sum(weights) <= 0:
            problems.add(f"{where}.weights", f"weights must be {len(values)} non-negative numbers, not all zero",
                         "give one weight per value")
            return None
        return cls(values, tuple(float(w) for w in weights))

    def to_yaml(self) -> dict[str, Any]:
        out = super().to_yaml()
        if self.weights is not None:
            out["weights"] = list(self.weights)
        return out

    def tune_domain(self, path: str, base_value: Any = None) -> Any:
        if self.weights is None:
            from ray import tune

            return tune.choice(self._merged(base_value))
        from skelray.sweep._tune_samplers import weighted_choice

        return weighted_choice(self._merged(base_value), self.weights)

    def suggest(self, trial: Any, name: str, base_value: Any = None) -> Any:
        if all(isinstance(v, _PRIMITIVE) for v in self.values):
            return trial.suggest_categorical(name, list(self.values))
        # Optuna stores only primitive choices: suggest the option's index, return the option.
        option = self.values[trial.suggest_categorical(name, list(range(len(self.values))))]
        return deep_merge(base_value, option) if isinstance(option, Mapping) else option

    def optuna_problem(self, where: str) -> Problem | None:
        if self.weights is None:
            return None
        return Problem(where, "optuna has no choice with weights distribution", _OPTUNA_FIX)


# -- distributions ---------------------------------------------------------------------------

class _Numbers(Leaf):
    """A distribution written as its numbers, ``{kind: [a, b]}`` or ``{kind: [a, b, q]}``; the
    dataclass fields are those numbers, in that order."""

    @classmethod
    def from_yaml(cls, raw: Mapping[str, Any], where: str, problems: Problems) -> Leaf | None:
        arg, at = raw[cls.kind], f"{where}.{cls.kind}"
        names = [f.name for f in fields(cls)]
        if not _numbers(arg) or len(arg) != len(names):
            shown = ", ".join(names)
            problems.add(at, f"{cls.kind} takes [{shown}], got {arg!r}", f"write {cls.kind}: [{shown}] with numbers")
            return None
        found = list(cls._problems(arg))
        for message, fix in found:
            problems.add(at, message, fix)
        return None if found else cls._make(arg)

    @classmethod
    def _problems(cls, a: Any) -> Iterator[Hint]:
        """What is wrong with the numbers ``a``, as written."""
        return iter(())

    @classmethod
    def _make(cls, a: Any) -> Leaf:
        return cls(*(float(v) for v in a))

    @property
    def args(self) -> tuple[float, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def to_yaml(self) -> dict[str, Any]:
        return {self.kind: list(self.args)}


def _step_problems(a: Any, *, lattice: bool = False) -> list[Hint]:
    """The step ``q = a[2]`` must be positive; with ``lattice``, some multiple of it must lie in
    ``[a[0], a[1]]`` (a quantised range)."""
    if a[2] <= 0:
        return [(f"q must be > 0, got {a[2]}", "use a positive step, e.g. 1 or 0.05")]
    if lattice and a[0] < a[1] and not _multiples(a[0], a[1], a[2]):
        return [(f"no multiple of q ({a[2]}) lies in [{a[0]}, {a[1]}]", "lower q or widen the range")]
    return []


@dataclass(frozen=True)
class _Range(_Numbers):
    """A distribution over ``[low, high]``."""

    low: float
    high: float

    @classmethod
    def _problems(cls, a: Any) -> Iterator[Hint]:
        if a[0] >= a[1]:
            yield f"low ({a[0]}) must be less than high ({a[1]})", "swap the bounds or widen the range"

    def sample_points(self) -> list[Any]:
        return [self.low, self.high, self.low + 0.37 * (self.high - self.low)]


@dataclass(frozen=True)
class Uniform(_Range):
    """``{uniform: [low, high]}``: a float in [low, high)."""

    kind = "uniform"
    in_optuna = True

    def tune_domain(self, path: str, base_value: Any = None) -> Any:
        from ray import tune

        return tune.uniform(self.low, self.high)

    def suggest(self, trial: Any, name: str, base_value: Any = None) -> float:
        return trial.suggest_float(name, self.low, self.high)


class _OnLattice:
    """What the quantised ranges share: their bounds are checked against q, and drawn values
    lie on the multiples of q inside [low, high] (``quantized_bounds``, the one rule)."""

    low: float
    high: float
    q: float

    @classmethod
    def _problems(cls, a: Any) -> Iterator[Hint]:
        yield from super()._problems(a)  # type: ignore[misc]  # the range's own checks
        yield from _step_problems(a, lattice=True)

    @property
    def lattice(self) -> tuple[float, float]:
        """The smallest and largest multiples of q in [low, high]."""
        return quantized_bounds(self.low, self.high, self.q)

    def sample_points(self) -> list[Any]:
        return list(self.lattice)


@dataclass(frozen=True)
class QUniform(_OnLattice, Uniform):
    """``{quniform: [low, high, q]}``: a multiple of q in [low, high], uniformly."""

    kind = "quniform"

    q: float

    def tune_domain(self, path: str, base_value: Any = None) -> Any:
        from ray import tune

        return tune.quniform(*self.lattice, self.q)

    def suggest(self, trial: Any, name: str, base_value: Any = None) -> float:
        return trial.suggest_float(name, *self.lattice, step=self.q)


@dataclass(frozen=True)
class LogUniform(_Range):
    """``{loguniform: [low, high]}``: a float whose log is uniform; low > 0."""

    kind = "loguniform"
    in_optuna = True

    @classmethod
    def _problems(cls, a: Any) -> Iterator[Hint]:
        yield from super()._problems(a)
        if a[0] <= 0:
            yield f"{cls.kind} needs low > 0, got {a[0]}", "use a positive lower bound, e.g. 1e-4"

    def tune_domain(self, path: str, base_value: Any = None) -> Any:
        from ray import tune

        return tune.loguniform(self.low, self.high)

    def suggest(self, trial: Any, name: str, base_value: Any = None) -> float:
        return trial.suggest_float(name, self.low, self.high, log=True)


@dataclass(frozen=True)
class QLogUniform(_OnLattice, LogUniform):
    """``{qloguniform: [low, high, q]}``: loguniform rounded to a multiple of q in [low, high]."""

    kind = "qloguniform"

    q: float

    def tune_domain(self, path: str, base_value: Any = None) -> Any:
        from ray import tune

        return tune.qloguniform(*self.lattice, self.q)

    def suggest(self, trial: Any, name: str, base_value: Any = None) -> float:
        # Optuna has no log scale with a step: suggest on the log scale, then round as Tune does.
        return round(trial.suggest_float(name, *self.lattice, log=True) / self.q) * self.q


@dataclass(frozen=True)
class RandInt(_Range):
    """``{randint: [low, high]}``: an integer in [low, high), high excluded as in Tune."""

    kind = "randint"
    in_optuna = True

    low: int
    high: int

    @classmethod
    def _problems(cls, a: Any) -> Iterator[Hint]:
        if not all(isinstance(v, int) for v in a):
            yield f"randint bounds must be whole numbers, got {a!r}", "use integers, e.g. [1, 6]"
        yield from super()._problems(a)

    @classmethod
    def _make(cls, a: Any) -> Leaf:
        return cls(*a)  # ints stay ints, so a dumped spec loads again

    def sample_points(self) -> list[Any]:
        return [self.low, self.high - 1]

    def exact_values(self) -> tuple[int, ...]:
        return tuple(range(self.low, self.high))

    def shifted(self, offset: int) -> Leaf:
        return replace(self, low=self.low + offset, high=self.high + offset)

    def tune_domain(self, path: str, base_value: Any = None) -> Any:
        from ray import tune

        return tune.randint(self.low, self.high)

    def suggest(self, trial: Any, name: str, base_value: Any = None) -> int:
        return trial.suggest_int(name, self.low, self.high - 1)


@dataclass(frozen=True)
class _Gaussian(_Numbers):
    mu: float
    sigma: float

    @classmethod
    def _problems(cls, a: Any) -> Iterator[Hint]:
        if a[1] <= 0:
            yield f"sigma must be > 0, got {a[1]}", "use a positive standard deviation"


@dataclass(frozen=True)
class Normal(_Gaussian):
    """``{normal: [mu, sigma]}``: a normally distributed float."""

    kind = "normal"

    def sample_points(self) -> list[Any]:
        return [self.mu + 0.37 * self.sigma]

    def tune_domain(self, path: str, base_value: Any = None) -> Any:
        from ray import tune

        return tune.randn(self.mu, self.sigma)


@dataclass(frozen=True)
class QNormal(Normal):
    """``{qnormal: [mu, sigma, q]}``: normal rounded to a multiple of q."""

    kind = "qnormal"

    q: float

    @classmethod
    def _problems(cls, a: Any) -> Iterator[Hint]:
        yield from super()._problems(a)
        yield from _step_problems(a)

    def tune_domain(self, path: str, base_value: Any = None) -> Any:
        from ray import tune

        return tune.qrandn(self.mu, self.sigma, self.q)


class _Drawn(_Numbers):
    """A distribution Tune has no domain for: the leaf draws it from Tune's seeded RNG."""

    @abstractmethod
    def draw(self, rng: Any, size: int) -> list[float]:
        """``size`` samples from ``rng`` (numpy's Generator interface)."""

    def tune_domain(self, path: str, base_value: Any = None) -> Any:
        from skelray.sweep._tune_samplers import drawn_by

        return drawn_by(self)


class _Rounded:
    """What the rounded distributions share (``q`` after the distribution's own arguments):
    q is checked, and each value the distribution draws is rounded to a multiple of q."""

    q: float

    @classmethod
    def _problems(cls, a: Any) -> Iterator[Hint]:
        yield from super()._problems(a)  # type: ignore[misc]  # the distribution's own checks
        yield from _step_problems(a)

    def draw(self, rng: Any, size: int) -> list[float]:
        return [round(v / self.q) * self.q for v in super().draw(rng, size)]  # type: ignore[misc]


@dataclass(frozen=True)
class LogNormal(_Drawn, _Gaussian):
    """``{lognormal: [mu, sigma]}``: exp(normal(mu, sigma))."""

    kind = "lognormal"

    def draw(self, rng: Any, size: int) -> list[float]:
        return [math.exp(v) for v in rng.normal(self.mu, self.sigma, size=size)]

    def sample_points(self) -> list[Any]:
        return [math.exp(self.mu + 0.37 * self.sigma)]


@dataclass(frozen=True)
class QLogNormal(_Rounded, LogNormal):
    """``{qlognormal: [mu, sigma, q]}``: lognormal rounded to a multiple of q."""

    kind = "qlognormal"

    q: float


@dataclass(frozen=True)
class Beta(_Drawn):
    """``{beta: [a, b]}``: the beta distribution on [0, 1]."""

    kind = "beta"

    a: float
    b: float

    @classmethod
    def _problems(cls, a: Any) -> Iterator[Hint]:
        if a[0] <= 0 or a[1] <= 0:
            yield f"beta needs a > 0 and b > 0, got {a!r}", "use positive shape parameters"

    def draw(self, rng: Any, size: int) -> list[float]:
        return [float(v) for v in rng.beta(self.a, self.b, size=size)]

    def sample_points(self) -> list[Any]:
        return [0.37]


@dataclass(frozen=True)
class QBeta(_Rounded, Beta):
    """``{qbeta: [a, b, q]}``: beta rounded to a multiple of q."""

    kind = "qbeta"

    q: float


# -- computed values -------------------------------------------------------------------------

class _Unset(enum.Enum):
    # An enum member, not object(): it must be itself again after Tune pickles the leaf.
    NO_DEFAULT = "no default"


class _Computed(Leaf):
    """A value computed from the trial's config once the values it reads are sampled."""

    is_dependent = True
    in_optuna = True

    @classmethod
    def holds(cls, arg: Any) -> bool:
        return True  # whatever it holds, ``from_yaml`` says what is wrong with it

    @abstractmethod
    def values_given(self, lookup: Lookup) -> list[Any]: ...

    def tune_domain(self, path: str, base_value: Any = None) -> Any:
        from skelray.sweep._tune_samplers import computed

        return computed(path, self)


@dataclass(frozen=True)
class Depends(_Computed):
    """``{depends: PATH, map: {v: x, ...}, default: d}``: x looked up from the value at PATH."""

    kind = "depends"
    modifiers = frozenset({"map", "default"})

    source: str
    mapping: tuple[tuple[Any, Any], ...]
    default: Any = _Unset.NO_DEFAULT

    @classmethod
    def from_yaml(cls, raw: Mapping[str, Any], where: str, problems: Problems) -> Leaf | None:
        source, mapping = raw["depends"], raw.get("map")
        if not isinstance(source, str) or not source:
            problems.add(f"{where}.depends", "depends must be a config path such as model.kwargs.pa_count",
                         "give the path as text")
            return None
        if not isinstance(mapping, Mapping) or not mapping:
            problems.add(f"{where}.map", "depends needs a non-empty 'map' from source values to values",
                         f"e.g. map: {{1: 0.1, 3: 0.05}} keyed by the values of {source}")
            return None
        return cls(source, tuple(mapping.items()), raw.get("default", _Unset.NO_DEFAULT))

    def to_yaml(self) -> dict[str, Any]:
        out: dict[str, Any] = {"depends": self.source, "map": dict(self.mapping)}
        if self.has_default:
            out["default"] = self.default
        return out

    @property
    def has_default(self) -> bool:
        return self.default is not _Unset.NO_DEFAULT

    def references(self) -> list[str]:
        return [self.source]

    def evaluate(self, lookup: Lookup) -> Any:
        value = lookup(self.source)
        for key, out in self.mapping:
            if _same_key(key, value):
                return out
        if self.has_default:
            return self.default
        raise KeyError(f"no value in 'map' for {self.source}={value!r}")

    def values_given(self, lookup: Lookup) -> list[Any]:
        return [out for _, out in self.mapping]

    def check_against(self, search: Mapping[str, Leaf], where: str) -> list[Problem]:
        source = search.get(self.source)
        if source is None or self.has_default:
            return []
        values = source.exact_values()
        if values is not None:
            missing = [v for v in values if not any(_same_key(key, v) for key, _ in self.mapping)]
            if not missing:
                return []
            return [Problem(f"{where}.map", f"no value for {self.source} = {', '.join(map(repr, missing))}",
                            "add those keys to map, or give a default")]
        if source.is_random:
            return [Problem(f"{where}.map", f"{self.source} is sampled from {source.kind}, so map keys rarely match",
                            "add a default, or use expr for a formula")]
        return []


def _same_key(key: Any, value: Any) -> bool:
    """A map key matches a value equal to it or written the same (YAML and JSON make keys text)."""
    return key == value or str(key) == str(value)


@dataclass(frozen=True)
class Expr(_Computed):
    """``{expr: "0.1 * train.batch_size / 256"}``: arithmetic over config paths (see ``_expr``)."""

    kind = "expr"

    text: str

    @classmethod
    def from_yaml(cls, raw: Mapping[str, Any], where: str, problems: Problems) -> Leaf | None:
        arg, at = raw["expr"], f"{where}.expr"
        if not isinstance(arg, str):
            problems.add(at, "expr must be a string", "quote it, e.g. expr: \"0.1 * train.batch_size / 256\"")
            return None
        try:
            _expr.parse(arg)
        except _expr.ExprError as exc:
            problems.add(at, str(exc), "rewrite the expression")
            return None
        return cls(arg)

    def to_yaml(self) -> dict[str, Any]:
        return {"expr": self.text}

    def references(self) -> list[str]:
        return _expr.parse(self.text)[1]

    def evaluate(self, lookup: Lookup) -> Any:
        return _expr.evaluate(_expr.parse(self.text)[0], lookup)

    def values_given(self, lookup: Lookup) -> list[Any]:
        return [self.evaluate(lookup)]


# The YAML key -> its class; a mapping holding several keys is read by the first of them here.
LEAF_TYPES: dict[str, type[Leaf]] = {cls.kind: cls for cls in (
    Grid, Choice, Uniform, QUniform, LogUniform, QLogUniform, RandInt, Normal, QNormal, LogNormal, QLogNormal,
    Beta, QBeta, Depends, Expr)}


# -- the quantised grid: one rule for Tune, Optuna, the sweep checks and W&B files -------------

def _multiples(low: float, high: float, q: float) -> range:
    """The k with k * q in [low, high]. As in Tune's quantised samplers, a bound within rounding
    error of a multiple of q counts as that multiple (0.15 is 3 * 0.05)."""
    def index(bound: float, inwards: Callable[[float], float]) -> int:
        scaled = bound / q
        nearest = round(scaled)
        return nearest if math.isclose(scaled, nearest) else int(inwards(scaled))

    return range(index(low, math.ceil), index(high, math.floor) + 1)


def _tidy(x: float) -> float | int:
    """``k * q`` without its rounding error (3 * 0.05 is 0.15, not 0.15000000000000002); a whole
    number as an int."""
    r = float(f"{x:.12g}")
    return int(r) if r.is_integer() else r


def quantized_bounds(low: float, high: float, q: float) -> tuple[float | int, float | int]:
    """The least and the greatest multiple of ``q`` in ``[low, high]``."""
    ks = _multiples(low, high, q)
    return _tidy(ks.start * q), _tidy((ks.stop - 1) * q)


def quantized_grid(low: float, high: float, q: float) -> list[float | int]:
    """Every multiple of ``q`` in ``[low, high]``, in order."""
    return [_tidy(k * q) for k in _multiples(low, high, q)]


def grid_trials(leaves: Iterable[Leaf]) -> int:
    """Trials one sample of a search makes: the product of its grid leaves' lengths."""
    return math.prod(len(points) for leaf in leaves if (points := leaf.grid_points()) is not None)


# -- reading a search block ------------------------------------------------------------------

def is_leaf(value: Any) -> bool:
    """A mapping with a leaf kind as a key, holding what that kind takes (``Leaf.holds``)."""
    if not isinstance(value, Mapping):
        return False
    for kind, cls in LEAF_TYPES.items():
        if kind in value:
            return cls.holds(value[kind])
    return False


def parse_search(raw: Any, problems: Problems, where: str = "search") -> dict[str, Leaf]:
    """Flatten a nested/dotted ``search`` block into ``{config path: Leaf}``, in file order."""
    out: dict[str, Leaf] = {}
    if raw is None:
        return out
    if not isinstance(raw, Mapping):
        problems.add(where, f"must be a mapping of config paths to leaves, got {type(raw).__name__}",
                     "write e.g. 'train.lr: {loguniform: [0.001, 0.1]}'")
        return out
    _flatten(raw, "", out, problems, where)
    return out


def _flatten(node: Mapping, prefix: str, out: dict[str, Leaf], problems: Problems, where: str) -> None:
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        at = f"{where}.{path}"
        if isinstance(value, Leaf):
            out[path] = value
        elif is_leaf(value):
            leaf = parse_leaf(value, at, problems)
            if path in out:
                problems.add(at, "this path is searched twice", "keep one leaf per config path")
            elif leaf is not None:
                out[path] = leaf
        elif isinstance(value, Mapping) and value:
            _flatten(value, path, out, problems, where)
        else:
            shown = f"[{', '.join(map(str, value))}]" if isinstance(value, list) else repr(value)
            problems.add(at, f"expected a search leaf, got {shown}",
                         f"write e.g. '{{grid: {shown}}}' or '{{choice: {shown}}}'; constants belong in "
                         "the base config, not under search")


def parse_leaf(raw: Mapping[str, Any], where: str, problems: Problems) -> Leaf | None:
    """Check one leaf mapping and build it; every problem is added with its path; None if unusable."""
    kinds = [k for k in raw if k in LEAF_TYPES]
    if len(kinds) != 1:
        problems.add(where, f"a leaf takes one kind, got {', '.join(kinds)}", "split it or keep one")
        return None
    cls = LEAF_TYPES[kinds[0]]
    allowed = {cls.kind, *cls.modifiers}
    unknown = [key for key in raw if key not in allowed]
    for key in unknown:
        problems.add(f"{where}.{key}", f"unknown key '{key}' in a {cls.kind} leaf",
                     unknown_key_fix(str(key), allowed))
    leaf = cls.from_yaml(raw, where, problems)
    return None if unknown else leaf


def _numbers(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def _has_leaf(value: Any) -> bool:
    return isinstance(value, Mapping) and (is_leaf(value) or any(_has_leaf(v) for v in value.values()))
