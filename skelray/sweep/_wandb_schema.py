"""The rules of W&B's sweep schema that skelray relies on, checked without the schema file.

The project must install and run without ``../shared``, so the schema's rules are restated
here (top-level keys, method, metric, early_terminate, parameter shapes and distributions);
the tests check them against the real schema when it is present.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from skelray.config._problems import Problems, unknown_key_fix

EXTENSION = "skelray"  # the constant parameter carrying skelray-only settings
_TOP = {"apiVersion", "kind", "controller", "description", "program", "job", "image_uri", "entity", "project",
        "method", "command", "name", "run_cap", "metric", "metrics", "scheduler", "early_terminate",
        "parameters"}
_STRINGS = ("apiVersion", "description", "program", "job", "image_uri", "entity", "project", "name")
METHODS = {"grid": "grid", "random": "random", "bayes": "optuna"}
GOALS = {"maximize": "max", "minimize": "min"}
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
    "q_log_normal": (set(), {"mu", "sigma", "q"}),
    "beta": (set(), {"a", "b"}), "q_beta": (set(), {"a", "b", "q"}),
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _is_number(v: Any) -> bool:
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
    elif raw["method"] not in (*METHODS, "custom"):
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
    if "goal" in m and m["goal"] not in GOALS:
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
        value = et.get(key)
        if key in et and (not isinstance(value, int) or isinstance(value, bool) or (low and value < low)):
            problems.add(f"{where}.{key}", f"must be a whole number{' >= 1' if low else ''}, got {et[key]!r}",
                         "give epochs as an integer")
    if "s" in et and not _is_number(et["s"]):
        problems.add(f"{where}.s", f"must be a number, got {et['s']!r}", "e.g. s: 2")
    if "eta" in et and (not _is_number(et["eta"]) or et["eta"] <= 1):
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
        problems.add(f"{at}.{key}", f"unknown key '{key}' for {dist}",
                     unknown_key_fix(str(key), required | optional))
    if "values" in p and (not isinstance(p["values"], list) or not p["values"]):
        problems.add(f"{at}.values", "must be a non-empty list", "list at least one value")
    if "probabilities" in p and (not isinstance(p["probabilities"], list) or not p["probabilities"]
                                 or not all(_is_number(x) and x >= 0 for x in p["probabilities"])):
        problems.add(f"{at}.probabilities", "must be a list of numbers >= 0",
                     "give one probability per value")
    for key in ("min", "max", "q", "mu", "sigma", "a", "b"):
        if key in p and not _is_number(p[key]):
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
