"""W&B sweep files, accepted as they are, converted to a native skelray sweep.

What maps to what:

- ``method``: grid -> searcher grid, random -> random, bayes -> optuna (TPE); custom is refused.
- ``metric: {name, goal}`` -> ``metric`` / ``mode`` (goal defaults to minimize, as in W&B).
  ``target`` and ``impute*`` are accepted and ignored.
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
  becomes grid (method grid) or choice, and each ``distribution`` the leaf in ``_leaf``.
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
from collections.abc import Mapping
from typing import Any

from skelray.sweep._problems import Problems, unknown_key_fix
from skelray.sweep.leaves import deep_merge, set_path

# W&B parameter names people use -> skelray config paths.
BARE_NAMES = {
    "lr": "train.lr", "learning_rate": "train.lr", "epochs": "train.epochs", "batch_size": "train.batch_size",
    "optimizer": "train.optimizer", "momentum": "train.momentum", "nesterov": "train.nesterov",
    "weight_decay": "train.weight_decay", "label_smoothing": "train.label_smoothing",
    "warmup_epochs": "train.warmup_epochs", "schedule": "train.schedule", "seed": "train.seed",
    "amp": "train.amp", "grad_clip": "train.grad_clip",
    "model": "model.name", "pa_count": "model.kwargs.pa_count", "dropout": "model.kwargs.dropout",
    "tcn_kernel": "model.kwargs.tcn_kernel", "level": "model.sparsity.level", "sparsity": "model.sparsity.level",
    "granularity": "model.sparsity.granularity",
    "stream": "data.stream", "frames": "data.frames", "layout": "data.layout", "persons": "data.persons",
}
SECTIONS = ("data", "model", "train")
EXTENSION = "skelray"  # the constant parameter carrying skelray-only settings
_TOP = {"apiVersion", "kind", "controller", "description", "program", "job", "image_uri", "entity", "project",
        "method", "command", "name", "run_cap", "metric", "metrics", "scheduler", "early_terminate", "parameters"}
_STRINGS = ("apiVersion", "description", "program", "job", "image_uri", "entity", "project", "name")
_METHODS = {"grid": "grid", "random": "random", "bayes": "optuna"}
_GOALS = {"maximize": "max", "minimize": "min"}
# distribution -> (required keys, optional keys); "distribution" itself is always allowed.
_DISTS: dict[str, tuple[set[str], set[str]]] = {
    "constant": ({"value"}, set()), "categorical": ({"values"}, set()),
    "categorical_w_probabilities": ({"values", "probabilities"}, set()),
    "int_uniform": ({"min", "max"}, set()), "uniform": ({"min", "max"}, set()),
    "q_uniform": ({"min", "max"}, {"q"}), "log_uniform": ({"min", "max"}, set()),
    "log_uniform_values": ({"min", "max"}, set()), "q_log_uniform": ({"min", "max"}, {"q"}),
    "q_log_uniform_values": ({"min", "max"}, {"q"}), "inv_log_uniform": ({"min", "max"}, set()),
    "inv_log_uniform_values": ({"min", "max"}, set()), "normal": (set(), {"mu", "sigma"}),
    "q_normal": (set(), {"mu", "sigma", "q"}), "log_normal": (set(), {"mu", "sigma"}),
    "q_log_normal": (set(), {"mu", "sigma", "q"}), "beta": (set(), {"a", "b"}), "q_beta": (set(), {"a", "b",
                                                                                                   "q"}),
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def is_wandb_format(raw: Mapping[str, Any]) -> bool:
    """W&B files have ``method``/``parameters``; native ones never do."""
    return "method" in raw or "parameters" in raw


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate_wandb(raw: Mapping[str, Any], problems: Problems) -> None:
    """The rules of W&B's sweep schema that skelray relies on, without needing the schema file."""
    for key in raw:
        if key == EXTENSION:
            problems.add(key, "W&B's schema allows no extra top-level keys",
                         f"move it into a constant parameter: parameters: {{{EXTENSION}: {{value: ...}}}}")
        elif key not in _TOP:
            problems.add(key, f"unknown key '{key}' in a W&B sweep", unknown_key_fix(str(key), _TOP))
    if "method" not in raw:
        problems.add("method", "required key is missing", "add method: grid, random or bayes")
    elif raw["method"] not in (*_METHODS, "custom"):
        problems.add("method", f"{raw['method']!r} is not a W&B method", "use grid, random or bayes")
    for key in _STRINGS:
        if key in raw and not isinstance(raw[key], str):
            problems.add(key, f"must be text, got {raw[key]!r}", "quote it")
    if raw.get("kind", "sweep") != "sweep":
        problems.add("kind", f"{raw['kind']!r} is not 'sweep'", "use kind: sweep or remove it")
    if "command" in raw and not isinstance(raw["command"], list):
        problems.add("command", "must be a list", "write command: [${env}, ${interpreter}, ${program}]")
    if "run_cap" in raw and (not isinstance(raw["run_cap"], int) or isinstance(raw["run_cap"], bool)
                             or raw["run_cap"] <= 0):
        problems.add("run_cap", f"must be a whole number > 0, got {raw['run_cap']!r}", "e.g. run_cap: 20")
    if "metric" in raw:
        _validate_metric(raw["metric"], "metric", problems)
    if "early_terminate" in raw:
        _validate_hyperband(raw["early_terminate"], problems)
    if "parameters" not in raw:
        problems.add("parameters", "required key is missing", "add parameters: {name: {values: [...]}}")
    else:
        _validate_parameters(raw["parameters"], "parameters", problems)


def _validate_metric(m: Any, where: str, problems: Problems) -> None:
    if not isinstance(m, Mapping):
        problems.add(where, "must be a mapping", "write metric: {name: val/top1, goal: maximize}")
        return
    allowed = {"name", "goal", "target", "impute", "impute_while_running"}
    for key in m:
        if key not in allowed:
            problems.add(f"{where}.{key}", f"unknown key '{key}'", unknown_key_fix(str(key), allowed))
    if not isinstance(m.get("name"), str):
        problems.add(f"{where}.name", "metric needs a name", "e.g. name: val/top1")
    if "goal" in m and m["goal"] not in _GOALS:
        problems.add(f"{where}.goal", f"{m['goal']!r} is not a goal", "use maximize or minimize")


def _validate_hyperband(et: Any, problems: Problems) -> None:
    where = "early_terminate"
    if not isinstance(et, Mapping):
        problems.add(where, "must be a mapping", "write early_terminate: {type: hyperband, min_iter: 1}")
        return
    allowed = {"type", "max_iter", "min_iter", "s", "eta", "strict"}
    for key in et:
        if key not in allowed:
            problems.add(f"{where}.{key}", f"unknown key '{key}'", unknown_key_fix(str(key), allowed))
    if et.get("type") != "hyperband":
        problems.add(f"{where}.type", f"{et.get('type')!r}: W&B knows only hyperband", "set type: hyperband")
    if "min_iter" not in et and not ("max_iter" in et and "s" in et):
        problems.add(where, "needs min_iter, or max_iter and s", "e.g. min_iter: 1")
    for key, low in (("min_iter", 1), ("max_iter", None)):
        if key in et and (not isinstance(et[key], int) or isinstance(et[key],
                                                                     bool) or (low and et[key] < low)):
            problems.add(f"{where}.{key}", f"must be a whole number{' >= 1' if low else ''}, got {et[key]!r}",
                         "give epochs as an integer")
    if "s" in et and not _num(et["s"]):
        problems.add(f"{where}.s", f"must be a number, got {et['s']!r}", "e.g. s: 2")
    if "eta" in et and (not _num(et["eta"]) or et["eta"] <= 1):
        problems.add(f"{where}.eta", f"must be a number > 1, got {et['eta']!r}", "e.g. eta: 3")


def _validate_parameters(params: Any, where: str, problems: Problems) -> None:
    if not isinstance(params, Mapping) or not params:
        problems.add(where, "must be a non-empty mapping of parameter names",
                     "e.g. lr: {values: [0.1, 0.05]}")
        return
    for name, p in params.items():
        at = f"{where}.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            problems.add(at, f"{name!r} is not a valid parameter name", "use letters, digits, _, . and -")
        if not isinstance(p, Mapping):
            problems.add(at, f"must be a mapping, got {p!r}", "write {value: x} or {values: [...]}")
        elif "parameters" in p:
            for key in set(p) - {"parameters"}:
                problems.add(f"{at}.{key}", "a nested parameters block takes no other keys", "remove it")
            _validate_parameters(p["parameters"], f"{at}.parameters", problems)
        else:
            _validate_param(p, at, problems)


def distribution_of(p: Mapping[str, Any]) -> str | None:
    """The distribution W&B would use: explicit, or inferred from the keys given."""
    if "distribution" in p:
        return p["distribution"] if p["distribution"] in _DISTS else None
    if "value" in p:
        return "constant"
    if "values" in p:
        return "categorical_w_probabilities" if "probabilities" in p else "categorical"
    if "min" in p and "max" in p:
        both_int = all(isinstance(p[k], int) and not isinstance(p[k], bool) for k in ("min", "max"))
        return "int_uniform" if both_int else "uniform"
    return None


def _validate_param(p: Mapping[str, Any], at: str, problems: Problems) -> None:
    dist = distribution_of(p)
    if dist is None:
        if "distribution" in p:
            problems.add(f"{at}.distribution", f"unknown distribution {p['distribution']!r}",
                         unknown_key_fix(str(p["distribution"]), _DISTS))
        else:
            problems.add(at, "cannot tell the distribution", "give value, values, min/max or a distribution")
        return
    required, optional = _DISTS[dist]
    for key in required - set(p):
        problems.add(f"{at}.{key}", f"{dist} needs {key}", f"add {key}")
    for key in set(p) - required - optional - {"distribution"}:
        problems.add(f"{at}.{key}", f"unknown key '{key}' for {dist}", unknown_key_fix(str(key),
                                                                                       required | optional))
    if "values" in p and (not isinstance(p["values"], list) or not p["values"]):
        problems.add(f"{at}.values", "must be a non-empty list", "list at least one value")
    if "probabilities" in p and (not isinstance(p["probabilities"], list) or not p["probabilities"]
                                 or not all(_num(x) and x >= 0 for x in p["probabilities"])):
        problems.add(f"{at}.probabilities", "must be a list of numbers >= 0",
                     "give one probability per value")
    for key in ("min", "max", "q", "mu", "sigma", "a", "b"):
        if key in p and not _num(p[key]):
            problems.add(f"{at}.{key}", f"must be a number, got {p[key]!r}", "give a number")
            return
    if dist == "int_uniform" and not all(isinstance(p.get(k), int) for k in ("min", "max")):
        problems.add(at, "int_uniform needs whole-number min and max",
                     "use integers, or distribution: uniform")
    if "min" in p and "max" in p and p["min"] >= p["max"]:
        problems.add(f"{at}.min", f"min ({p['min']}) must be less than max ({p['max']})", "swap them")
    if dist.endswith("_values") and p.get("min", 1) <= 0:
        problems.add(f"{at}.min", f"{dist} needs min > 0", "use a positive min, e.g. 1e-4")
    for key in ("q",):
        if key in p and p[key] <= 0:
            problems.add(f"{at}.q", "q must be > 0", "use a positive step")
    for key in ("sigma", "a", "b"):
        if key in p and p[key] < 0:
            problems.add(f"{at}.{key}", f"{key} must be >= 0", "use a non-negative number")


# -- conversion ------------------------------------------------------------------------------

def convert_wandb(raw: Mapping[str, Any], problems: Problems, default_name: str = "wandb-sweep") -> dict[str,
                                                                                                         Any]:
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
    if method in _METHODS:
        derived["searcher"] = {"type": _METHODS[method]}
    if "metric" in raw:
        derived["metric"] = raw["metric"]["name"]
        derived["mode"] = _GOALS[raw["metric"].get("goal", "minimize")]
    if "early_terminate" in raw:
        derived["scheduler"] = _asha(raw["early_terminate"])
    if "run_cap" in raw:
        if method == "grid":
            size = math.prod(len(leaf["grid"]) for leaf in search.values() if "grid" in leaf)
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
        leaf = _leaf(dist or "", p, method, at, problems)
        if leaf is not None:
            search[path] = leaf


def _leaf(dist: str, p: Mapping[str, Any], method: str, at: str, problems: Problems) -> dict[str, Any] | None:
    """The native leaf for one W&B distribution (see leaves.py for the native kinds)."""
    lo, hi, q = p.get("min"), p.get("max"), p.get("q", 1)
    mu, sigma, a, b = p.get("mu", 0.0), p.get("sigma", 1.0), p.get("a", 1.0), p.get("b", 1.0)
    if dist in ("categorical", "categorical_w_probabilities"):
        if method == "grid":
            return {"grid": list(p["values"])}
        leaf: dict[str, Any] = {"choice": list(p["values"])}
        if "probabilities" in p:
            if len(p["probabilities"]) != len(p["values"]):
                problems.add(f"{at}.probabilities", "needs one probability per value", "match the lengths")
                return None
            leaf["weights"] = list(p["probabilities"])
        return leaf
    if method == "grid":
        if dist == "int_uniform":
            return {"grid": list(range(lo, hi + 1))}
        if dist == "q_uniform":
            steps = math.floor((hi - lo) / q + 1e-9)
            return {"grid": [_round(lo + i * q) for i in range(steps + 1)]}
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
    table: dict[str, dict[str, Any]] = {
        "int_uniform": {"randint": [lo, (hi or 0) + 1]},  # W&B includes max, Tune's randint does not
        "uniform": {"uniform": [lo, hi]},
        "q_uniform": {"quniform": [lo, hi, q]},
        "log_uniform": {"loguniform": [_exp(lo), _exp(hi)]},  # W&B bounds here are natural logs
        "log_uniform_values": {"loguniform": [lo, hi]},
        "q_log_uniform": {"qloguniform": [_exp(lo), _exp(hi), q]},
        "q_log_uniform_values": {"qloguniform": [lo, hi, q]},
        # log(1/X) ~ U(min, max) means X is log-uniform on [e^-max, e^-min] ...
        "inv_log_uniform": {"loguniform": [_exp(-(hi or 0)), _exp(-(lo or 0))]},
        # ... and log(1/X) ~ U(log 1/max, log 1/min) is X log-uniform on [min, max].
        "inv_log_uniform_values": {"loguniform": [lo, hi]},
        "normal": {"normal": [mu, sigma]}, "q_normal": {"qnormal": [mu, sigma, q]},
        "log_normal": {"lognormal": [mu, sigma]}, "q_log_normal": {"qlognormal": [mu, sigma, q]},
        "beta": {"beta": [a, b]}, "q_beta": {"qbeta": [a, b, q]},
    }
    return table[dist]


def _exp(x: Any) -> float:
    return math.exp(x) if _num(x) else float("nan")


def _round(x: float) -> float | int:
    r = round(x, 12)
    return int(r) if float(r).is_integer() else r


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
