"""The front: one stable port in front of the ingress replicas' own HTTP servers (direct ingress).

Under direct ingress (``direct.py``) each ingress replica answers on a port of its own, which
Serve picks from a range and which changes when the replica is replaced: Serve creates the
replica's socket without ``SO_REUSEADDR``, so a port whose replica died with connections open
stays unbindable for a minute (TCP's TIME_WAIT), and Serve then hands the replacement another
one. A client cannot follow that. The front listens on ``--port`` and forwards each TCP
connection, byte for byte, to one replica's port, taking the replicas in turn; it asks Serve's
controller for the current ports every ``REFRESH_S`` (and at once when a port refuses), so a
replacement is picked up within a second and new replicas (``--replicas``, autoscaling) share
the connections. Forwarding bytes costs a few system calls per request, where Serve's HTTP
proxy parses the request, makes an actor call and has the replica fetch the body back with a
second one (README, Serving, has both measured).

It runs as a Ray actor reserving no CPU (``start``), beside Serve's own processes. While no
replica answers (starting, or being replaced) a new connection waits up to ``WAIT_S`` and then
gets a 503 with ``Retry-After``; a connection whose replica dies is closed, as it would be
without the front.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from typing import Any

from skelray.serve.direct import http_ports, reachable, target_groups

# How often the replicas' ports are read from Serve's controller.
REFRESH_S = 0.5
# How long a new connection waits for a replica to accept it before it gets a 503.
WAIT_S = 10.0
CHUNK = 1 << 16


def _unavailable(reason: str) -> bytes:
    body = json.dumps({"error": f"the model is unavailable ({reason}); retry shortly", "status": 503}).encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


class Front:
    """Forward connections on ``host:port`` to the ingress replicas of Serve application
    ``app_name``. Made a Ray actor by ``start``; its methods are async, on the actor's loop."""

    def __init__(self, host: str, port: int, app_name: str) -> None:
        self.host, self.port, self.app_name = host, port, app_name
        # Replicas bind the host Serve's HTTP options give (a wildcard is reached on loopback).
        self.backend_host = reachable(host)
        self.ports: list[int] = []
        self.turn = itertools.count()
        self.counts = {"connections": 0, "unavailable": 0, "refused": 0, "refresh_failed": 0}
        self.last_error = ""
        self.server: asyncio.AbstractServer | None = None
        self.refresher: asyncio.Task | None = None

    async def start(self) -> int:
        """Listen (raises ``OSError`` when the port is taken) and begin following the replicas."""
        self.server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)
        await self._refresh()
        self.refresher = asyncio.get_running_loop().create_task(self._follow())
        return self.port

    async def stats(self) -> dict[str, Any]:
        return {**self.counts, "ports": list(self.ports), "last_error": self.last_error}

    async def _refresh(self) -> None:
        try:
            self.ports = http_ports(await target_groups(self.app_name))
        except Exception as exc:  # noqa: BLE001 - the controller restarting: keep the ports we know
            self.counts["refresh_failed"] += 1
            self.last_error = repr(exc)

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            await self._refresh()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to a replica that accepts, taking them in turn; None after ``WAIT_S``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while True:
            ports = list(self.ports)
            start = next(self.turn)
            for i in range(len(ports)):
                try:
                    return await asyncio.wait_for(
                        asyncio.open_connection(self.backend_host, ports[(start + i) % len(ports)]), 2.0)
                except (OSError, asyncio.TimeoutError):
                    self.counts["refused"] += 1
            if loop.time() > deadline:
                return None
            await asyncio.sleep(0.2)
            await self._refresh()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counts["connections"] += 1
        upstream = await self._connect()
        if upstream is None:
            self.counts["unavailable"] += 1
            writer.write(_unavailable("no replica accepted a connection within "
                                      f"{WAIT_S:g} s" if self.ports else "no replica is running"))
            await _close(writer)
            return
        up_reader, up_writer = upstream
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            await asyncio.gather(_close(up_writer), _close(writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream and pass the end on (a half-close: the answer to a request may
    still come the other way). When a side breaks, end this direction at once, so the other
    side's reader sees the end too and the connection is closed both ways."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):  # reset, or writing to a transport already closed
        writer.close()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):  # a reset while closing: closed all the same
        await writer.wait_closed()


def start(host: str, port: int, app_name: str) -> Any:
    """The front as a Ray actor on this node, listening on ``host:port`` once this returns; its
    handle (the actor ends with the Ray, or with ``ray.kill``). ``OSError`` from the actor's
    listen (a taken port) comes back as a ``ConfigError`` naming ``--port``."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from skelray.errors import ConfigError

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(num_cpus=0, max_concurrency=10_000, scheduling_strategy=here)(Front).remote(
        host, port, app_name)
    try:
        ray.get(actor.start.remote())
    except ray.exceptions.RayTaskError as exc:
        ray.kill(actor)
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.cause})", where="--port",
                          fix="pass a free --port, or stop what listens there") from None
    return actor
