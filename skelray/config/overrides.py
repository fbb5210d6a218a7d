"""``KEY=VALUE`` overrides from the command line (``--set``, ``--opt``): the one parser."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from skelray.errors import ConfigError


def parse_overrides(items: Iterable[str], *, flag: str = "--set",
                    example: str = "train.epochs=3") -> dict[str, Any]:
    """``["train.epochs=3", "data.path=/d"]`` -> ``{"train.epochs": 3, "data.path": "/d"}``.

    Values are read as YAML, so numbers, booleans and lists get their types as in a sweep file;
    an empty value is the empty string. A value YAML cannot read (``x=[1,``) is a
    ``ConfigError`` naming the flag and the key, never a traceback.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{item!r} is not KEY=VALUE", where=flag, fix=f"write e.g. {flag} {example}")
        if not value.strip():
            out[key] = ""
            continue
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
            raise ConfigError(f"the value of '{key}' is not valid YAML ({reason}): {value!r}",
                              where=flag, fix="complete the list or mapping, or quote a text value: "
                                              f"{flag} \"{key}='...'\"") from None
    return out


def cli_overrides(sets: Iterable[str], data: str | None = None) -> dict[str, Any]:
    """A sweep command's ``--set`` items and its ``--data PATH`` (which sets ``data.path``)."""
    out = parse_overrides(sets)
    if data:
        out["data.path"] = data
    return out
