"""Collecting every problem in a file (sweep, manifest, serve config) before reporting it,
so a user fixes them all in one go.

A ``Problem`` names a YAML path (``train.lr``, ``search.model.kwargs.pa_count``), says what
is wrong and how to fix it. ``Problems.raise_if_any`` turns the list into one ``ConfigError``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from skelray.errors import ConfigError, SkelrayError


@dataclass(frozen=True)
class Problem:
    where: str
    message: str
    fix: str | None = None

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"{text} (fix: {self.fix})" if self.fix else text


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate, or None when nothing is close enough to be a likely typo."""
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_key_fix(key: str, candidates: Iterable[str]) -> str:
    candidates = sorted(set(candidates))
    guess = did_you_mean(key, candidates)
    if guess:
        return f"did you mean '{guess}'?"
    return f"remove it or use one of: {', '.join(candidates)}" if candidates else "remove it"


@dataclass
class Problems:
    """An ordered list of problems; ``lines`` maps a YAML path to its line for nicer messages."""

    source: str = "sweep"
    lines: Mapping[str, int] = field(default_factory=dict)
    items: list[Problem] = field(default_factory=list)

    def add(self, where: str, message: str, fix: str | None = None) -> None:
        problem = Problem(where, message, fix)
        if problem not in self.items:
            self.items.append(problem)

    def extend(self, other: Iterable[Problem]) -> None:
        for p in other:
            self.add(p.where, p.message, p.fix)

    def __bool__(self) -> bool:
        return bool(self.items)

    def _with_line(self, p: Problem) -> Problem:
        line = self.lines.get(p.where)
        return Problem(f"{p.where} (line {line})", p.message, p.fix) if line else p

    def raise_if_any(self, error: type[SkelrayError] = ConfigError, fix: str | None = None) -> None:
        """Raise one ``error`` listing every problem; ``fix`` is the advice for problems
        without their own (and for the whole list)."""
        if not self.items:
            return
        shown = [self._with_line(p) for p in self.items]
        if len(shown) == 1:
            p = shown[0]
            exc = error(p.message, where=f"{self.source}: {p.where}" if p.where else self.source,
                        fix=p.fix or fix)
        else:
            body = "\n".join(f"  - {p}" for p in shown)
            exc = error(f"{len(shown)} problems in {self.source}:\n{body}", fix=fix)
        exc.problems = list(self.items)  # type: ignore[attr-defined]  # for callers that want each one
        raise exc


# -- pydantic errors -> problems -------------------------------------------------------------

_TYPE_FIXES = {
    "int_type": "give a whole number",
    "int_parsing": "give a whole number",
    "int_from_float": "give a whole number",
    "float_type": "give a number",
    "float_parsing": "give a number",
    "bool_type": "write true or false",
    "bool_parsing": "write true or false",
    "string_type": "give a text value (quote it if YAML reads it as something else)",
    "list_type": "give a list, e.g. [a, b]",
    "dict_type": "give a mapping of keys to values",
    "model_type": "give a mapping of keys to values",
    "tuple_type": "give a list",
    "missing": "add it",
    "string_pattern_mismatch": "use letters, digits, '_', '.' and '-' only (it names a folder)",
}


_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def loc_to_path(loc: Iterable[Any]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def pydantic_problems(exc: Any, root_model: type, prefix: str = "") -> list[Problem]:
    """Translate a pydantic ``ValidationError`` into problems with paths and fixes."""
    out: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path = loc_to_path(loc)
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        kind = err["type"]
        ctx = err.get("ctx") or {}
        if kind == "extra_forbidden":
            known = _fields_at(root_model, loc[:-1])
            out.append(Problem(path, f"unknown key '{loc[-1]}'", unknown_key_fix(str(loc[-1]), known)))
        elif kind == "missing":
            out.append(Problem(path, "required key is missing", "add it"))
        elif kind in ("literal_error", "enum"):
            expected = str(ctx.get("expected", "")).replace("'", "")
            out.append(Problem(path, f"{err['input']!r} is not allowed", f"use one of {expected}"))
        elif kind in _BOUNDS:
            limit = next(iter(ctx.values()), "?")
            out.append(Problem(path, f"{err['input']!r}: must be {_BOUNDS[kind]} {limit}", "change the value"))
        else:
            msg = err["msg"]
            msg = msg.removeprefix("Value error, ")
            out.append(Problem(path, f"{msg} (got {err.get('input')!r})", _TYPE_FIXES.get(kind)))
    return out


def _fields_at(model: type, loc: tuple) -> list[str]:
    """Field names of the pydantic model reached by following ``loc`` from ``model``."""
    from typing import get_args, get_origin

    from pydantic import BaseModel

    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        info = current.model_fields.get(part)
        if info is None:
            return []
        current = info.annotation
        # Optional[Model] / Model | None: follow the model part.
        is_model = isinstance(current, type) and issubclass(current, BaseModel)
        if get_origin(current) is not None and not is_model:
            models = [a for a in get_args(current) if isinstance(a, type) and issubclass(a, BaseModel)]
            current = models[0] if models else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []
