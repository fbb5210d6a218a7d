"""The serving path's cost over loopback HTTP: both graphs and the in-process ensemble, in one run.

    .venv/bin/python benchmarks/bench_serve.py --quick           # about 3 minutes on 2 cores
    .venv/bin/python benchmarks/bench_serve.py --bundle BUNDLE   # your own bundle

Two applications serve the same bundle at once: the default ``fused`` graph (the ingress
replica batches clips and runs every member: one hop) and the ``per-member`` graph (Ingress ->
Preprocess -> one deployment per member -> Ensemble). At concurrency 1, 8, 32 and 64 each gets
the same bounded number of one-clip JSON requests, in alternating rounds so drifting load on a
shared machine hits both alike; the table gives requests/s, p50 and p99 latency and failed
requests. The in-process ensemble (``Bundle.predict``: preprocessing, the fused members,
weighted logits) runs between those rounds at batch sizes equal to the concurrency levels with
one torch thread, the thread count each model replica gets here (the best of its rounds, and
of the one-clip calls the fastest median, so the ratios never flatter the endpoint). The second table splits the median request at
concurrency 1 into where its time goes: HTTP client and Serve's proxy (the client's latency
minus the ``latency_ms`` the ingress reports), the replica's own work beyond the model (parsing,
batching wait, the graph's hops), and the model in-process; ``GET /v1/models`` (no model, no
body) is the floor any request pays for the HTTP client, the proxy and the ingress.
The client runs on the same machine: on two cores it takes CPU from the server, so absolute
figures are pessimistic; the ratios are what to read. The load generator is aiohttp by default
(``--client httpx`` for the other; aiohttp is a Ray dependency). The third table is the fused
graph's CPU budget: CPU milliseconds per request of the client (this process), Serve's HTTP
proxy and the fused replica (its process's CPU time, every thread), against the in-process
model's per clip; CPU time per request moves far less with other jobs' load than latency does. Without ``--bundle`` the demo sweep is
trained and exported first (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from skelray.runtime import free_port

CONCURRENCY = (1, 8, 32, 64)
GRAPHS = ("fused", "per-member")
console = Console(width=160)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


async def load(url: str, bodies: list[bytes], concurrency: int, client: str = "aiohttp"
               ) -> dict[str, list[float] | float | int]:
    """Send every body with ``concurrency`` requests in flight: wall seconds, client latencies
    and server-reported latencies (ms) of the answered ones, the count that failed, and the
    load generator's own CPU seconds (it shares the cores with the server)."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    latencies: list[float] = []
    server: list[float] = []
    failures = 0
    headers = {"content-type": "application/json"}

    async def post(session, body: bytes) -> dict | None:
        if client == "httpx":
            r = await session.post(url, content=body, headers=headers)
            return r.json() if r.status_code == 200 else None
        async with session.post(url, data=body, headers=headers) as r:
            return await r.json() if r.status == 200 else None

    async def worker(session) -> None:
        nonlocal failures
        while not queue.empty():
            body = queue.get_nowait()
            start = time.perf_counter()
            try:
                answer = await post(session, body)
            except Exception:  # noqa: BLE001 - any transport error is a failed request
                answer = None
            if answer is None:
                failures += 1
                continue
            latencies.append((time.perf_counter() - start) * 1e3)
            server.append(answer["latency_ms"])

    cpu = time.process_time()
    async with open_session(client, concurrency) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {"wall": wall, "lat": latencies, "server": server, "failed": failures,
            "client_cpu": time.process_time() - cpu}


def open_session(client: str, concurrency: int):
    """An HTTP client session holding ``concurrency`` keep-alive connections: aiohttp (the
    default, lighter) or httpx."""
    if client == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        return httpx.AsyncClient(timeout=300, limits=limits)
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency),
                                 timeout=aiohttp.ClientTimeout(total=300))


def server_cpu_s(replica_pid: int) -> dict[str, float]:
    """CPU seconds so far of Serve's HTTP proxy and of the fused replica (found among this
    driver's child processes, so another Ray instance on the machine is never counted)."""
    import importlib

    import ray  # noqa: F401 - puts the psutil Ray ships (ray/thirdparty_files) on sys.path

    psutil = importlib.import_module("psutil")  # after ray: not a dependency of skelray's own

    out = {"proxy": 0.0, "replica": 0.0}
    for proc in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(proc.cmdline())
            times = proc.cpu_times()
        except psutil.Error:
            continue
        if proc.pid == replica_pid:
            out["replica"] += times.user + times.system
        elif "ProxyActor" in cmd:
            out["proxy"] += times.user + times.system
    return out


class InProcess:
    """The in-process ensemble with one torch thread: clips/s at a batch size, and the median ms
    of a one-clip call. Measured between the endpoint's rounds, so drifting load hits both."""

    def __init__(self, bundle_path: Path, clips: list[np.ndarray]) -> None:
        import torch

        from skelray.export import load_bundle

        torch.set_num_threads(1)
        self.bundle, self.clips = load_bundle(bundle_path), clips

    def clips_per_s(self, b: int, seconds: float) -> float:
        batch = [self.clips[i % len(self.clips)] for i in range(b)]
        self.bundle.predict(batch)  # warm-up
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or n < 3:
            self.bundle.predict(batch)
            n += 1
        return n * b / (time.perf_counter() - start)

    def one_clip_ms(self, repeats: int) -> float:
        single = []
        for i in range(repeats):
            start = time.perf_counter()
            self.bundle.predict([self.clips[i % len(self.clips)]])
            single.append((time.perf_counter() - start) * 1e3)
        return statistics.median(single)


async def get_p50(url: str, n: int, client: str) -> float:
    """Median ms of ``GET url`` one at a time: the HTTP client and Serve's proxy with no model."""
    lat = []
    async with open_session(client, 1) as session:
        for _ in range(n):
            start = time.perf_counter()
            if client == "httpx":
                (await session.get(url)).raise_for_status()
            else:
                async with session.get(url) as r:
                    r.raise_for_status()
                    await r.read()
            lat.append((time.perf_counter() - start) * 1e3)
    return statistics.median(lat)


def batch_counts(graph: str, member: str) -> tuple[int, int, int]:
    """(forward passes, clips, pid) so far of the fused replica, or of the first member's replica."""
    from ray import serve

    name = "Ingress" if graph == "fused" else member
    stats = serve.get_deployment_handle(name, app_name=graph).stats.remote().result()
    return stats["forwards"], stats["clips"], stats["pid"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, help="bundle to serve (default: train and export the demo)")
    parser.add_argument("--quick", action="store_true", help="fewer requests: a smoke run")
    parser.add_argument("--requests", type=int,
                        help="requests per level and graph, at least 2 x the concurrency (default 256, quick 128)")
    parser.add_argument("--frames", type=int, default=40,
                        help="frames per request clip (resampled by the model)")
    parser.add_argument("--client", choices=("aiohttp", "httpx"), default="aiohttp",
                        help="the load generator's HTTP client (it shares the cores with the server)")
    parser.add_argument("--replicas", type=int, default=1,
                        help="replicas of the fused deployment (each one torch thread); Serve's "
                             "RAY_SERVE_* environment settings are read from this process's environment")
    opts = parser.parse_args()
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")

    import ray
    from ray import serve

    from skelray.data import synthetic
    from skelray.export import read_manifest
    from skelray.serve import app

    # The demo sweep is a test fixture, tests/_demo.py: its folder goes on sys.path to import it.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _demo import demo_bundle

    base_requests = opts.requests or (128 if opts.quick else 256)
    rounds = 1 if opts.quick else 2
    cores = os.cpu_count() or 1
    load_start = os.getloadavg()[0]
    ray.init(address="local", num_cpus=cores, include_dashboard=False, logging_level="WARNING",
             log_to_driver=False)
    try:
        bundle = opts.bundle or demo_bundle(Path(tempfile.mkdtemp(prefix="bench-serve-")))
        manifest = read_manifest(bundle)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        # Both graphs live at once; model replicas reserve a quarter core each so both fit on two
        # cores (each still runs one torch thread, the figure compared in-process below).
        common = {"bundle": str(bundle), "num_cpus": 0.25}
        for graph in GRAPHS:
            replicas = opts.replicas if graph == "fused" else 1
            serve.run(app({**common, "graph": graph, "replicas": replicas}), name=graph, route_prefix=f"/{graph}")
        clips = [s.keypoints[:, : opts.frames] for s in synthetic(manifest.num_classes, 8, manifest.layout,
                                                                  opts.frames, seed=1).sequences]
        urls = {g: f"http://127.0.0.1:{port}/{g}/v1/predict" for g in GRAPHS}
        warm = [json.dumps({"keypoints": c.tolist()}).encode() for c in clips[:16]]
        for url in urls.values():  # warm-up: first requests pay for connections and lazy imports
            asyncio.run(load(url, warm, 8, opts.client))
        results: dict[tuple[str, int], dict[str, list]] = {}
        model = InProcess(Path(bundle), clips)
        local: dict[int, float] = {}
        floor: dict[str, float] = {}  # GET /v1/models p50 per graph
        seconds = 1.0 if opts.quick else 2.0
        single_ms = model.one_clip_ms(20)
        for c in CONCURRENCY:
            n = max(base_requests, 2 * c)
            bodies = [json.dumps({"keypoints": clips[i % len(clips)].tolist()}).encode() for i in range(n)]
            for r in range(rounds):
                for g in (GRAPHS if r % 2 == 0 else GRAPHS[::-1]):
                    before = batch_counts(g, manifest.members[0].name)
                    cpu_before = server_cpu_s(before[2])
                    got = asyncio.run(load(urls[g], bodies[r::rounds], c, opts.client))
                    after = batch_counts(g, manifest.members[0].name)
                    cpu_after = server_cpu_s(before[2])
                    acc = results.setdefault((g, c), {"wall": [], "lat": [], "server": [], "failed": [], "n": [],
                                                      "forwards": [], "clips": [], "client_cpu": [],
                                                      "proxy_cpu": [], "replica_cpu": []})
                    acc["client_cpu"].append(got["client_cpu"])
                    for part in ("proxy", "replica"):
                        acc[f"{part}_cpu"].append(cpu_after[part] - cpu_before[part])
                    acc["forwards"].append(after[0] - before[0])
                    acc["clips"].append(after[1] - before[1])
                    for key in ("lat", "server"):
                        acc[key] += got[key]
                    acc["wall"].append(got["wall"])
                    acc["failed"].append(got["failed"])
                    acc["n"].append(len(got["lat"]))
                local[c] = max(local.get(c, 0.0), model.clips_per_s(c, seconds))
                if c == 1:
                    single_ms = min(single_ms, model.one_clip_ms(20))
                    for g in GRAPHS:
                        floor[g] = min(floor.get(g, 1e9),
                                       asyncio.run(get_p50(urls[g].replace("/predict", "/models"), 40,
                                                                       opts.client)))
        serve.shutdown()
    finally:
        ray.shutdown()
    load_end = os.getloadavg()[0]

    def rps(g: str, c: int) -> float:
        return sum(results[(g, c)]["n"]) / sum(results[(g, c)]["wall"])

    console.print(f"cores {cores}, load average {load_start:.1f} at start and {load_end:.1f} at end, "
                  f"{base_requests} requests (at least 2 x concurrency) per level and graph in {rounds} round(s); "
                  f"in-process one clip: {single_ms:.1f} ms (p50)")
    serve_env = {k: v for k, v in os.environ.items() if k.startswith("RAY_SERVE_")}
    if opts.replicas > 1 or serve_env:
        console.print(f"fused replicas: {opts.replicas} (clips / forward and the replica's CPU are one replica's); "
                      f"Serve settings from the environment: {serve_env or 'none'}")
    table = Table(title=f"{len(manifest.members)} member(s), one clip per request, loopback HTTP")
    for col in ("concurrency", "graph", "req/s", "p50 ms", "p99 ms", "failed", "clips / forward",
                "in-process clips/s (batch = conc.)", "endpoint / in-process", "fused / per-member"):
        table.add_column(col, justify="right")
    for c in CONCURRENCY:
        for g in GRAPHS:
            lat = results[(g, c)]["lat"]
            table.add_row(str(c), g, f"{rps(g, c):.1f}", f"{percentile(lat, 50):.1f}", f"{percentile(lat, 99):.1f}",
                          str(sum(results[(g, c)]["failed"])),
                          f"{sum(results[(g, c)]['clips']) / max(1, sum(results[(g, c)]['forwards'])):.1f}",
                          f"{local[c]:.1f}" if g == "fused" else "",
                          f"{rps(g, c) / local[c]:.2f}x",
                          f"{rps('fused', c) / rps('per-member', c):.2f}x" if g == "fused" else "")
    console.print(table)
    hops = Table(title="where the median request's time goes at concurrency 1 (ms)")
    for col in ("graph", "client p50", "HTTP client + proxy", "GET /v1/models p50", "replica beyond the model",
                "model in-process", "added by serving (p50 - in-process)"):
        hops.add_column(col, justify="right")
    for g in GRAPHS:
        client, server = percentile(results[(g, 1)]["lat"], 50), percentile(results[(g, 1)]["server"], 50)
        hops.add_row(g, f"{client:.1f}", f"{client - server:.1f}", f"{floor[g]:.1f}", f"{server - single_ms:.1f}",
                     f"{single_ms:.1f}", f"{client - single_ms:.1f}")
    console.print(hops)
    budget = Table(title=f"fused graph: CPU ms per request ({opts.client} client; {cores} cores)")
    for col in ("concurrency", "req/s", "client", "proxy", "replica", "model in-process (batch = conc.)",
                "replica beyond the model", "total", "cores busy"):
        budget.add_column(col, justify="right")
    for c in CONCURRENCY:
        acc = results[("fused", c)]
        n = max(1, sum(acc["n"]))
        part = {k: 1e3 * sum(acc[f"{k}_cpu"]) / n for k in ("client", "proxy", "replica")}
        total = sum(part.values())
        budget.add_row(str(c), f"{rps('fused', c):.1f}", *(f"{part[k]:.1f}" for k in ("client", "proxy", "replica")),
                       f"{1e3 / local[c]:.1f}", f"{part['replica'] - 1e3 / local[c]:.1f}", f"{total:.1f}",
                       f"{total * rps('fused', c) / 1e3:.2f}")
    console.print(budget)


if __name__ == "__main__":
    main()
