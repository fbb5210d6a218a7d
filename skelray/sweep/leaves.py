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
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_serializer

from skelray.config._problems import Problems, unknown_key_fix
from skelray.sweep import _expr

LeafKind = Literal["grid", "choice", "uniform", "quniform", "loguniform", "qloguniform", "randint",
                   "normal", "qnormal", "lognormal", "qlognormal", "beta", "qbeta", "depends", "expr"]
KINDS: tuple[str, ...] = LeafKind.__args__  # type: ignore[attr-defined]
# How many numbers each distribution takes, and what they are called in messages.
_ARGS = {
    "uniform": ("low", "high"), "loguniform": ("low", "high"), "randint": ("low", "high"),
    "quniform": ("low", "high", "q"), "qloguniform": ("low", "high", "q"),
    "normal": ("mu", "sigma"), "lognormal": ("mu", "sigma"),
    "qnormal": ("mu", "sigma", "q"), "qlognormal": ("mu", "sigma", "q"),
    "beta": ("a", "b"), "qbeta": ("a", "b", "q"),
}
_MODIFIERS = {"choice": {"weights"}, "depends": {"map", "default"}}
CONTINUOUS = frozenset({"uniform", "quniform", "loguniform", "qloguniform", "normal", "qnormal",
                        "lognormal", "qlognormal", "beta", "qbeta"})
# A string, not object(): the sentinel must survive pickling into Tune's experiment state.
_NO_DEFAULT = "__skelray_no_default__"


class Leaf(BaseModel):
    """One searched path. ``args`` holds the numbers of a distribution, in ``_ARGS`` order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: LeafKind
    values: tuple[Any, ...] = ()
    weights: tuple[float, ...] | None = None
    args: tuple[int | float, ...] = ()  # ints stay ints (randint) so a dumped spec loads again
    depends: str | None = None
    mapping: tuple[tuple[Any, Any], ...] = ()
    default: Any = _NO_DEFAULT
    expr: str | None = None

    @property
    def has_default(self) -> bool:
        return self.default != _NO_DEFAULT

    @property
    def is_grid(self) -> bool:
        return self.kind == "grid"

    @property
    def is_dependent(self) -> bool:
        return self.kind in ("depends", "expr")

    @property
    def is_random(self) -> bool:
        return not (self.is_grid or self.is_dependent)

    def references(self) -> list[str]:
        """Config paths a dependent leaf reads."""
        if self.kind == "depends":
            return [self.depends] if self.depends else []
        if self.kind == "expr" and self.expr:
            return _expr.parse(self.expr)[1]
        return []

    def evaluate(self, lookup: Any) -> Any:
        """The value of a dependent leaf; ``lookup(path)`` reads the trial config."""
        if self.kind == "expr":
            return _expr.evaluate(_expr.parse(self.expr or "")[0], lookup)
        source = lookup(self.depends)
        for key, value in self.mapping:
            if key == source or str(key) == str(source):
                return value
        if self.has_default:
            return self.default
        raise KeyError(f"no value in 'map' for {self.depends}={source!r}")

    def sample_points(self) -> list[Any]:
        """Values a trial may see, used to type-check the leaf against the config schema.

        Continuous leaves include an interior, non-round point so an integer field searched with
        ``uniform`` is caught before a trial gets 2.37 epochs.
        """
        if self.kind in ("grid", "choice"):
            return list(self.values)
        if self.kind == "randint":
            return [int(self.args[0]), int(self.args[1]) - 1]
        if self.kind in ("uniform", "loguniform"):
            lo, hi = self.args[:2]
            return [lo, hi, lo + 0.37 * (hi - lo)]
        if self.kind in ("quniform", "qloguniform"):
            lo, hi, q = self.args
            return [math.ceil(lo / q) * q, math.floor(hi / q) * q]
        if self.kind in ("normal", "qnormal"):
            return [self.args[0] + 0.37 * self.args[1]]
        if self.kind in ("lognormal", "qlognormal"):
            return [math.exp(self.args[0] + 0.37 * self.args[1])]
        if self.kind in ("beta", "qbeta"):
            return [0.37]
        return []

    @model_serializer
    def _to_yaml(self) -> dict[str, Any]:
        # Serialise back to the short YAML form so a dumped spec loads again.
        if self.kind in ("grid", "choice"):
            out: dict[str, Any] = {self.kind: list(self.values)}
            if self.weights is not None:
                out["weights"] = list(self.weights)
            return out
        if self.kind == "depends":
            out = {"depends": self.depends, "map": {k: v for k, v in self.mapping}}
            if self.has_default:
                out["default"] = self.default
            return out
        if self.kind == "expr":
            return {"expr": self.expr}
        return {self.kind: list(self.args)}


def is_leaf(value: Any) -> bool:
    """A mapping with a leaf kind key holding a list (or a string for depends/expr)."""
    if not isinstance(value, Mapping):
        return False
    for kind in KINDS:
        if kind in value:
            return isinstance(value[kind], (list, tuple, str)) or kind in ("depends", "expr")
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


def _numbers(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def parse_leaf(raw: Mapping[str, Any], where: str, problems: Problems) -> Leaf | None:
    """Check one leaf and build it; every problem is added with its path; None if unusable."""
    kinds = [k for k in raw if k in KINDS]
    if len(kinds) != 1:
        problems.add(where, f"a leaf takes one kind, got {', '.join(kinds)}", "split it or keep one")
        return None
    kind = kinds[0]
    allowed = {kind} | _MODIFIERS.get(kind, set())
    ok = True
    for key in raw:
        if key not in allowed:
            problems.add(f"{where}.{key}", f"unknown key '{key}' in a {kind} leaf",
                         unknown_key_fix(str(key), allowed))
            ok = False
    arg = raw[kind]
    at = f"{where}.{kind}"
    if kind in ("grid", "choice"):
        return _parse_values(kind, arg, raw.get("weights"), at, where, problems) if ok else None
    if kind == "depends":
        return _parse_depends(raw, at, where, problems) if ok else None
    if kind == "expr":
        if not isinstance(arg, str):
            problems.add(at, "expr must be a string", "quote it, e.g. expr: \"0.1 * train.batch_size / 256\"")
            return None
        try:
            _expr.parse(arg)
        except _expr.ExprError as exc:
            problems.add(at, str(exc), "rewrite the expression")
            return None
        return Leaf(kind="expr", expr=arg) if ok else None
    names = _ARGS[kind]
    if not _numbers(arg) or len(arg) != len(names):
        problems.add(at, f"{kind} takes [{', '.join(names)}], got {arg!r}",
                     f"write {kind}: [{', '.join(names)}] with numbers")
        return None
    args = tuple(float(v) for v in arg) if kind != "randint" else tuple(arg)
    if kind == "randint" and not all(isinstance(v, int) for v in arg):
        problems.add(at, f"randint bounds must be whole numbers, got {arg!r}", "use integers, e.g. [1, 6]")
        ok = False
    if names[:2] == ("low", "high") and args[0] >= args[1]:
        problems.add(at, f"low ({arg[0]}) must be less than high ({arg[1]})",
                     "swap the bounds or widen the range")
        ok = False
    if kind in ("loguniform", "qloguniform") and args[0] <= 0:
        problems.add(at, f"{kind} needs low > 0, got {arg[0]}", "use a positive lower bound, e.g. 1e-4")
        ok = False
    if names[1] == "sigma" and args[1] <= 0:
        problems.add(at, f"sigma must be > 0, got {arg[1]}", "use a positive standard deviation")
        ok = False
    if names[0] == "a" and (args[0] <= 0 or args[1] <= 0):
        problems.add(at, f"beta needs a > 0 and b > 0, got {arg!r}", "use positive shape parameters")
        ok = False
    if len(names) == 3 and args[2] <= 0:
        problems.add(at, f"q must be > 0, got {arg[2]}", "use a positive step, e.g. 1 or 0.05")
        ok = False
    return Leaf(kind=kind, args=args) if ok else None


def _parse_values(kind: str, arg: Any, weights: Any, at: str, where: str, problems: Problems) -> Leaf | None:
    if not isinstance(arg, (list, tuple)):
        problems.add(at, f"{kind} takes a list of values, got {arg!r}", f"write {kind}: [a, b, ...]")
        return None
    if not arg:
        problems.add(at, f"{kind} is empty", "list at least one value")
        return None
    for i, v in enumerate(arg):
        if _has_leaf(v):
            problems.add(f"{at}[{i}]", "an option may set a sub-tree but cannot hold another search leaf",
                         "search that path separately under search:")
            return None
    if weights is None:
        return Leaf(kind=kind, values=tuple(arg))
    if not _numbers(weights) or len(weights) != len(arg) or any(w < 0 for w in weights) or sum(weights) <= 0:
        problems.add(f"{where}.weights", f"weights must be {len(arg)} non-negative numbers, not all zero",
                     "give one weight per value")
        return None
    return Leaf(kind=kind, values=tuple(arg), weights=tuple(float(w) for w in weights))


def _has_leaf(value: Any) -> bool:
    return isinstance(value, Mapping) and (is_leaf(value) or any(_has_leaf(v) for v in value.values()))


def _parse_depends(raw: Mapping[str, Any], at: str, where: str, problems: Problems) -> Leaf | None:
    source, mapping = raw["depends"], raw.get("map")
    if not isinstance(source, str) or not source:
        problems.add(at, "depends must be a config path such as model.kwargs.pa_count",
                     "give the path as text")
        return None
    if not isinstance(mapping, Mapping) or not mapping:
        problems.add(f"{where}.map", "depends needs a non-empty 'map' from source values to values",
                     f"e.g. map: {{1: 0.1, 3: 0.05}} keyed by the values of {source}")
        return None
    return Leaf(kind="depends", depends=source, mapping=tuple(mapping.items()),
                default=raw.get("default", _NO_DEFAULT))


# -- helpers on nested config dicts ----------------------------------------------------------

_REQUIRED = object()


def get_path(config: Mapping[str, Any], path: str, default: Any = _REQUIRED) -> Any:
    """``config['a']['b']`` for ``a.b``; ``default`` if a segment is missing, else KeyError."""
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is _REQUIRED:
                raise KeyError(path)
            return default
        node = node[part]
    return node


def set_path(config: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = config
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def deep_merge(base: Any, update: Any) -> Any:
    """Merge ``update`` into a copy of ``base``: mappings recursively, anything else replaces."""
    if isinstance(base, Mapping) and isinstance(update, Mapping):
        out = dict(base)
        for key, value in update.items():
            out[key] = deep_merge(base[key], value) if key in base else value
        return out
    return update

