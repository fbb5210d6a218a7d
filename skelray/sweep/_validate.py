"""Checks across fields and against the live registries, run after the sweep has its types.

Pydantic checks each key's type; this module checks what needs more than one key or outside
knowledge: search paths exist, searched values fit the config, the model and layout are
registered, the data is there, and the searcher/scheduler/metric settings agree.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from skelray.data import list_layouts
from skelray.errors import ConfigError
from skelray.sweep._problems import Problem, did_you_mean, pydantic_problems, unknown_key_fix
from skelray.sweep.leaves import Leaf, get_path

if TYPE_CHECKING:
    from skelray.sweep.spec import SweepSpec, TrialConfig

SECTIONS = ("data", "model", "train")
# Parameters each scheduler reads; any other one set in the file is a mistake.
SCHEDULER_PARAMS = {
    "fifo": set(),
    "asha": {"grace_period", "max_t", "reduction_factor", "brackets"},
    "hyperband": {"max_t", "reduction_factor"},
    "pbt": {"perturbation_interval", "burn_in_period", "quantile_fraction", "resample_probability",
            "hyperparam_mutations"},
    "median": {"grace_period", "min_samples_required"},
}
# Model arguments the trial fills in from the data, so a sweep must not set them.
FROM_DATA = {"num_classes": "it is the dataset's class count", "layout": "set data.layout instead",
             "in_channels": "it follows from data.stream", "num_persons": "set data.persons instead"}
STORAGE_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss", "az", "mock")
_OPTUNA_KINDS = {"choice", "uniform", "quniform", "loguniform", "qloguniform", "randint", "depends", "expr"}


# -- the model registry, read lazily: skelray.models may not exist yet in a partial checkout --

def registered_models() -> list[str] | None:
    """Names from ``skelray.models.list_models()``, or None when the registry is not available."""
    try:
        import skelray.models as models
    except ImportError:
        return None
    fn = getattr(models, "list_models", None)
    return list(fn()) if callable(fn) else None


def model_kwarg_names(name: str) -> set[str] | None:
    """Keyword arguments ``name`` accepts, or None when unknown or open-ended (``**kwargs``)."""
    try:
        import skelray.models as models
    except ImportError:
        return None
    # model_kwargs() was the planned name; the registry shipped model_options() (name -> default).
    fn = getattr(models, "model_kwargs", None) or getattr(models, "model_options", None)
    if not callable(fn):
        return None
    try:
        found = fn(name)
    except Exception:  # an unknown model is reported by the model-name check
        return None
    if isinstance(found, inspect.Signature):
        if any(p.kind is p.VAR_KEYWORD for p in found.parameters.values()):
            return None
        names = {n for n, p in found.parameters.items() if p.kind is not p.VAR_POSITIONAL}
    elif isinstance(found, Iterable) and not isinstance(found, str):  # a mapping or a list of names
        names = {str(k) for k in found}
    else:
        return None
    return names - set(FROM_DATA)  # the trial passes these itself; a sweep must not


# -- entry points ----------------------------------------------------------------------------

def check_spec(spec: SweepSpec, *, check_paths: bool = True) -> list[Problem]:
    from skelray.sweep.spec import TrialConfig

    out: list[Problem] = []
    base = spec.trial_config()
    out += check_trial(base, spec, check_paths=check_paths)
    out += _check_search(spec, TrialConfig, check_paths)
    out += _check_searcher(spec)
    out += _check_scheduler(spec, TrialConfig)
    out += _check_metric(spec)
    out += _check_resources_shape(spec)
    out += _check_storage(spec)
    return out


def check_resources(spec: SweepSpec, nodes: list[dict[str, Any]]) -> None:
    """Raise if no live node can hold one trial (``nodes`` as returned by ``ray.nodes()``)."""
    alive = [n for n in nodes if n.get("Alive", n.get("alive", True))]
    if not alive:
        raise ConfigError("the cluster has no live nodes", where="resources",
                          fix="start Ray (ray start --head) or check the address")
    gpus = max(float(n.get("Resources", {}).get("GPU", 0)) for n in alive)
    cpus = max(float(n.get("Resources", {}).get("CPU", 0)) for n in alive)
    if spec.resources.gpu > gpus:
        raise ConfigError(
            f"each trial asks for {spec.resources.gpu:g} GPU but the largest node has {gpus:g}",
            where="resources.gpu",
            fix=f"set resources.gpu <= {gpus:g} (0 to train on CPU), or add a node with more GPUs")
    if spec.resources.cpu > cpus:
        raise ConfigError(
            f"each trial asks for {spec.resources.cpu:g} CPU but the largest node has {cpus:g}",
            where="resources.cpu", fix=f"set resources.cpu <= {cpus:g} (fractions such as 0.5 share cores)")


def check_trial(cfg: TrialConfig, spec: SweepSpec, *, check_paths: bool = True) -> list[Problem]:
    """Checks of one trial's data/model/train that need registries, the disk or several keys."""
    out: list[Problem] = []
    data, model, train = cfg.data, cfg.model, cfg.train
    models = registered_models()
    if models is not None and model.name not in models:
        out.append(Problem("model.name", f"unknown model '{model.name}'", unknown_key_fix(model.name,
                                                                                          models)))
    names = model_kwarg_names(model.name)
    for key in model.kwargs:
        if key in FROM_DATA:
            out.append(Problem(f"model.kwargs.{key}", f"'{key}' is set by the trial from the data",
                               f"remove it; {FROM_DATA[key]}"))
        elif names is not None and key not in names:
            out.append(Problem(f"model.kwargs.{key}", f"'{model.name}' has no argument '{key}'",
                               unknown_key_fix(key, names)))

    layout = data.resolved_layout()
    if layout is not None and layout not in list_layouts():
        out.append(Problem("data.layout", f"unknown layout '{layout}'", unknown_key_fix(layout,
                                                                                        list_layouts())))
    if data.format == "synthetic":
        if data.path is not None:
            out.append(Problem("data.path", "format synthetic makes its data and reads no path",
                               "remove data.path, or set data.format to the format of that data"))
    else:
        if not data.path:
            out.append(Problem("data.path", f"format {data.format} needs a data path",
                               "set data.path, or pass it on the command line (--data PATH)"))
        elif check_paths and "://" not in data.path and "${" not in data.path and not os.path.exists(os.path.expanduser(data.path)):
            out.append(Problem("data.path", f"'{data.path}' does not exist",
                               "check the path (relative paths start from the current folder)"))
        for key in ("num_classes", "num_per_class", "seed"):
            # Compared with the default, not "was it written": a dumped spec writes every key.
            if getattr(data, key) != type(data).model_fields[key].default:
                out.append(Problem(f"data.{key}", f"only used with format synthetic, not {data.format}",
                                   "remove it"))
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


# -- search ----------------------------------------------------------------------------------

def _check_path(path: str, spec: SweepSpec, root: type, where: str) -> Problem | None:
    """None if ``path`` names a config key (or a kwarg the model accepts), else the problem."""
    parts = path.split(".")
    if parts[0] not in SECTIONS:
        return Problem(where,
                       f"'{parts[0]}' cannot be searched: search paths start with data., model. or train.",
                       unknown_key_fix(parts[0], SECTIONS))
    current: Any = root
    for i, part in enumerate(parts):
        so_far = ".".join(parts[:i])
        if current == "kwargs":
            names = model_kwarg_names(spec.model.name)
            if names is not None and part not in names:
                return Problem(where, f"'{spec.model.name}' has no argument '{part}'", unknown_key_fix(part,
                                                                                                       names))
            guess = did_you_mean(part, spec.model.kwargs)
            if names is None and part not in spec.model.kwargs and guess:
                return Problem(where, f"'{part}' is not in model.kwargs", f"did you mean '{guess}'?")
            return None
        if current is None:
            return Problem(where, f"'{so_far}' is a single value and has no '{part}'",
                           f"search '{so_far}' itself")
        fields = current.model_fields
        if part not in fields:
            return Problem(where, f"unknown key '{part}' in {so_far or 'the config'}", unknown_key_fix(part,
                                                                                                       fields))
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


def _check_search(spec: SweepSpec, root: type, check_paths: bool) -> list[Problem]:
    out: list[Problem] = []
    base_problems = {(p.where, p.message) for p in check_trial(spec.trial_config(), spec,
                                                               check_paths=check_paths)}
    for path, leaf in spec.search.items():
        where = f"search.{path}"
        problem = _check_path(path, spec, root, where)
        if problem:
            out.append(problem)
            continue
        if leaf.is_dependent:
            out += _check_dependent(path, leaf, spec, root)
            continue
        for value in leaf.sample_points():
            out += _check_value(spec, path, value, where, base_problems, check_paths)
    out += _check_cycles(spec)
    return out


def _check_value(spec: SweepSpec, path: str, value: Any, where: str, skip: set,
                 check_paths: bool) -> list[Problem]:
    """Does the config still validate, and pass ``check_trial``, with ``path`` set to ``value``?"""
    from skelray.sweep.spec import TrialConfig

    shown = f"{value!r}"
    try:
        cfg = TrialConfig.model_validate(spec.merged_config({path: value}))
    except ValidationError as exc:
        return [Problem(where, f"value {shown}: {p.where}: {p.message}", p.fix or "change the value")
                for p in pydantic_problems(exc, TrialConfig)]
    return [Problem(where, f"value {shown}: {p.where}: {p.message}", p.fix)
            for p in check_trial(cfg, spec, check_paths=check_paths) if (p.where, p.message) not in skip]


def _check_dependent(path: str, leaf: Leaf, spec: SweepSpec, root: type) -> list[Problem]:
    out: list[Problem] = []
    where = f"search.{path}"
    for ref in leaf.references():
        problem = _check_path(ref, spec, root, where)
        if problem:
            out.append(Problem(where, f"refers to '{ref}': {problem.message}", problem.fix))
    if out:
        return out
    if leaf.kind == "depends":
        source = spec.search.get(leaf.depends or "")
        no_default = leaf.default == "__skelray_no_default__"
        if source is not None and source.kind in ("grid", "choice", "randint"):
            values = list(source.values) if source.kind != "randint" else list(range(*map(int, source.args)))
            keys = [k for k, _ in leaf.mapping]
            missing = [v for v in values if not any(k == v or str(k) == str(v) for k in keys)]
            if missing and no_default:
                out.append(Problem(f"{where}.map",
                                   f"no value for {leaf.depends} = {', '.join(map(repr, missing))}",
                                   "add those keys to map, or give a default"))
        elif source is not None and source.is_random and no_default:
            out.append(Problem(f"{where}.map",
                               f"{leaf.depends} is sampled from {source.kind}, so map keys rarely match",
                               "add a default, or use expr for a formula"))
        for _, value in leaf.mapping:
            out += _check_value(spec, path, value, where, set(), False)
        return out
    # expr: evaluate once, with each searched input at its first value and the rest as in the base.
    firsts = {ref: spec.search[ref].sample_points()[0] for ref in leaf.references()
              if ref in spec.search and spec.search[ref].sample_points()}
    config = spec.merged_config(firsts)
    try:
        value = leaf.evaluate(lambda p: get_path(config, p))
    except Exception as exc:  # any failure of the user's formula is reported as such
        return [Problem(f"{where}.expr", f"evaluating it fails: {type(exc).__name__}: {exc}",
                        "fix the expression")]
    return _check_value(spec, path, value, where, set(), False)


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


# -- searcher, scheduler, metric, resources, storage ------------------------------------------

def _check_searcher(spec: SweepSpec) -> list[Problem]:
    out: list[Problem] = []
    kind = spec.searcher.type
    for path, leaf in spec.search.items():
        where = f"search.{path}"
        if kind == "grid" and leaf.is_random:
            out.append(Problem(where,
                               f"searcher grid enumerates values, but {leaf.kind} is a random distribution",
                               "list the values with {grid: [...]}, or set searcher: {type: random}"))
        if kind == "optuna" and leaf.kind == "grid":
            out.append(Problem(where, "optuna samples values itself and cannot run a grid",
                               "write {choice: [...]} instead, or use searcher grid/random"))
        elif kind == "optuna" and (leaf.kind not in _OPTUNA_KINDS or leaf.weights is not None):
            out.append(Problem(where,
                               f"optuna has no {leaf.kind}{' with weights' if leaf.weights else ''} distribution",
                               "use choice, uniform, loguniform, quniform or randint, or searcher random"))
    return out


def _check_scheduler(spec: SweepSpec, root: type) -> list[Problem]:
    out: list[Problem] = []
    sch, epochs = spec.scheduler, spec.train.epochs
    epochs_searched = "train.epochs" in spec.search
    for key in sorted(sch.model_fields_set - {"type"}):
        if key not in SCHEDULER_PARAMS[sch.type] and getattr(sch, key) is not None:
            users = [t for t, ps in SCHEDULER_PARAMS.items() if key in ps]
            out.append(Problem(f"scheduler.{key}", f"not used by scheduler {sch.type}",
                               f"remove it{' or set scheduler.type to ' + ' / '.join(users) if users else ''}"))
    if sch.type in ("asha", "hyperband"):
        max_t = sch.max_t or epochs
        if sch.type == "asha" and (sch.grace_period or 1) >= max_t:
            out.append(Problem("scheduler.grace_period",
                               f"grace_period {sch.grace_period or 1} >= max_t {max_t}: "
                               "nothing could be stopped early", "lower grace_period or raise max_t/train.epochs"))
        if sch.max_t and sch.max_t > epochs and not epochs_searched:
            out.append(Problem("scheduler.max_t",
                               f"max_t {sch.max_t} > train.epochs {epochs}: no trial runs that long",
                               f"set max_t: {epochs} or leave it out (it defaults to train.epochs)"))
    if sch.type == "median" and (sch.grace_period or 1) >= epochs and not epochs_searched:
        out.append(Problem("scheduler.grace_period", f"grace_period >= train.epochs ({epochs})",
                           "lower grace_period"))
    if sch.type == "pbt":
        if not sch.hyperparam_mutations:
            out.append(Problem("scheduler.hyperparam_mutations", "pbt needs hyperparam_mutations to explore",
                               "e.g. hyperparam_mutations: {train.lr: {loguniform: [0.001, 0.1]}}"))
        for path, leaf in (sch.hyperparam_mutations or {}).items():
            where = f"scheduler.hyperparam_mutations.{path}"
            problem = _check_path(path, spec, root, where)
            if problem:
                out.append(problem)
            elif leaf.is_dependent:
                out.append(Problem(where, "pbt cannot mutate a dependent value", "give a choice or a range"))
        if (sch.perturbation_interval or 1) >= epochs and not epochs_searched:
            out.append(Problem("scheduler.perturbation_interval", f"must be below train.epochs ({epochs}) "
                               "or pbt never perturbs", "lower it or train longer"))
        if spec.searcher_type == "optuna":
            out.append(Problem("searcher.type",
                               "pbt changes trial configs itself, which optuna cannot follow",
                               "use searcher random or grid with pbt"))
    return out


def _check_metric(spec: SweepSpec) -> list[Problem]:
    name = spec.metric.lower()
    lower_better = any(w in name for w in ("loss", "error", "err", "latency", "_ms", "/ms", "time"))
    higher_better = any(w in name for w in ("top1", "top5", "acc", "f1", "map", "auc"))
    if not spec.metric.strip():
        return [Problem("metric", "metric is empty", "e.g. metric: val/top1")]
    if lower_better and not higher_better and spec.mode == "max":
        return [Problem("mode", f"mode max would pick the highest {spec.metric}", "set mode: min")]
    if higher_better and not lower_better and spec.mode == "min":
        return [Problem("mode", f"mode min would pick the lowest {spec.metric}", "set mode: max")]
    return []


def _check_resources_shape(spec: SweepSpec) -> list[Problem]:
    gpu = spec.resources.gpu
    if gpu > 1 and not math.isclose(gpu, round(gpu)):
        return [Problem("resources.gpu", f"{gpu:g}: Ray shares a GPU only in fractions below 1",
                        f"use {math.floor(gpu):g} or {math.ceil(gpu):g}, or a fraction such as 0.5")]
    if spec.train.device == "cuda" and gpu == 0:
        return [Problem("train.device", "device cuda but resources.gpu is 0, so the trial gets no GPU",
                        "set resources.gpu (e.g. 1 or 0.5) or device: auto")]
    return []


def _check_storage(spec: SweepSpec) -> list[Problem]:
    if spec.storage is None or "://" not in spec.storage:
        return []
    scheme = spec.storage.split("://", 1)[0].lower()
    if scheme not in STORAGE_SCHEMES:
        return [Problem("storage", f"'{scheme}://' is not a pyarrow filesystem", unknown_key_fix(scheme,
                                                                                                 STORAGE_SCHEMES))]
    return []
