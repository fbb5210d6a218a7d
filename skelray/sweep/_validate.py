"""Checks across sections, run after the sweep has its types: the entry point ``check_spec``,
searcher/scheduler/metric agreement, resources and storage; ``check_resources`` for the
live cluster. Per-trial and per-search-leaf checks are in ``_trial_checks``; what a searcher
can do with a leaf, the leaf says (``Leaf.is_random``, ``Leaf.optuna_problem``).

``load_sweep`` calls ``check_spec`` with the typed spec; the checks read its fields and call
nothing back in ``spec.py``.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from skelray import record
from skelray.config import TrialConfig
from skelray.config._problems import Problem, did_you_mean, unknown_key_fix
from skelray.errors import ConfigError
from skelray.sweep._trial_checks import check_path, check_search, check_trial

if TYPE_CHECKING:
    from skelray.sweep.spec import SweepSpec

# Parameters each scheduler reads; any other one set in the file is a mistake.
SCHEDULER_PARAMS = {
    "fifo": set(),
    "asha": {"grace_period", "max_t", "reduction_factor", "brackets"},
    "hyperband": {"max_t", "reduction_factor"},
    "pbt": {"perturbation_interval", "burn_in_period", "quantile_fraction", "resample_probability",
            "hyperparam_mutations"},
    "median": {"grace_period", "min_samples_required"},
}
STORAGE_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss", "az", "mock")


# -- entry points ----------------------------------------------------------------------------

def check_spec(spec: SweepSpec, *, check_paths: bool = True) -> list[Problem]:
    """Every problem of a typed sweep that its field types alone do not catch."""
    base = TrialConfig(data=spec.data, model=spec.model, train=spec.train)
    base_problems = check_trial(base, spec, check_paths=check_paths)
    out = base_problems + check_search(spec, base, base_problems, check_paths)
    out += _check_searcher(spec)
    out += _check_scheduler(spec)
    out += _check_metric(spec)
    out += _check_test_every(spec)
    out += _check_resources_shape(spec)
    out += _check_storage(spec)
    out += _check_costs(spec)
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
        if kind == "optuna" and (problem := leaf.optuna_problem(where)) is not None:
            out.append(problem)
    return out


def _check_scheduler(spec: SweepSpec) -> list[Problem]:
    out: list[Problem] = []
    sch, epochs = spec.scheduler, spec.train.epochs
    epochs_searched = "train.epochs" in spec.search
    for key in sorted(sch.model_fields_set - {"type"}):
        if key not in SCHEDULER_PARAMS[sch.type] and getattr(sch, key) is not None:
            users = [t for t, ps in SCHEDULER_PARAMS.items() if key in ps]
            other = f" or set scheduler.type to {' / '.join(users)}" if users else ""
            out.append(Problem(f"scheduler.{key}", f"not used by scheduler {sch.type}", f"remove it{other}"))
    if sch.type in ("asha", "hyperband"):
        max_t = sch.max_t or epochs
        if sch.type == "asha" and (sch.grace_period or 1) >= max_t:
            out.append(Problem("scheduler.grace_period",
                               f"grace_period {sch.grace_period or 1} >= max_t {max_t}: none can stop early",
                               "lower grace_period or raise max_t/train.epochs"))
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
            problem = check_path(path, spec, where)
            if problem:
                out.append(problem)
            elif leaf.is_dependent:
                out.append(Problem(where, "pbt cannot mutate a dependent value", "give a choice or a range"))
        if (sch.perturbation_interval or 1) >= epochs and not epochs_searched:
            out.append(Problem("scheduler.perturbation_interval", f"must be below train.epochs ({epochs}) "
                               "or pbt never perturbs", "lower it or train longer"))
        if spec.searcher.type == "optuna":
            out.append(Problem("searcher.type",
                               "pbt changes trial configs itself, which optuna cannot follow",
                               "use searcher random or grid with pbt"))
    return out


def stop_epochs(spec: SweepSpec) -> list[int] | None:
    """The epochs before the last after which the scheduler may stop a trial ([] for fifo and
    pbt, which run every trial to the end); None when it may stop after any epoch."""
    sch, epochs = spec.scheduler, spec.train.epochs
    if sch.type in ("fifo", "pbt"):
        return []
    if sch.type != "asha":
        return None
    # ASHA judges a trial at the first epoch >= each rung, grace * rf^k, and stops it at max_t.
    max_t = sch.max_t or epochs
    grace, rf = sch.grace_period or 1, sch.reduction_factor or 3
    out, k = [], 0
    while (rung := math.ceil(grace * rf ** k - 1e-9)) < min(max_t, epochs):
        out.append(rung)
        k += 1
    return out + ([max_t] if max_t < epochs else [])


def _check_test_every(spec: SweepSpec) -> list[Problem]:
    every = spec.train.test_every
    if every == 1 or "train.test_every" in spec.search:
        return []
    if spec.scope == "all":
        return [Problem("train.test_every", f"test_every {every} with scope all: a trial is judged by its best "
                        "epoch, which may be one without a test pass",
                        "set scope: last (or last-N-avg) to judge trials by their last epoch, or test_every: 1")]
    if "train.epochs" in spec.search:
        return []  # the stop epochs differ per trial; the last epoch is always tested
    stops = stop_epochs(spec)
    if stops is None:
        return [Problem("train.test_every", f"scheduler {spec.scheduler.type} may stop a trial after any epoch, "
                        "which then has no test result", "set test_every: 1, or use scheduler fifo, asha or pbt")]
    missed = [e for e in stops if e % every]
    if missed:
        return [Problem("train.test_every", f"ASHA may stop trials after epochs {stops}; a trial stopped after "
                        f"{', '.join(map(str, missed))} would have no test result (not a multiple of {every})",
                        f"set test_every to a divisor of {math.gcd(*stops)}, or change grace_period/reduction_factor")]
    return []


# What Tune adds to every report, beside the trial's own metrics.
TUNE_METRICS = ("training_iteration", "time_this_iter_s", "time_total_s")


def reported_metrics(spec: SweepSpec) -> list[str]:
    """Every key a trial of ``spec`` reports each epoch (``skelray.train.trial.run_trial``), so a
    metric name can be checked before anything runs."""
    return [*record.reported_metrics(spec.train.latency_batches), *TUNE_METRICS]


def _check_metric(spec: SweepSpec) -> list[Problem]:
    known = reported_metrics(spec)
    if spec.metric.strip() and spec.metric not in known:
        close = did_you_mean(spec.metric, known)
        own = ", ".join(k for k in known if k not in TUNE_METRICS)
        return [Problem("metric", f"no trial reports '{spec.metric}'",
                        f"did you mean '{close}'?" if close else f"use one of {own}")]
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
    on_cpu = gpu == 0 or spec.train.device == "cpu"
    if spec.train.precision == "fp16" and on_cpu:
        return [Problem("train.precision", "fp16 mixed precision needs a CUDA GPU, and these trials train on the "
                        "CPU" + (" (device: cpu)" if spec.train.device == "cpu" else " (resources.gpu is 0)"),
                        "use precision: auto (fp32 on the CPU) or bf16, or give the trials a GPU")]
    return []


def _check_storage(spec: SweepSpec) -> list[Problem]:
    if spec.storage is None or "://" not in spec.storage:
        return []
    scheme = spec.storage.split("://", 1)[0].lower()
    if scheme not in STORAGE_SCHEMES:
        return [Problem("storage", f"'{scheme}://' is not a pyarrow filesystem",
                        unknown_key_fix(scheme, STORAGE_SCHEMES))]
    return []


def _check_costs(spec: SweepSpec) -> list[Problem]:
    """``constraints``: each entry parses, on a key that is measured; the searcher draws its
    configs before the run. A latency ``metric``: only grid trials know it while they train."""
    out: list[Problem] = []
    for i, text in enumerate(spec.constraints):
        parsed = parse_constraint(text, spec.train.latency_batches)
        if not isinstance(parsed, Constraint):
            out.append(Problem(f"constraints[{i}]", *parsed))
    if spec.constraints and spec.searcher_type == "optuna":
        out.append(Problem("constraints", "optuna proposes configs while the sweep runs, so they cannot be "
                           "measured and dropped before training",
                           "use searcher grid or random (their configs are drawn before the run), "
                           "or remove constraints"))
    if spec.metric.startswith("latency_ms_b"):
        base = TrialConfig(data=spec.data, model=spec.model, train=spec.train)
        if spec.searcher_type != "grid" or not known_before_training(base) or any(
                p.startswith("model.sparsity") for p in spec.search):
            out.append(Problem("metric", f"{spec.metric} is measured once per architecture apart from training, "
                               "and is known while trials train only for a grid over architectures "
                               "that training does not compact",
                               "rank by accuracy (e.g. metric: val/top1) and bound the latency with "
                               f"constraints: [\"{spec.metric} <= 20\"]"))
    return out


# -- constraints ------------------------------------------------------------------------------------
_OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, "<": operator.lt, ">=": operator.ge,
                                                   ">": operator.gt}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*([-+0-9.eE_]+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """One ``constraints:`` entry: ``key op limit``."""

    text: str
    key: str
    op: str
    limit: float

    def holds(self, value: float | None) -> bool | None:
        """Whether ``value`` satisfies it; None when the value is unknown."""
        return None if value is None else _OPS[self.op](float(value), self.limit)


def constraint_keys(latency_batches: list[int] | tuple[int, ...]) -> list[str]:
    return [record.PARAMS, record.NONZERO_PARAMS, record.MACS, *(record.latency_key(b) for b in latency_batches)]


def parse_constraint(text: Any, latency_batches: list[int] | tuple[int, ...]) -> Constraint | tuple[str, str]:
    """The constraint ``text`` states, or ``(problem, fix)``."""
    keys = constraint_keys(latency_batches)
    example = f"e.g. \"{record.latency_key(latency_batches[0] if latency_batches else 1)} <= 20\" or \"params <= 1e6\""
    if not isinstance(text, str):
        return f"must be a string such as \"params <= 1e6\", not {type(text).__name__}", example
    m = _CONSTRAINT.match(text)
    if not m:
        return f"'{text}' is not 'KEY OP NUMBER'", f"write {example} (operators <=, <, >=, >)"
    key, op, number = m.groups()
    try:
        limit = float(number)
    except ValueError:
        return f"'{number}' is not a number", f"write {example}"
    if not math.isfinite(limit):
        return f"the limit {number} is not finite", f"write {example}"
    if key not in keys:
        batch = re.fullmatch(r"latency_ms_b([0-9]+)", key)
        if batch:
            problem = (f"batch size {batch.group(1)} is not measured (train.latency_batches is "
                       f"{list(latency_batches)})")
            return problem, f"add {batch.group(1)} to train.latency_batches, or bound one of {', '.join(keys)}"
        return f"'{key}' cannot be constrained", unknown_key_fix(key, keys)
    return Constraint(text.strip(), key, op, limit)


def known_before_training(cfg: TrialConfig) -> bool:
    """Whether training leaves the inference form's structure as the config builds it: dense,
    element or kernel sparsity. Channel and CTF sparsity compact it into a smaller one."""
    sp = cfg.model.sparsity
    granularity = sp.granularity if sp is not None else cfg.model.kwargs.get("granularity", "element")
    return (sp is None and cfg.model.name != "sparse_ensemble") or granularity in ("element", "kernel")
