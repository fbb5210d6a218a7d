"""Search leaves -> Ray Tune's ``param_space`` and Optuna's define-by-run space.

The param space is the *whole* trial config (data/model/train) with each searched path
replaced by its leaf's Tune domain, so each trial's ``config`` is complete: the trial
validates it with ``TrialConfig.from_tune`` and needs nothing else. Computed leaves become
``tune.sample_from`` functions that read the sampled config; Tune resolves them after the
values they read.

Everything here takes the search leaves and the base config as they are; the sweep-level
choices (which searcher, the seed of a resumed sweep's extra samples) are made by
``tune_builders``, which calls this.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import partial
from typing import Any

from skelray.sweep._tree import get_path, set_path
from skelray.sweep.leaves import Leaf


def param_space(search: Mapping[str, Leaf], base: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with each searched path set to its leaf's Tune domain."""
    config = copy.deepcopy(dict(base))
    for path, leaf in search.items():
        set_path(config, path, leaf.tune_domain(path, get_path(config, path, None)))
    return config


def dependency_order(search: Mapping[str, Leaf]) -> list[str]:
    """Computed paths ordered so each comes after the computed paths it reads."""
    pending = [p for p, leaf in search.items() if leaf.is_dependent]
    done: list[str] = []
    while pending:
        ready = [p for p in pending if all(r not in pending or r == p for r in search[p].references())]
        if not ready:  # a cycle; validation reports it, keep file order here
            ready = pending[:1]
        done += ready
        pending = [p for p in pending if p not in ready]
    return done


class OptunaSpace:
    """Optuna's define-by-run space for a sweep: suggests each random leaf, computes the others.

    Parameters are named by path with ``/`` so Tune unflattens them into the nested config.
    Every value is returned too, and wins over what Optuna recorded: a mapping option is
    suggested by its index but returned merged (as in the Tune domain), a ``qloguniform``
    rounded.
    """

    def __init__(self, search: Mapping[str, Leaf], base: Mapping[str, Any]) -> None:
        self.search, self.base = dict(search), dict(base)

    def __call__(self, trial: Any) -> dict[str, Any]:
        config = copy.deepcopy(self.base)  # a fresh copy per trial: values set here must not leak
        out: dict[str, Any] = {}
        for path, leaf in self.search.items():
            if not leaf.is_dependent:
                value = leaf.suggest(trial, _name(path), get_path(config, path, None))
                set_path(config, path, value)
                out[_name(path)] = value
        for path in dependency_order(self.search):
            value = self.search[path].evaluate(partial(get_path, config))
            set_path(config, path, value)
            out[_name(path)] = value
        return out


def _name(path: str) -> str:
    return path.replace(".", "/")
