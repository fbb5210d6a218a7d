"""Starting or joining Ray: the one way the sweep runner, ``skelray serve`` and the test fixtures do it.

With an address, this joins that cluster as a client; a cluster started with token
authentication (``RAY_AUTH_MODE=token``, the default of skelray's cluster configs) accepts the
client only with its token, which Ray reads from ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
``~/.ray/auth_token``. Authentication is never switched off here; a refused token becomes a
``ConfigError`` that says where to put the right one. Without an address, a private local
instance is started, never one that ``ray start`` left running on this machine.

Imports only ``skelray.errors`` and Ray (when called), so any layer may use it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

from skelray.errors import ConfigError


def start_ray(address: str | None = None, *, num_cpus: int | None = None,
              object_store_memory: int | None = None, num_gpus: int | None = None,
              env: dict[str, str] | None = None) -> bool:
    """Connect to ``address`` or start an embedded local Ray. Returns True if this call started
    (or connected) it, so the caller knows to shut it down; False when Ray was already running.

    ``num_cpus``, ``num_gpus`` and ``object_store_memory`` (bytes) size the local instance only
    (``num_gpus`` on a machine without one declares a logical GPU: a dry run of GPU scheduling).
    ``env``: environment variables for the local instance's processes only (Ray's own settings,
    read when its processes start, e.g. ``serve.direct.environment()``); this process's
    environment is left as it was."""
    import ray
    from ray.exceptions import AuthenticationError

    if ray.is_initialized():
        if env:  # they would not reach processes that are already running
            raise ConfigError("process settings (env) apply only to a Ray this call starts, and this process "
                              "is already connected to one", where="start_ray(env=...)",
                              fix="call ray.shutdown() first, or set them before that Ray starts")
        return False
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    # Tune warns whenever trials checkpoint faster than every 5 s, which tiny sweeps always do.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if address and env:
        raise ConfigError("settings for the processes of a Ray started here cannot reach a running cluster",
                          where="--address", fix="drop --address, or set them in the cluster nodes' environment")
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            # "local" always starts a private instance; a bare init() would silently join any
            # cluster `ray start` left running on this machine.
            _quiet_auth_notice()
            with _environment(env or {}):  # the raylet copies it; every worker it starts inherits it
                ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus,
                         object_store_memory=object_store_memory, include_dashboard=False, **kwargs)
    except AuthenticationError as exc:
        raise ConfigError(f"the Ray cluster refused this client's token ({exc.message})", where="--address",
                          fix="set RAY_AUTH_MODE=token and give the cluster's token in RAY_AUTH_TOKEN or "
                              "~/.ray/auth_token (`ray get-auth-token` on the head prints it)") from None
    return True


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """``env`` set in ``os.environ`` for the ``with`` block, then put back as it was."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _drop_auth_enabled_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def _quiet_auth_notice() -> None:
    """Ray turns token authentication on for every new local instance and logs a warning that
    it did, on every start. Auth stays on; only that notice is dropped (a filter, added once).
    Its "token authentication is disabled" warning, which matters, is kept. (Setting
    ``RAY_AUTH_MODE=token`` instead would silence it too, but only if set before Ray is
    imported: set later, the new cluster asks for a token that this client does not send.)"""
    log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if _drop_auth_enabled_notice not in log.filters:
        log.addFilter(_drop_auth_enabled_notice)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the OS picks it), for a Serve proxy or a test server."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
