"""Reading a sweep: file, YAML text or dict -> plain dict, with line numbers, overrides and
``${ENV}`` interpolation. Nothing here knows what the keys mean.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from skelray.config._problems import Problems
from skelray.errors import ConfigError
from skelray.sweep._tree import set_path

# ${NAME} or ${NAME:-default}; NAME as in POSIX shells.
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def read_source(
    source: str | Path | Mapping[str, Any],
) -> tuple[dict[str, Any], str, dict[str, int], Path | None]:
    """Return (raw dict, a name for messages, path -> line map, the file's path if any)."""
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source)), "sweep", {}, None
    path: Path | None = None
    if isinstance(source, Path) or _looks_like_path(source):
        path = Path(source).expanduser()
        if not path.is_file():
            raise ConfigError(f"sweep file '{path}' does not exist", where=str(source),
                              fix="check the path, or pass the YAML text itself")
        text, name = path.read_text(encoding="utf-8"), str(source)
    else:
        text, name = str(source), "sweep"
    try:
        raw = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}, line {mark.line + 1}, column {mark.column + 1}" if mark else name
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"YAML syntax error: {problem}", where=where,
                          fix="check indentation, colons and quotes near that position") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"the top level must be a mapping of keys, got {type(raw).__name__}", where=name,
                          fix="start the file with keys such as 'name:', 'data:', 'model:'")
    lines: dict[str, int] = {}
    problems = Problems(source=name)
    if node is not None:
        _walk_lines(node, "", lines, problems)
    problems.raise_if_any()
    return raw, name, lines, path


def _looks_like_path(text: str) -> bool:
    # YAML worth loading has a newline, a "key: value" or a flow mapping; anything else is a path.
    stripped = text.strip()
    return bool(stripped) and "\n" not in stripped and ": " not in stripped and not stripped.startswith("{")


def _walk_lines(node: yaml.Node, prefix: str, lines: dict[str, int], problems: Problems) -> None:
    """Record the line of every mapping key, and flag keys written twice (YAML keeps the last)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            path = f"{prefix}.{key}" if prefix else key
            if key in seen:
                problems.add(f"{path} (line {key_node.start_mark.line + 1})", "key is written twice",
                             "keep one; YAML would silently use the last")
            seen.add(key)
            lines.setdefault(path, key_node.start_mark.line + 1)
            _walk_lines(value_node, path, lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk_lines(item, f"{prefix}[{i}]", lines, problems)


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Set each dotted path (``data.path``, ``train.epochs``) to its value, creating sections."""
    if not overrides:
        return raw
    raw = copy.deepcopy(raw)
    for key, value in overrides.items():
        set_path(raw, str(key), value)
    return raw


def interpolate_env(raw: Any, problems: Problems, env: Mapping[str, str] | None = None,
                    path: str = "") -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string; an unset NAME is a problem."""
    env = os.environ if env is None else env
    if isinstance(raw, dict):
        return {k: interpolate_env(v, problems, env, f"{path}.{k}" if path else str(k))
                for k, v in raw.items()}
    if isinstance(raw, list):
        return [interpolate_env(v, problems, env, f"{path}[{i}]") for i, v in enumerate(raw)]
    if not isinstance(raw, str) or "${" not in raw:
        return raw

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        hint = f"export {name}=..."
        if path == "data.path":
            hint += " or pass the data folder on the command line (--data PATH, i.e. override data.path)"
        else:
            hint += f" or override {path}"
        problems.add(path, f"environment variable {name} is not set", hint)
        return match.group(0)

    return _ENV.sub(repl, raw)
