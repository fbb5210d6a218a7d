"""W&B sweep files, accepted as they are, converted to a native skelray sweep.

What maps to what:

- ``method``: grid -> searcher grid, random -> random, bayes -> optuna (TPE); custom is refused.
- ``metric: {name, goal, target}`` -> ``metric`` / ``mode`` (goal defaults to minimize, as in
  W&B) / ``target`` (the sweep ends once a trial reaches it). ``impute*`` are accepted and
  ignored: a trial that fails is kept as ERROR in the results rather than given a made-up value.
- ``early_terminate: {type: hyperband, min_iter | max_iter + s, eta}`` -> ASHA with
  ``grace_period = min_iter`` (or ``max_iter / eta**s``), ``max_t = max_iter`` (else
  train.epochs) and ``reduction_factor = eta`` (default 3). One iteration is one epoch.
- ``run_cap`` -> ``num_samples`` (random/bayes). A grid always runs whole; a run_cap below
  its size is an error rather than a silently cut grid.
- ``name``, ``description``, ``project``, ``entity`` -> the same settings; ``program``,
  ``command``, ``controller``, ``apiVersion``, ``kind``, ``job``, ``image_uri`` are ignored.
- ``parameters``: a dotted name (``model.kwargs.pa_count``) is a config path; a nested
  ``parameters`` block prefixes its names with its own (``model: {parameters: {name: ...}}``);
  a bare name is looked up in ``BARE_NAMES``. ``value`` sets the base config, ``values``
  becomes grid (method grid) or choice, and each ``distribution`` the leaf in ``_leaf``,
  written in the leaf's own YAML form. Under method grid, ``int_uniform`` runs every integer
  from min to max and ``q_uniform`` every multiple of q in [min, max] (the values the same
  parameter can take under random or bayes).
- skelray settings W&B has no words for (data, resources, storage, checkpoint, ...) go in a
  constant parameter, which keeps the file valid against W&B's schema::

      parameters:
        skelray:
          value: {data: {format: synthetic}, resources: {cpu: 1}}

  and/or come from command-line overrides (``--data PATH`` sets ``data.path``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from skelray.config import TrialConfig
from skelray.config._problems import Problems, unknown_key_fix
from skelray.sweep._tree import deep_merge, set_path
from skelray.sweep._wandb_schema import (
    EXTENSION,
    GOALS,
    METHODS,
    distribution_of,
    validate_wandb,
)
from skelray.sweep.leaves import (
    Beta,
    Choice,
    Grid,
    Leaf,
    LogNormal,
    LogUniform,
    Normal,
    QBeta,
    QLogNormal,
    QLogUniform,
    QNormal,
    QUniform,
    RandInt,
    Uniform,
    grid_trials,
    parse_search,
    quantized_grid,
)

# W&B parameter names people use -> skelray config paths.
BARE_NAMES = {
    "lr": "train.lr", "learning_rate": "train.lr", "epochs": "train.epochs", "batch_size": "train.batch_size",
    "optimizer": "train.optimizer", "momentum": "train.momentum", "nesterov": "train.nesterov",
    "weight_decay": "train.weight_decay", "label_smoothing": "train.label_smoothing",
    "warmup_epochs": "train.warmup_epochs", "schedule": "train.schedule", "seed": "train.seed",
    "amp": "train.amp", "precision": "train.precision", "device": "train.device", "compile": "train.compile",
    "grad_clip": "train.grad_clip", "ema_decay": "train.ema_decay",
    "model": "model.name", "pa_count": "model.kwargs.pa_count", "dropout": "model.kwargs.dropout",
    "tcn_kernel": "model.kwargs.tcn_kernel",
    "level": "model.sparsity.level", "sparsity": "model.sparsity.level",
    "granularity": "model.sparsity.granularity",
    "mirror": "data.mirror", "mirror_tta": "model.kwargs.mirror_tta",
    "stream": "data.stream", "frames": "data.frames", "layout": "data.layout", "persons": "data.persons",
}
SECTIONS = tuple(TrialConfig.model_fields)  # a dotted parameter name starts with one of these


def is_wandb_format(raw: Mapping[str, Any]) -> bool:
    """W&B files have ``method``/``parameters``; native ones never do."""
    return "method" in raw or "parameters" in raw


# -- conversion ------------------------------------------------------------------------------

def convert_wandb(raw: Mapping[str, Any], problems: Problems,
                  default_name: str = "wandb-sweep") -> dict[str, Any]:
    """A native sweep dict from a W&B one; problems name the W&B paths."""
    validate_wandb(raw, problems)
    if problems:
        return {}
    method = raw["method"]
    if method == "custom":
        problems.add("method", "custom W&B schedulers cannot run on Ray Tune", "use grid, random or bayes")
    for key in ("metrics", "scheduler"):
        if key in raw:
            problems.add(key, f"'{key}' needs W&B's custom method, which skelray does not run", "remove it")
    if method == "bayes" and "metric" not in raw:
        problems.add("metric", "bayes needs a metric to optimise",
                     "add metric: {name: val/top1, goal: maximize}")
    params = raw["parameters"]
    base: dict[str, Any] = {}
    if EXTENSION in params:
        ext = params[EXTENSION]
        if not isinstance(ext, Mapping) or set(ext) != {"value"} or not isinstance(ext["value"], Mapping):
            problems.add(f"parameters.{EXTENSION}", "must be a constant mapping",
                         f"write {EXTENSION}: {{value: {{...}}}}")
        else:
            base = dict(ext["value"])
    search: dict[str, Any] = dict(base.pop("search", None) or {})
    constants: dict[str, Any] = {}
    _convert_params({k: v for k, v in params.items() if k != EXTENSION}, "", "parameters", method, search,
                    constants, problems)
    derived: dict[str, Any] = {"name": _safe_name(raw.get("name") or base.get("name") or default_name)}
    if "description" in raw:
        derived["description"] = raw["description"]
    if method in METHODS:
        derived["searcher"] = {"type": METHODS[method]}
    if "metric" in raw:
        derived["metric"] = raw["metric"]["name"]
        derived["mode"] = GOALS[raw["metric"].get("goal", "minimize")]
        if "target" in raw["metric"]:
            derived["target"] = raw["metric"]["target"]
    if "early_terminate" in raw:
        derived["scheduler"] = _asha(raw["early_terminate"])
    if "run_cap" in raw:
        if method == "grid":
            size = grid_trials(parse_search(search, Problems()).values())  # load_sweep reports its problems
            if raw["run_cap"] < size:
                problems.add("run_cap",
                             f"{raw['run_cap']} is below the grid's {size} runs; Ray Tune runs a grid whole",
                             "remove run_cap, or list fewer values")
        else:
            derived["num_samples"] = raw["run_cap"]
    wandb = {k: raw[k] for k in ("project", "entity") if k in raw}
    if wandb:
        derived["wandb"] = wandb
    out = _merge_checked(base, derived, problems)
    for path, value in constants.items():
        set_path(out, path, value)
    if search:
        out["search"] = search
    return out


def _convert_params(params: Mapping[str, Any], prefix: str, where: str, method: str, search: dict[str, Any],
                    constants: dict[str, Any], problems: Problems) -> None:
    for name, p in params.items():
        at = f"{where}.{name}"
        if "parameters" in p:
            if not prefix and name not in SECTIONS:
                problems.add(at, f"'{name}' is not a section of a skelray config",
                             "name the block data, model or train")
                continue
            _convert_params(p["parameters"], f"{prefix}{name}.", f"{at}.parameters", method, search,
                            constants, problems)
            continue
        path = f"{prefix}{name}"
        if path.split(".")[0] not in SECTIONS and (prefix or "." in name):
            problems.add(at, f"'{path}' is not a skelray config path",
                         "start it with data., model. or train.")
            continue
        if not prefix and "." not in name:
            if name not in BARE_NAMES:
                problems.add(at, f"'{name}' is not a skelray config path",
                             unknown_key_fix(name, BARE_NAMES).replace("remove it or use one of",
                                                                       "write a full path (e.g. model.kwargs."
                                                                       f"{name}) or one of"))
                continue
            path = BARE_NAMES[name]
        dist = distribution_of(p)
        if dist == "constant":
            constants[path] = p["value"]
            continue
        leaf = _leaf(dist, p, method, at, problems)
        if leaf is not None:
            search[path] = leaf


def _leaf(dist: str, p: Mapping[str, Any], method: str, at: str, problems: Problems) -> dict[str, Any] | None:
    """The native leaf for one W&B distribution, in its YAML form (see leaves.py for the kinds).
    ``validate_wandb`` has checked that the keys each distribution needs are numbers."""
    lo, hi, q = p.get("min"), p.get("max"), p.get("q", 1)
    mu, sigma, a, b = p.get("mu", 0.0), p.get("sigma", 1.0), p.get("a", 1.0), p.get("b", 1.0)
    if dist in ("categorical", "categorical_w_probabilities"):
        values = tuple(p["values"])
        if method == "grid":
            return Grid(values).to_yaml()
        weights = p.get("probabilities")
        if weights is not None and len(weights) != len(values):
            problems.add(f"{at}.probabilities", "needs one probability per value", "match the lengths")
            return None
        return Choice(values, None if weights is None else tuple(weights)).to_yaml()
    if method == "grid":
        if dist == "int_uniform":
            return Grid(tuple(range(lo, hi + 1))).to_yaml()
        if dist == "q_uniform":
            return Grid(tuple(quantized_grid(lo, hi, q))).to_yaml()
        problems.add(f"{at}.distribution", f"grid cannot enumerate {dist}",
                     "list values, use int_uniform or q_uniform, or method random/bayes")
        return None
    if sigma <= 0 and dist in ("normal", "q_normal", "log_normal", "q_log_normal"):
        problems.add(f"{at}.sigma", "sigma 0 is a constant, not a distribution",
                     "use value: mu, or sigma > 0")
        return None
    if (a <= 0 or b <= 0) and dist in ("beta", "q_beta"):
        problems.add(f"{at}.a", "beta needs a > 0 and b > 0", "use positive shape parameters")
        return None
    leaves: dict[str, Callable[[], Leaf]] = {
        "int_uniform": lambda: RandInt(lo, hi + 1),  # W&B includes max, randint does not
        "uniform": lambda: Uniform(lo, hi),
        "q_uniform": lambda: QUniform(lo, hi, q),
        "log_uniform": lambda: LogUniform(math.exp(lo), math.exp(hi)),  # W&B bounds here are natural logs
        "log_uniform_values": lambda: LogUniform(lo, hi),
        "q_log_uniform": lambda: QLogUniform(math.exp(lo), math.exp(hi), q),
        "q_log_uniform_values": lambda: QLogUniform(lo, hi, q),
        # log(1/X) ~ U(min, max) means X is log-uniform on [e^-max, e^-min] ...
        "inv_log_uniform": lambda: LogUniform(math.exp(-hi), math.exp(-lo)),
        # ... and log(1/X) ~ U(log 1/max, log 1/min) is X log-uniform on [min, max].
        "inv_log_uniform_values": lambda: LogUniform(lo, hi),
        "normal": lambda: Normal(mu, sigma), "q_normal": lambda: QNormal(mu, sigma, q),
        "log_normal": lambda: LogNormal(mu, sigma), "q_log_normal": lambda: QLogNormal(mu, sigma, q),
        "beta": lambda: Beta(a, b), "q_beta": lambda: QBeta(a, b, q),
    }
    return leaves[dist]().to_yaml()


def _asha(et: Mapping[str, Any]) -> dict[str, Any]:
    eta = et.get("eta", 3)
    # W&B brackets are min_iter, min_iter*eta, ... or max_iter/eta**s, ..., max_iter/eta: the
    # lowest one is ASHA's grace period.
    grace = et["min_iter"] if "min_iter" in et else max(1, round(et["max_iter"] / eta ** et["s"]))
    out: dict[str, Any] = {"type": "asha", "grace_period": grace, "reduction_factor": eta}
    if "max_iter" in et:
        out["max_t"] = et["max_iter"]
    return out


def _merge_checked(base: dict[str, Any], derived: Mapping[str, Any], problems: Problems) -> dict[str, Any]:
    """Settings from W&B keys win; the extension block may not say something different."""
    for key, value in derived.items():
        if key in base and isinstance(base[key], Mapping) and isinstance(value, Mapping):
            for sub, v in value.items():
                if sub in base[key] and base[key][sub] != v:
                    problems.add(f"parameters.{EXTENSION}.value.{key}.{sub}",
                                 f"conflicts with the W&B key ({v!r})",
                                 "set it in one place only")
        elif key in base and base[key] != value and key != "name":
            problems.add(f"parameters.{EXTENSION}.value.{key}", f"conflicts with the W&B key ({value!r})",
                         "set it in one place only")
    return deep_merge(base, dict(derived))


def _safe_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "wandb-sweep"
    return safe if safe[0].isalnum() else f"s{safe}"
