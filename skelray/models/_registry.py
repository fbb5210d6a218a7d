"""The one model registry: architectures register entry points by name, everything else
(sweeps, export, serve, the CLI) looks the same name up through ``create_model``.

Two ways in:

- In-process: decorate the entry point with ``@register_model``. The zoo's own architectures
  do this in their modules, which ``skelray.models`` imports.
- Plug-ins (models defined in another package): declare the entry point in the package's
  metadata, under the ``skelray.models`` group::

      [project.entry-points."skelray.models"]
      my_net = "my_package.models:my_net"

  ``list_models`` lists such names without importing anything; ``create_model`` and
  ``model_options`` import the entry point the first time the name is used. The function may
  be a plain callable, or itself decorated with ``@register_model`` (to declare a
  ``delegate``, see below). The package must be installed (``pip install -e .`` for a
  checkout) for its metadata to be found. Models of skelray's own higher layers (the
  ``sparse_ensemble`` of ``skelray.sparsity``) are plug-ins of the same kind, named in
  ``BUILTIN_PLUGINS`` so that they need no metadata.

An entry point's keyword arguments are the model's public options, and ``create_model``
checks callers against them. An entry point that wraps another registered model (the
sparse ensemble's ``backbone=``) declares the argument that names it with ``delegate``: its
options are then its own plus the wrapped model's, ``model_options(name, backbone=...)``
lists exactly those, and its ``**kwargs`` receive the wrapped model's options.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib.metadata
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, overload

from torch import nn

from skelray.errors import ConfigError

EntryPoint = Callable[..., nn.Module]
F = TypeVar("F", bound=EntryPoint)

PLUGIN_GROUP = "skelray.models"

# Options every model takes on top of its entry point's own: handled here, after the entry
# point has built the model, so architectures need not know about them.
#   mirror_tta: in eval mode, average the logits of the input and of its left-right mirror
#               (``SkeletonModel.enable_mirror_tta``); twice the inference compute.
COMMON_OPTIONS: dict[str, object] = {"mirror_tta": False}


@dataclass(frozen=True)
class _Registered:
    fn: EntryPoint
    delegate: str | None  # the keyword argument naming a wrapped model, if any


_entry_points: dict[str, _Registered] = {}


@overload
def register_model(fn: F) -> F: ...


@overload
def register_model(fn: None = None, *, name: str | None = None, overwrite: bool = False,
                   delegate: str | None = None) -> Callable[[F], F]: ...


def register_model(fn: F | None = None, *, name: str | None = None, overwrite: bool = False,
                   delegate: str | None = None):
    """Register a model entry point under its function name (or ``name``).

    Use as ``@register_model`` or ``@register_model(name="my_net")``. ``delegate`` names the
    keyword argument whose value is another registered model that this one wraps (it must
    have a default and the entry point must take ``**kwargs``, which receive that model's
    options).
    """

    def add(f: F) -> F:
        key = name or f.__name__
        if delegate is not None:
            _check_delegate(key, f, delegate)
        known = _entry_points.get(key)
        if known is not None and not overwrite and known.fn is not f:
            raise ConfigError(f"a model named '{key}' is registered already",
                              fix="pick another name or pass overwrite=True")
        _entry_points[key] = _Registered(f, delegate)
        return f

    return add(fn) if fn is not None else add


def _check_delegate(key: str, fn: EntryPoint, delegate: str) -> None:
    params = inspect.signature(fn).parameters
    param = params.get(delegate)
    if param is None or param.default is param.empty:
        raise ConfigError(f"the entry point of '{key}' has no argument '{delegate}' with a default",
                          where=f"register_model(delegate={delegate!r})",
                          fix="delegate names the argument that holds the wrapped model's name")
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        raise ConfigError(f"the entry point of '{key}' takes no **kwargs for the wrapped model's options",
                          where=f"register_model(delegate={delegate!r})", fix="add **kwargs to it")


# skelray's own plug-ins: models of a higher layer, named here as strings and imported on
# first use, like an installed package's entry points. They are listed here rather than in
# pyproject.toml so they are found also where skelray arrives without its metadata (a Ray
# job's py_modules on an image that does not install skelray).
BUILTIN_PLUGINS = {"sparse_ensemble": "skelray.sparsity._ensemble:sparse_ensemble"}


@functools.cache
def _plugins() -> dict[str, importlib.metadata.EntryPoint]:
    """skelray's own plug-ins, then the ``skelray.models`` entry points of the installed
    packages, by name (read once; the first to declare a name wins)."""
    found = {name: importlib.metadata.EntryPoint(name, value, PLUGIN_GROUP)
             for name, value in BUILTIN_PLUGINS.items()}
    for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        found.setdefault(ep.name, ep)
    return found


def _load_plugin(name: str) -> None:
    """Import the plug-in entry point ``name`` and register it (if importing did not already)."""
    ep = _plugins()[name]
    package = ep.dist.name if getattr(ep, "dist", None) is not None else "its package"
    try:
        fn = ep.load()
    except Exception as err:
        raise ConfigError(f"model '{name}' is declared by {package} as '{ep.value}', which failed to "
                          f"load: {type(err).__name__}: {err}", where="model",
                          fix=f"fix or reinstall {package}") from err
    if not callable(fn):
        raise ConfigError(f"model '{name}' is declared by {package} as '{ep.value}', which is not callable",
                          where="model", fix="point the entry point at the model's entry-point function")
    if name not in _entry_points:
        # Decorated under another name: keep what it declared.
        same = next((r for r in _entry_points.values() if r.fn is fn), None)
        register_model(fn, name=name, delegate=same.delegate if same else None)


def list_models(pattern: str | None = None) -> list[str]:
    """Registered and plug-in model names, sorted; ``pattern`` is an fnmatch filter such as
    ``"hpigcn*"``. Nothing is imported to list a plug-in."""
    names = sorted({*_entry_points, *_plugins()})
    if pattern:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return names


def _registered(name: str) -> _Registered:
    if name not in _entry_points and name in _plugins():
        _load_plugin(name)
    if name in _entry_points:
        return _entry_points[name]
    names = list_models()
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigError(f"unknown model '{name}'", where="model", fix=f"{hint}choose one of {', '.join(names)}")


def get_entry_point(name: str) -> EntryPoint:
    """The entry-point function of a model (a plug-in is imported on first use)."""
    return _registered(name).fn


def model_options(name: str, **context: object) -> dict[str, object]:
    """The keyword options of a model and their defaults.

    For a model that wraps another (registered with ``delegate``), ``context`` may give the
    delegate argument (``model_options("sparse_ensemble", backbone="stgcn")``); the options are
    then the model's own plus the wrapped model's (the entry point's default one without it).
    Other keys of ``context`` are ignored, so a model's whole kwargs may be passed.
    """
    reg = _registered(name)
    params = inspect.signature(reg.fn).parameters.values()
    own = {p.name: p.default for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    if reg.delegate is None:
        return {**own, **COMMON_OPTIONS}
    wrapped = context.get(reg.delegate, own[reg.delegate])
    where = f"{name}.{reg.delegate}"
    if not isinstance(wrapped, str):
        raise ConfigError(f"must be a model name, got {wrapped!r}", where=where,
                          fix=f"choose one of {', '.join(n for n in list_models() if n != name)}")
    try:
        inner = model_options(wrapped)
    except ConfigError as err:  # an unknown wrapped model: say which argument named it
        raise ConfigError(err.message, where=where, fix=err.fix) from None
    extra = {k: v for k, v in inner.items() if k not in own and k not in COMMON_OPTIONS}
    return {**own, **extra, **COMMON_OPTIONS}


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model; unknown names and unknown options raise ``ConfigError``.

    Options are checked against ``model_options(name, **kwargs)``, except for an entry point
    that takes ``**kwargs`` without declaring a delegate (it checks its own).
    """
    reg = _registered(name)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(reg.fn).parameters.values())
    if reg.delegate is not None or not takes_any:
        known = list(model_options(name, **kwargs))
        for key in kwargs:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise ConfigError(f"unknown option '{key}' for model '{name}'", where=f"model.{key}",
                                  fix=f"{hint}{name} takes {', '.join(known)}")
    mirror_tta = kwargs.pop("mirror_tta", False)
    if not isinstance(mirror_tta, bool):
        raise ConfigError(f"must be true or false, got {mirror_tta!r}", where="model.mirror_tta")
    model = reg.fn(**kwargs)
    if mirror_tta:
        from skelray.models._layers import SkeletonModel

        if not isinstance(model, SkeletonModel):
            raise ConfigError(f"'{name}' is not a skeleton model, so it cannot mirror its input",
                              where="model.mirror_tta", fix="leave mirror_tta off for this model")
        model.enable_mirror_tta()
    return model
