"""The one model registry: architectures register entry points by name, everything else
(sweeps, export, serve, the CLI) looks the same name up through ``create_model``.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import TypeVar, overload

from torch import nn

from skelray.errors import ConfigError

EntryPoint = Callable[..., nn.Module]
F = TypeVar("F", bound=EntryPoint)

_entry_points: dict[str, EntryPoint] = {}

# Options every model takes on top of its entry point's own: handled here, after the entry
# point has built the model, so architectures need not know about them.
#   mirror_tta: in eval mode, average the logits of the input and of its left-right mirror
#               (``SkeletonModel.enable_mirror_tta``); twice the inference compute.
COMMON_OPTIONS: dict[str, object] = {"mirror_tta": False}


@overload
def register_model(fn: F) -> F: ...


@overload
def register_model(fn: None = None, *, name: str | None = None,
                   overwrite: bool = False) -> Callable[[F], F]: ...


def register_model(fn: F | None = None, *, name: str | None = None, overwrite: bool = False):
    """Register a model entry point under its function name (or ``name``).

    Use as ``@register_model`` or ``@register_model(name="my_net")``. The entry point's keyword
    arguments are the model's public options; ``create_model`` checks callers against them.
    """

    def add(f: F) -> F:
        key = name or f.__name__
        if key in _entry_points and not overwrite and _entry_points[key] is not f:
            raise ConfigError(f"a model named '{key}' is registered already",
                              fix="pick another name or pass overwrite=True")
        _entry_points[key] = f
        return f

    return add(fn) if fn is not None else add


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` is an fnmatch filter such as ``"hpigcn*"``."""
    names = sorted(_entry_points)
    if pattern:
        import fnmatch

        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return names


def get_entry_point(name: str) -> EntryPoint:
    if name in _entry_points:
        return _entry_points[name]
    close = difflib.get_close_matches(name, list(_entry_points), n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigError(f"unknown model '{name}'", where="model",
                      fix=f"{hint}choose one of {', '.join(list_models())}")


def model_options(name: str) -> dict[str, object]:
    """The keyword options of a registered model and their defaults."""
    sig = inspect.signature(get_entry_point(name))
    own = {p.name: p.default for p in sig.parameters.values()
           if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return {**own, **COMMON_OPTIONS}


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model; unknown names and unknown options raise ``ConfigError``."""
    fn = get_entry_point(name)
    sig = inspect.signature(fn)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    if not takes_any:
        known = list(model_options(name))
        for key in kwargs:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise ConfigError(f"unknown option '{key}' for model '{name}'", where=f"model.{key}",
                                  fix=f"{hint}{name} takes {', '.join(known)}")
    mirror_tta = kwargs.pop("mirror_tta", False)
    if not isinstance(mirror_tta, bool):
        raise ConfigError(f"must be true or false, got {mirror_tta!r}", where="model.mirror_tta")
    model = fn(**kwargs)
    if mirror_tta:
        from skelray.models._layers import SkeletonModel

        if not isinstance(model, SkeletonModel):
            raise ConfigError(f"'{name}' is not a skeleton model, so it cannot mirror its input",
                              where="model.mirror_tta", fix="leave mirror_tta off for this model")
        model.enable_mirror_tta()
    return model
