"""The front's forwarding, without Ray: bytes go both ways, a changed replica port is followed,
a half-closed request still gets its answer, and no replica means a 503 with Retry-After. Its
reading of the ports from Serve's controller is replaced by a list here; test_app.py runs the
real one in front of a real replica (and kills that replica)."""

from __future__ import annotations

import asyncio
import json

import pytest

from skelray.runtime import free_port
from skelray.serve import front


class Fixed(front.Front):
    """A front whose replicas' ports are whatever the test says."""

    def __init__(self, ports: list[int]) -> None:
        super().__init__("127.0.0.1", free_port(), "test")
        self.fixed = ports

    async def _refresh(self) -> None:
        self.ports = list(self.fixed)


async def replica(name: bytes) -> tuple[asyncio.AbstractServer, int]:
    """A stand-in replica: reads the request to its end (the client's half-close), answers."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = await reader.read()
        writer.write(name + b":" + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def ask(port: int, body: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(body)
    writer.write_eof()  # half-close: the answer must still come back
    answer = await reader.read()
    writer.close()
    return answer


def test_bytes_go_both_ways_and_a_replaced_replicas_new_port_is_followed():
    async def run() -> None:
        a, port_a = await replica(b"a")
        b, port_b = await replica(b"b")
        f = Fixed([port_a])
        await f.start()
        assert await ask(f.port, b"x" * 200_000) == b"a:" + b"x" * 200_000  # larger than one chunk
        f.fixed = [port_b]  # the replica was replaced: Serve gave the new one another port
        a.close()
        await f._refresh()
        assert await ask(f.port, b"hello") == b"b:hello"
        f.fixed = [port_a, port_b]  # a dead port among them is skipped, not answered with an error
        await f._refresh()
        assert {await ask(f.port, b"1"), await ask(f.port, b"2")} == {b"b:1", b"b:2"}
        assert (await f.stats())["refused"] >= 1
        b.close()

    asyncio.run(run())


def test_connections_are_taken_by_the_replicas_in_turn():
    async def run() -> None:
        servers = [await replica(n) for n in (b"a", b"b")]
        f = Fixed([p for _, p in servers])
        await f.start()
        answers = [await ask(f.port, b".") for _ in range(4)]
        assert sorted(answers) == [b"a:.", b"a:.", b"b:.", b"b:."]

    asyncio.run(run())


def test_no_replica_answering_gets_a_503_with_retry_after(monkeypatch):
    monkeypatch.setattr(front, "WAIT_S", 0.3)

    async def run() -> bytes:
        f = Fixed([])
        await f.start()
        return await ask(f.port, b"GET /healthz HTTP/1.1\r\n\r\n")

    answer = asyncio.run(run())
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in head
    assert json.loads(body) == {"error": "the model is unavailable (no replica is running); retry shortly",
                                "status": 503}


def test_a_taken_port_is_a_clear_error():
    async def run() -> None:
        taken, port = await replica(b"a")
        f = front.Front("127.0.0.1", port, "test")
        with pytest.raises(OSError):
            await f.start()
        taken.close()

    asyncio.run(run())
