"""The project's own exception types.

Every error a user can cause (bad YAML, bad data, bad request) is raised as a
``SkelrayError`` whose message names the offending field or file and says how to fix it.
"""

from __future__ import annotations


class SkelrayError(Exception):
    """Base class for errors a user can cause and fix."""

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.message = message
        self.where = where
        self.fix = fix
        text = f"{where}: {message}" if where else message
        if fix:
            text = f"{text} (fix: {fix})"
        super().__init__(text)


class DataError(SkelrayError):
    """A data file, folder or store is missing, malformed or inconsistent."""


class LayoutError(SkelrayError):
    """A skeleton layout is unknown or its definition is inconsistent."""


class ConfigError(SkelrayError):
    """A configuration (sweep YAML, model kwargs, CLI flag) is invalid."""


def check_choice(value: object, choices: tuple, where: str) -> object:
    """``value`` if it is one of ``choices``, else a ``ConfigError`` naming ``where`` and the
    choices (``True`` is not taken for ``1``)."""
    is_bool_for_number = isinstance(value, bool) and not any(isinstance(c, bool) for c in choices)
    if is_bool_for_number or value not in choices:
        raise ConfigError(f"unknown value {value!r}", where=where,
                          fix=f"use one of {', '.join(map(str, choices))}")
    return value
