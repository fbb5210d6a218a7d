"""A trial config as nested dicts: read, set and merge values at dotted paths such as
``model.kwargs.pa_count``. The bottom of ``skelray.sweep``: it imports nothing of it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

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
    """Set ``path`` in ``config`` in place, creating (or replacing non-dict) sections on the way."""
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


def with_values(base: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``values`` set: a nested config (as Tune gives a trial) or
    ``{"model.kwargs.pa_count": 3}``. A mapping value merges into the sub-tree it replaces;
    a path whose first segment is not a key of ``base`` (``wandb``, beside data/model/train)
    is left out."""
    config = copy.deepcopy(dict(base))
    for path, value in _flat_items(values):
        if path.split(".")[0] not in config:
            continue
        current = get_path(config, path, None)
        set_path(config, path, deep_merge(current, value) if isinstance(current, Mapping) else value)
    return config


def _flat_items(values: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Dotted keys stay as they are; nested sections are walked down to their leaves, except
    under ``model.kwargs`` where a mapping value is itself a kwarg."""
    out: list[tuple[str, Any]] = []
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and "." not in str(key) and path != "model.kwargs" \
                and not path.startswith("model.kwargs."):
            out.extend(_flat_items(value, path))
        else:
            out.append((path, value))
    return out
