"""Checks of one trial's config against the registries, the disk and the search leaves.

``check_trial`` runs on the base config and again on the config each searched value makes,
so a bad value in a grid is reported at its ``search.`` path before any trial starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from skelray.config import LAYOUT_FILE_SUFFIXES, TrialConfig
from skelray.config._problems import Problem, did_you_mean, pydantic_problems, unknown_key_fix
from skelray.config.trial import FoldSpec
from skelray.data import get_layout, list_layouts
from skelray.errors import ConfigError, DataError, LayoutError
from skelray.sweep._tree import get_path, with_values
from skelray.sweep.leaves import Leaf

if TYPE_CHECKING:
    from skelray.sweep.spec import SweepSpec

SECTIONS = tuple(TrialConfig.model_fields)  # what a search path starts with
# Model arguments the trial fills in from the data, so a sweep must not set them.
FROM_DATA = {"num_classes": "it is the dataset's class count", "layout": "set data.layout instead",
             "in_channels": "it follows from data.stream", "num_persons": "set data.persons instead"}


# -- the model registry ------------------------------------------------------------------------

def registered_models() -> list[str]:
    from skelray.models import list_models

    return list_models()


def model_kwarg_names(name: str, kwargs: dict[str, Any] | None = None) -> set[str] | None:
    """Keyword arguments ``name`` accepts (less those the trial fills in from the data), or
    None when ``name`` is not a registered model (the model-name check reports that). For a
    model that wraps another, ``kwargs`` (the config's ``model.kwargs``) names the wrapped one
    (``backbone``); its options count too."""
    from skelray.models import model_options

    try:
        found = model_options(name, **dict(kwargs or {}))
    except ConfigError:
        return None
    return set(found) - set(FROM_DATA)  # the trial passes these itself; a sweep must not


def check_trial(cfg: TrialConfig, spec: SweepSpec, *, check_paths: bool = True) -> list[Problem]:
    """Checks of one trial's data/model/train that need registries, the disk or several keys."""
    out: list[Problem] = []
    data, model, train = cfg.data, cfg.model, cfg.train
    models = registered_models()
    if model.name not in models:
        out.append(Problem("model.name", f"unknown model '{model.name}'",
                           unknown_key_fix(model.name, models)))
    names = model_kwarg_names(model.name, model.kwargs)
    for key in model.kwargs:
        if key in FROM_DATA:
            out.append(Problem(f"model.kwargs.{key}", f"'{key}' is set by the trial from the data",
                               f"remove it; {FROM_DATA[key]}"))
        elif names is not None and key not in names:
            out.append(Problem(f"model.kwargs.{key}", f"'{model.name}' has no argument '{key}'",
                               unknown_key_fix(key, names)))

    layout, problem = _layout_of(data, check_paths)
    if problem is not None:
        out.append(problem)
    else:
        if not any(p.where.startswith("model.") for p in out):
            out += _build_problems(model.name, model.kwargs, layout)
        if data.mirror and layout is not None:
            out += _mirror_problems(layout)
    if data.format == "synthetic":
        if data.path is not None:
            out.append(Problem("data.path", "format synthetic makes its data and reads no path",
                               "remove data.path, or set data.format to the format of that data"))
    else:
        if not data.path:
            out.append(Problem("data.path", f"format {data.format} needs a data path",
                               "set data.path, or pass it on the command line (--data PATH)"))
        elif check_paths and "://" not in data.path and "${" not in data.path \
                and not os.path.exists(os.path.expanduser(data.path)):
            out.append(Problem("data.path", f"'{data.path}' does not exist",
                               "check the path (relative paths start from the current folder)"))
        for key in ("num_classes", "num_per_class", "seed", "subjects", "subject_effect"):
            # Compared with the default, not "was it written": a dumped spec writes every key.
            if getattr(data, key) != type(data).model_fields[key].default:
                out.append(Problem(f"data.{key}", f"only used with format synthetic, not {data.format}",
                                   "remove it"))
    out += _split_problems(data)
    if train.schedule == "step" and not train.milestones:
        out.append(Problem("train.milestones", "schedule step needs milestones", "e.g. milestones: [20, 40]"))
    if train.milestones:
        if train.schedule != "step":
            out.append(Problem("train.milestones", "milestones are only used by schedule: step",
                               "remove them or set train.schedule: step"))
        if sorted(set(train.milestones)) != train.milestones or train.milestones[-1] >= train.epochs \
                or train.milestones[0] < 1:
            out.append(Problem("train.milestones",
                               f"{train.milestones} must increase and lie in 1..{train.epochs - 1}",
                               "list increasing epochs below train.epochs"))
    if train.warmup_epochs >= train.epochs:
        out.append(Problem("train.warmup_epochs", f"{train.warmup_epochs} >= epochs ({train.epochs})",
                           "use fewer warm-up epochs than train.epochs"))
    if train.amp and train.device == "cpu":
        out.append(Problem("train.amp", "mixed precision needs CUDA but device is cpu", "set amp: false"))
    sp = model.sparsity
    if sp is not None:
        if sp.level is None and sp.ensemble_levels is None:
            out.append(Problem("model.sparsity.level", "sparsity needs a level (or ensemble_levels)",
                               "e.g. level: 0.9"))
        if sp.level is not None and sp.ensemble_levels is not None:
            out.append(Problem("model.sparsity.ensemble_levels",
                               "set either level or ensemble_levels, not both",
                               "set level: null next to ensemble_levels"))
        if sp.schedule.warmup_epochs + sp.schedule.ramp_epochs > train.epochs:
            out.append(Problem("model.sparsity.schedule", "warm-up + ramp epochs exceed train.epochs",
                               "shorten the schedule or train longer"))
    return out


def _split_problems(data: Any) -> list[Problem]:
    """``data.split.fold`` needs k-fold validation and must name one of its folds."""
    split = data.split
    if split.fold is None:
        return []
    if not isinstance(split.val, FoldSpec):
        return [Problem("data.split.fold", f"fold {split.fold} is set, but data.split.val is not k-fold",
                        "remove data.split.fold, or set data.split.val: {folds: K, by: TAG}")]
    if split.fold >= split.val.folds:
        return [Problem("data.split.fold", f"fold {split.fold}, but data.split.val has {split.val.folds} folds",
                        f"use a fold from 0 to {split.val.folds - 1}, or leave it out: the sweep runs every fold")]
    return []


def check_replicates(spec: SweepSpec, check_paths: bool) -> list[Problem]:
    """``seeds`` and k-fold validation (``data.split.val: {folds: K, by: TAG}``): each runs every
    config as several trials, which the searcher and scheduler must allow; the folds' tag and
    count are checked against the data when it can be read here."""
    out: list[Problem] = []
    folds = spec.data.split.val if isinstance(spec.data.split.val, FoldSpec) else None
    if spec.seeds and "train.seed" in spec.search:
        out.append(Problem("seeds", f"seeds: {spec.seeds} runs every config with train.seed + 0..{spec.seeds - 1}, "
                           "but search.train.seed searches train.seed too",
                           "keep one: remove search.train.seed, or remove seeds"))
    which = [w for w, on in (("seeds", bool(spec.seeds)), ("data.split.val", folds is not None)) if on]
    for where in which:
        what = "seed" if where == "seeds" else "fold"
        if spec.searcher_type == "optuna":
            out.append(Problem(where, f"optuna suggests each config once and cannot run it once per {what}",
                               f"use searcher random (every sampled config then runs each {what}) or grid"))
        if spec.scheduler.type == "pbt":
            out.append(Problem(where, f"pbt copies a better trial's whole config into a worse one, its {what} "
                               "included, so the replicates of a config would not stay apart",
                               "use scheduler fifo or asha"))
    if "data.split.val" in spec.search and any(
            isinstance(v, Mapping) for v in spec.search["data.split.val"].sample_points()):
        out.append(Problem("search.data.split.val", "k-fold validation cannot be searched: each fold is a trial "
                           "of the same config", "set data.split.val: {folds: K, by: TAG} outside search"))
    path = spec.data.path
    readable = spec.data.format == "synthetic" or bool(
        path and "://" not in path and "${" not in path and os.path.exists(os.path.expanduser(path)))
    if folds is not None and check_paths and readable:
        from skelray.train.data import describe_validation

        try:
            describe_validation(spec.data)
        except DataError as exc:
            out.append(Problem(exc.where or "data.split.val", exc.message, exc.fix))
    return out


def _layout_of(data: Any, check_paths: bool) -> tuple[str | None, Problem | None]:
    """The name of the layout a trial will use (a layout file is read, and so checked, here;
    a store's own layout when data.layout is not set), or the problem with data.layout."""
    layout = data.resolved_layout()
    if layout is None:
        if data.format == "store" and check_paths and data.path and os.path.isdir(os.path.expanduser(data.path)):
            from skelray.data.store import open_store

            try:
                return open_store(os.path.expanduser(data.path)).layout, None
            except DataError:  # not a store: the trial says so, naming data.path
                pass
        return None, None
    if layout.endswith(LAYOUT_FILE_SUFFIXES):
        try:
            return get_layout(layout).name, None
        except LayoutError as exc:
            fix = exc.fix or "see the README's Data section for the layout file's format"
            return None, Problem("data.layout", f"{exc.where}: {exc.message}" if exc.where else exc.message, fix)
    if layout not in list_layouts():
        return None, Problem("data.layout", f"unknown layout '{layout}'",
                             f"{unknown_key_fix(layout, list_layouts())}, or give a layout YAML/JSON file "
                             "(name, joints, edges, center)")
    return layout, None


def _mirror_problems(layout: str) -> list[Problem]:
    """The mirror augmentation needs a layout with paired left/right joints."""
    try:
        get_layout(layout).mirror()
    except LayoutError as exc:
        return [Problem("data.mirror", f"layout '{layout}' cannot be mirrored: {exc.message}",
                        "set mirror: false, or use a layout with left_/right_ joint pairs")]
    return []


def _build_problems(name: str, kwargs: dict[str, Any], layout: str | None) -> list[Problem]:
    """Build the model once on the CPU, so that a bad option value (``pa_count: 0``, ``mirror_tta``
    on a layout without left/right joints) stops the sweep before it starts."""
    from skelray.models import create_model

    try:
        create_model(name, num_classes=2, **({"layout": layout} if layout else {}), **kwargs)
    except LayoutError as exc:  # the layout is known, so an option asks more of it than it has
        where = "model.kwargs.mirror_tta" if kwargs.get("mirror_tta") else "data.layout"
        return [Problem(where, f"layout '{layout}': {exc.message}", exc.fix or "choose another layout")]
    except (TypeError, ValueError) as exc:  # a value the model's own checks did not expect
        return [Problem("model.kwargs", f"'{name}' cannot be built with these options: {exc}",
                        f"compare them with `skelray models info {name}`")]
    except ConfigError as exc:
        # The registry names a field "<model>.<option>" or "model.<option>".
        where = exc.where or ""
        for prefix in (f"{name}.", "model."):
            if where.startswith(prefix):
                where = f"model.kwargs.{where[len(prefix):]}"
                break
        else:
            where = "model.kwargs"
        return [Problem(where, exc.message, exc.fix)]
    return []


# -- search leaves -----------------------------------------------------------------------------

def check_path(path: str, spec: SweepSpec, where: str) -> Problem | None:
    """None if ``path`` names a config key (or a kwarg the model accepts), else the problem."""
    parts = path.split(".")
    if parts[0] not in SECTIONS:
        return Problem(where,
                       f"'{parts[0]}' cannot be searched: search paths start with data., model. or train.",
                       unknown_key_fix(parts[0], SECTIONS))
    current: Any = TrialConfig
    for i, part in enumerate(parts):
        so_far = ".".join(parts[:i])
        if current == "kwargs":
            names = model_kwarg_names(spec.model.name, spec.model.kwargs)
            if names is not None and part not in names:
                return Problem(where, f"'{spec.model.name}' has no argument '{part}'",
                               unknown_key_fix(part, names))
            guess = did_you_mean(part, spec.model.kwargs)
            if names is None and part not in spec.model.kwargs and guess:
                return Problem(where, f"'{part}' is not in model.kwargs", f"did you mean '{guess}'?")
            return None
        if current is None:
            return Problem(where, f"'{so_far}' is a single value and has no '{part}'",
                           f"search '{so_far}' itself")
        fields = current.model_fields
        if part not in fields:
            return Problem(where, f"unknown key '{part}' in {so_far or 'the config'}",
                           unknown_key_fix(part, fields))
        current = _descend(fields[part].annotation)
    return None


def _descend(annotation: Any) -> Any:
    """The pydantic model under a field, ``"kwargs"`` for an open dict, None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is dict:
        return "kwargs"
    for arg in get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def check_search(spec: SweepSpec, base: TrialConfig, base_problems: list[Problem],
                 check_paths: bool) -> list[Problem]:
    """Each search leaf: its path, and every value it can give a trial checked as the base
    config ``base`` with that value set (problems the base has already, ``base_problems``,
    are not repeated); computed leaves also against what they read."""
    out: list[Problem] = []
    tree = base.model_dump(mode="json")
    skip = {(p.where, p.message) for p in base_problems}
    for path, leaf in spec.search.items():
        where = f"search.{path}"
        problem = check_path(path, spec, where)
        if problem:
            out.append(problem)
            continue
        outer = next((p for p in spec.search if path.startswith(f"{p}.")), None)
        if outer is not None:
            out.append(Problem(where, f"lies inside search.{outer}, which is searched as a whole",
                               f"set it inside the options of {outer}, or search {outer}'s keys separately"))
            continue
        if leaf.is_dependent:
            out += _check_dependent(path, leaf, spec, tree)
            continue
        for value in leaf.sample_points():
            out += _check_value(spec, tree, path, value, where, skip, check_paths)
    out += _check_cycles(spec)
    out += check_replicates(spec, check_paths)
    return out


def _check_value(spec: SweepSpec, tree: dict[str, Any], path: str, value: Any, where: str, skip: set,
                 check_paths: bool) -> list[Problem]:
    """Does the base config ``tree`` still validate, and pass ``check_trial``, with ``path``
    set to ``value``?"""
    shown = f"{value!r}"
    try:
        cfg = TrialConfig.model_validate(with_values(tree, {path: value}))
    except ValidationError as exc:
        return [Problem(where, f"value {shown}: {p.where}: {p.message}", p.fix or "change the value")
                for p in pydantic_problems(exc, TrialConfig)]
    return [Problem(where, f"value {shown}: {p.where}: {p.message}", p.fix)
            for p in check_trial(cfg, spec, check_paths=check_paths) if (p.where, p.message) not in skip]


def _check_dependent(path: str, leaf: Leaf, spec: SweepSpec, tree: dict[str, Any]) -> list[Problem]:
    """A computed leaf: the paths it reads exist, it agrees with the leaves it reads
    (``Leaf.check_against``), and the values it gives are valid. Those are computed once, with
    each searched input at its first value and the rest as in the base."""
    where = f"search.{path}"
    out: list[Problem] = []
    for ref in leaf.references():
        problem = check_path(ref, spec, where)
        if problem:
            out.append(Problem(where, f"refers to '{ref}': {problem.message}", problem.fix))
    if out:
        return out
    out += leaf.check_against(spec.search, where)
    firsts = {ref: points[0] for ref in leaf.references()
              if ref in spec.search and (points := spec.search[ref].sample_points())}
    config = with_values(tree, firsts)
    try:
        values = leaf.values_given(partial(get_path, config))
    except Exception as exc:  # noqa: BLE001  (any failure of the user's formula is reported as such)
        return out + [Problem(f"{where}.{leaf.kind}", f"evaluating it fails: {type(exc).__name__}: {exc}",
                              "fix the expression")]
    for value in values:
        out += _check_value(spec, tree, path, value, where, set(), False)
    return out


def _check_cycles(spec: SweepSpec) -> list[Problem]:
    graph = {p: [r for r in leaf.references() if r in spec.search and spec.search[r].is_dependent]
             for p, leaf in spec.search.items() if leaf.is_dependent}
    state: dict[str, int] = {}

    def visit(node: str) -> str | None:
        state[node] = 1
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1 or (state.get(nxt) is None and visit(nxt)):
                return nxt
        state[node] = 2
        return None

    for node in graph:
        if state.get(node) is None and visit(node):
            return [Problem(f"search.{node}", "dependent values form a cycle",
                            "make one of them a plain value")]
    return []
