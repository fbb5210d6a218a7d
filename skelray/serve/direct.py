"""Direct ingress: the HTTP ingress replica answers on its own port, with no Serve proxy in between.

By default Serve's HTTP proxy (one process per node) receives every request and hands it to the
ingress replica as an actor call; the replica then fetches the body back from the proxy with a
second call. On the 2-core machine that hop costs about 4 ms of CPU per request and 3.5 ms at
the floor (``GET /v1/models``), more than half of what serving adds to the model (README,
Serving). Ray 2.60's direct ingress (``RAY_SERVE_ENABLE_DIRECT_INGRESS``) gives each ingress
replica an HTTP server of its own on a port from a range (30000-30999); the same FastAPI app
answers there. Those ports change when a replica is replaced, so ``skelray serve`` puts
``front.Front`` on ``--port`` in front of them.

It is a setting of Serve's processes, read when they start, so it can only be chosen for a Ray
that skelray starts itself (``skelray serve`` without ``--address``, the benchmark, tests):
``environment`` gives the variables, ``runtime.start_ray(env=...)`` hands them to that Ray's
processes only. A stopping replica does not keep its port open for a load balancer's sake (no
minimum draining period), so ``serve.shutdown`` is quick.

``ingress_ports`` asks Serve's controller which port each running ingress replica has.
"""

from __future__ import annotations

from typing import Any

from skelray.errors import ConfigError

PROXY, DIRECT = "proxy", "direct"


def environment() -> dict[str, str]:
    """The Serve settings that turn direct ingress on, for the processes of a Ray being started."""
    return {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1", "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0"}


def choose(ingress: str, *, local: bool) -> str:
    """``proxy`` or ``direct`` for ``skelray serve``'s ``--ingress``. ``auto``: direct when this
    process starts the Ray, Serve's proxy on a cluster (its Serve was started without the
    setting). ``direct`` on a cluster is a ``ConfigError`` saying what it would take."""
    if ingress not in ("auto", PROXY, DIRECT):
        raise ConfigError(f"unknown ingress '{ingress}'", where="--ingress", fix="use auto, proxy or direct")
    if ingress == "auto":
        return DIRECT if local else PROXY
    if ingress == DIRECT and not local:
        raise ConfigError("direct ingress is a setting of Serve's processes, read when the cluster starts",
                          where="--ingress direct",
                          fix="drop --address to serve on a Ray started here, or start the cluster's nodes "
                              "with RAY_SERVE_ENABLE_DIRECT_INGRESS=1 and balance requests over the "
                              "replicas' ports")
    return ingress


def reachable(host: str) -> str:
    """Where this machine reaches a server that listens on ``host``: loopback for a wildcard."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "localhost") else host


def require_free(host: str, port: int) -> None:
    """``ConfigError`` naming ``--port`` when something on this machine already listens there,
    checked before Ray starts (Serve would otherwise fail late, or wait)."""
    import socket

    with socket.socket() as s:
        # As a server binds: a port left in TIME_WAIT by an earlier run counts as free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"port {port} on {host} is taken ({exc.strerror})", where="--port",
                              fix="pass a free --port, or stop what listens there") from None


def target_groups(app_name: str) -> Any:
    """Serve's controller's routing targets for ``app_name`` (an ObjectRef: ``ray.get`` it, or
    await it in an async actor)."""
    from ray.serve.context import _get_global_client

    return _get_global_client()._controller.get_target_groups.remote(app_name)


def http_ports(groups: list[Any]) -> list[int]:
    """The HTTP ports in ``target_groups``' answer: under direct ingress those of the running
    ingress replicas (none while they start); the proxy's when it is off."""
    from ray.serve._private.common import RequestProtocol

    return sorted(t.port for g in groups if g.protocol == RequestProtocol.HTTP for t in g.targets)


def ingress_ports(app_name: str) -> list[int]:
    """HTTP ports of the running ingress replicas of application ``app_name`` (direct ingress)."""
    import ray

    return http_ports(ray.get(target_groups(app_name)))
