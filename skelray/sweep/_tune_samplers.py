"""Ray Tune samplers for what Tune has no domain of its own for: a weighted choice, a
distribution a search leaf draws itself (log-normal, beta), and the ``sample_from`` function
of a dependent leaf.

The leaf classes import this module only when they build a Tune domain, so loading a sweep
does not import Ray. It imports nothing of ``skelray.sweep``: a leaf hands itself in.
Everything here is a class, not a closure, so Tune's experiment state pickles it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ray import tune
from ray.tune.search.sample import Categorical, Domain, Float, Function, Sampler
from ray.tune.search.variant_generator import RecursiveDependencyError


class _Drawable(Protocol):
    kind: str
    args: tuple[float, ...]

    def draw(self, rng: Any, size: int) -> list[float]: ...


class _Computable(Protocol):
    def evaluate(self, lookup: Any) -> Any: ...


class _WeightedSampler(Sampler):
    """``choice`` with weights: Tune's Categorical only samples uniformly."""

    def __init__(self, weights: Sequence[float]) -> None:
        total = float(sum(weights))
        self.p = [w / total for w in weights]

    def sample(self, domain: Domain, config: Any = None, size: int = 1, random_state: Any = None) -> Any:
        idx = random_state.choice(len(self.p), size=size, p=self.p)
        items = [domain.categories[int(i)] for i in idx]
        return items if size > 1 else items[0]

    def __str__(self) -> str:
        return f"Weighted({self.p})"


class _DrawnSampler(Sampler):
    """A float the leaf draws itself from Tune's seeded RNG (``leaf.draw(rng, size)``)."""

    def __init__(self, leaf: _Drawable) -> None:
        self.leaf = leaf

    def sample(self, domain: Domain, config: Any = None, size: int = 1, random_state: Any = None) -> Any:
        x = self.leaf.draw(random_state, size)
        return x if size > 1 else x[0]

    def __str__(self) -> str:
        return f"{self.leaf.kind}{list(self.leaf.args)}"


def weighted_choice(values: list[Any], weights: Sequence[float]) -> Categorical:
    domain = Categorical(values)
    domain.set_sampler(_WeightedSampler(weights))
    return domain


def drawn_by(leaf: _Drawable) -> Float:
    domain = Float(None, None)
    domain.set_sampler(_DrawnSampler(leaf))
    return domain


class DependentValue:
    """The function behind ``tune.sample_from`` for a dependent (``depends``/``expr``) leaf."""

    def __init__(self, path: str, leaf: _Computable) -> None:
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


def computed(path: str, leaf: _Computable) -> Function:
    return tune.sample_from(DependentValue(path, leaf))
