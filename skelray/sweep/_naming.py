"""Trial names: short, readable, deterministic and safe as folder names."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from skelray.sweep._tree import deep_merge, get_path
from skelray.sweep.leaves import Leaf

_MISSING = object()


def trial_name(search: Mapping[str, Leaf], base: Mapping[str, Any], config: Mapping[str, Any],
               max_len: int = 180) -> str:
    """``pa_count=3,stream=j,seed=0`` from the searched (not dependent) paths of ``config``.

    Labels are the last path segment, lengthened (``data.seed``/``train.seed``) where two would
    collide. ``config`` may be nested (as Tune gives it) or flat with dotted keys. Sub-tree
    options are named by the keys the option sets. Characters outside ``[A-Za-z0-9._=,+-]``
    become ``_`` and very long names end in a short hash, so the name is a safe folder name.
    """
    named = [(path, leaf) for path, leaf in search.items() if not leaf.is_dependent]
    labels = _labels([path for path, _ in named])
    parts: list[str] = []
    for path, leaf in named:
        value = config[path] if path in config else get_path(config, path, _MISSING)
        if value is _MISSING:
            continue
        if isinstance(value, Mapping):
            parts.extend(_option_parts(leaf, base, path, value))
        else:
            parts.append(f"{labels[path]}={_fmt(value, leaf)}")
    name = re.sub(r"[^A-Za-z0-9._=,+-]", "_", ",".join(parts) or "base")
    if len(name) > max_len:
        name = f"{name[:max_len - 9]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return name


def _labels(paths: list[str]) -> dict[str, str]:
    depth = dict.fromkeys(paths, 1)
    while True:
        labels = {p: ".".join(p.split(".")[-depth[p]:]) for p in paths}
        taken = list(labels.values())
        clashes = [p for p in paths if taken.count(labels[p]) > 1 and depth[p] < len(p.split("."))]
        if not clashes:
            return labels
        for p in clashes:
            depth[p] += 1


def _option_parts(leaf: Leaf, base: Mapping[str, Any], path: str, value: Mapping[str, Any]) -> list[str]:
    base_value = get_path(base, path, {})
    chosen: Any = value
    for option in leaf.exact_values() or ():  # name a sub-tree by the keys its option sets, not the merged whole
        if isinstance(option, Mapping) and deep_merge(base_value, option) == value:
            chosen = option
            break
    return [f"{sub.split('.')[-1]}={_fmt(v, leaf)}" for sub, v in _flatten_values(chosen) if v is not None]


def _flatten_values(node: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        out.extend(_flatten_values(value, path) if isinstance(value, Mapping) else [(path, value)])
    return out


def _fmt(value: Any, leaf: Leaf) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        # Sampled floats are long; grid values are what the user typed, keep them exact.
        return f"{value:.4g}" if leaf.is_random else repr(value)
    if isinstance(value, (list, tuple)):
        return "-".join(_fmt(v, leaf) for v in value)
    if value is None:
        return "none"
    return str(value)
