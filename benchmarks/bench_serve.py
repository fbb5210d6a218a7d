"""The serving path's cost over loopback HTTP: both graphs, both ingresses and the in-process ensemble, in one run.

    .venv/bin/python benchmarks/bench_serve.py --quick           # about 5 minutes on 2 cores
    .venv/bin/python benchmarks/bench_serve.py --bundle BUNDLE   # your own bundle

Two applications serve the same bundle at once: the default ``fused`` graph (the ingress
replica batches clips and runs every member) and the ``per-member`` graph (Ingress ->
Preprocess -> one deployment per member -> Ensemble), on a Ray with direct ingress on. Three
endpoints are measured: the fused graph on its ingress replica's own port, reached through
``skelray.serve.front`` (``direct``: what ``skelray serve`` gives on a Ray it starts), the fused graph through Serve's HTTP proxy
(``proxy``: a cluster's Serve, or ``--ingress proxy``), and the per-member graph through the
proxy. At concurrency 1, 8, 32 and 64 each gets the same bounded number of one-clip JSON
requests, in alternating rounds so drifting load on a shared machine hits all alike; the table
gives requests/s, p50 and p99 latency and failed requests. The in-process ensemble
(``Bundle.predict``: preprocessing, the fused members, weighted logits) runs between those
rounds at batch sizes equal to the concurrency levels with as many torch threads as the fused
replicas have in all (one each; ``--replicas``, default 1) (the best of its rounds, and of the one-clip calls the fastest
median, so the ratios never flatter the endpoint). The second table splits the median request
at concurrency 1 into where its time goes: the HTTP client (and Serve's proxy, on that path:
the client's latency minus the ``latency_ms`` the ingress reports), the replica's own work
beyond the model (parsing, batching wait, the graph's hops), and the model in-process;
``GET /v1/models`` (no model, no body) is the floor any request pays on that path.
The client runs on the same machine: on two cores it takes CPU from the server, so absolute
figures are pessimistic; the ratios are what to read. The load generator is aiohttp by default
(``--client httpx`` for the other; aiohttp is a Ray dependency). The third table is the fused
graph's CPU budget on each ingress: CPU milliseconds per request of the client (this process),
Serve's HTTP proxy, the front and the fused replica (its process's CPU time, every thread), against the
in-process model's CPU per clip (every thread); CPU time per request moves far less with other jobs' load than
latency does. Without ``--bundle`` the demo sweep is trained and exported first (about a minute).
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
# (graph, ingress): the fused graph on its replica's own port (what `skelray serve` gives on a
# Ray it starts) and through Serve's proxy (a cluster), and the per-member graph by the proxy.
ENDPOINTS = (("fused", "direct"), ("fused", "proxy"), ("per-member", "proxy"))
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


def server_cpu_s() -> dict[str, float]:
    """CPU seconds so far of Serve's HTTP proxy, of the front and of the fused replicas (found
    among this driver's child processes, so another Ray instance on the machine is never counted)."""
    import importlib

    import ray  # noqa: F401 - puts the psutil Ray ships (ray/thirdparty_files) on sys.path

    psutil = importlib.import_module("psutil")  # after ray: not a dependency of skelray's own

    out = {"proxy": 0.0, "front": 0.0, "replica": 0.0}
    for proc in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(proc.cmdline())
            times = proc.cpu_times()
        except psutil.Error:
            continue
        if "ServeReplica:fused:Ingress" in cmd:
            out["replica"] += times.user + times.system
        elif "ProxyActor" in cmd:
            out["proxy"] += times.user + times.system
        elif "ray::Front" in cmd:
            out["front"] += times.user + times.system
    return out


class InProcess:
    """The in-process ensemble with ``threads`` torch threads (as many as the fused replicas have
    in all): clips/s at a batch size, and the median ms of a one-clip call. Measured between the
    endpoint's rounds, so drifting load hits both."""

    def __init__(self, bundle_path: Path, clips: list[np.ndarray], threads: int) -> None:
        import torch

        from skelray.export import load_bundle

        torch.set_num_threads(threads)
        self.bundle, self.clips = load_bundle(bundle_path), clips
        self.cpu_ms: dict[int, float] = {}  # batch size -> CPU ms per clip (every thread), fastest round

    def clips_per_s(self, b: int, seconds: float) -> float:
        batch = [self.clips[i % len(self.clips)] for i in range(b)]
        self.bundle.predict(batch)  # warm-up
        n, start, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds or n < 3:
            self.bundle.predict(batch)
            n += 1
        self.cpu_ms[b] = min(self.cpu_ms.get(b, 1e9), 1e3 * (time.process_time() - cpu) / (n * b))
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


def batch_counts(graph: str, member: str) -> tuple[int, int]:
    """(forward passes, clips) so far of a fused replica, or of the first member's replica (with
    several fused replicas, of whichever answers: the counts are then not reported)."""
    from ray import serve

    name = "Ingress" if graph == "fused" else member
    stats = serve.get_deployment_handle(name, app_name=graph).stats.remote().result()
    return stats["forwards"], stats["clips"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, help="bundle to serve (default: train and export the demo)")
    parser.add_argument("--quick", action="store_true", help="fewer requests: a smoke run")
    parser.add_argument("--requests", type=int,
                        help="requests per level and endpoint, at least 2 x the concurrency (default 256, quick 128)")
    parser.add_argument("--frames", type=int, default=40,
                        help="frames per request clip (resampled by the model)")
    parser.add_argument("--client", choices=("aiohttp", "httpx"), default="aiohttp",
                        help="the load generator's HTTP client (it shares the cores with the server)")
    parser.add_argument("--replicas", type=int, default=1,
                        help="replicas of the fused deployment (each one torch thread; the front and the "
                             "proxy spread the load over them); Serve's other RAY_SERVE_* settings are read "
                             "from this process's environment")
    opts = parser.parse_args()

    from ray import serve

    from skelray.data import synthetic
    from skelray.export import read_manifest
    from skelray.runtime import start_ray
    from skelray.serve import app, direct, front

    # The demo sweep is a test fixture, tests/_demo.py: its folder goes on sys.path to import it.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _demo import demo_bundle

    base_requests = opts.requests or (128 if opts.quick else 256)
    rounds = 1 if opts.quick else 2
    cores = os.cpu_count() or 1
    load_start = os.getloadavg()[0]
    # Direct ingress on (Ray's port range): each app's ingress replica also answers on its own
    # port, so one Serve measures the fused graph both ways and the per-member graph by the proxy.
    start_ray(num_cpus=cores, env=direct.environment())
    import ray

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
        direct_ports = direct.ingress_ports("fused")
        assert len(direct_ports) == opts.replicas, f"fused replicas' ports: {direct_ports}"
        # Direct: through the front on a port of its own, as `skelray serve` puts it on --port.
        front_port = free_port()
        fronted = front.start("127.0.0.1", front_port, "fused")  # noqa: F841 - the handle keeps it alive
        urls = {("fused", "direct"): f"http://127.0.0.1:{front_port}/fused/v1/predict"}
        urls |= {(g, "proxy"): f"http://127.0.0.1:{port}/{g}/v1/predict" for g in GRAPHS}
        warm = [json.dumps({"keypoints": c.tolist()}).encode() for c in clips[:16]]
        for u in urls.values():  # warm-up: first requests pay for connections and lazy imports
            asyncio.run(load(u, warm, 8, opts.client))
        results: dict[tuple[tuple[str, str], int], dict[str, list]] = {}
        model = InProcess(Path(bundle), clips, threads=opts.replicas)
        local: dict[int, float] = {}
        floor: dict[tuple[str, str], float] = {}  # GET /v1/models p50 per endpoint
        seconds = 1.0 if opts.quick else 2.0
        single_ms = model.one_clip_ms(20)
        for c in CONCURRENCY:
            n = max(base_requests, 2 * c)
            bodies = [json.dumps({"keypoints": clips[i % len(clips)].tolist()}).encode() for i in range(n)]
            for r in range(rounds):
                for e in (ENDPOINTS if r % 2 == 0 else ENDPOINTS[::-1]):
                    before = batch_counts(e[0], manifest.members[0].name)
                    cpu_before = server_cpu_s()
                    got = asyncio.run(load(urls[e], bodies[r::rounds], c, opts.client))
                    after = batch_counts(e[0], manifest.members[0].name)
                    cpu_after = server_cpu_s()
                    acc = results.setdefault((e, c), {"wall": [], "lat": [], "server": [], "failed": [], "n": [],
                                                      "forwards": [], "clips": [], "client_cpu": [],
                                                      "proxy_cpu": [], "front_cpu": [], "replica_cpu": []})
                    acc["client_cpu"].append(got["client_cpu"])
                    for part in ("proxy", "front", "replica"):
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
                    for e in ENDPOINTS:
                        floor[e] = min(floor.get(e, 1e9),
                                       asyncio.run(get_p50(urls[e].replace("/predict", "/models"), 40,
                                                           opts.client)))
        serve.shutdown()
    finally:
        ray.shutdown()
    load_end = os.getloadavg()[0]
    report(results, local, model.cpu_ms, floor, single_ms, opts, manifest, cores, base_requests, rounds,
           (load_start, load_end))


def name(e: tuple[str, str]) -> str:
    return f"{e[0]}, {e[1]}"


def report(results, local, model_cpu_ms, floor, single_ms, opts, manifest, cores, base_requests, rounds,
           loads) -> None:
    def rps(e: tuple[str, str], c: int) -> float:
        return sum(results[(e, c)]["n"]) / sum(results[(e, c)]["wall"])

    console.print(f"cores {cores}, load average {loads[0]:.1f} at start and {loads[1]:.1f} at end, "
                  f"{base_requests} requests (at least 2 x concurrency) per level and endpoint in {rounds} round(s); "
                  f"in-process one clip: {single_ms:.1f} ms (p50)")
    serve_env = {k: v for k, v in os.environ.items() if k.startswith("RAY_SERVE_")}
    if opts.replicas > 1 or serve_env:
        console.print(f"fused replicas: {opts.replicas}, one torch thread each; the in-process ensemble runs "
                      f"{opts.replicas} torch threads; Serve settings from the environment: {serve_env or 'none'}")
    per_member = ("per-member", "proxy")
    table = Table(title=f"{len(manifest.members)} member(s), one clip per request, loopback HTTP; "
                        "direct: through the front to the ingress replica's own port, proxy: through Serve's HTTP proxy")
    for col in ("concurrency", "graph, ingress", "req/s", "p50 ms", "p99 ms", "failed", "clips / forward",
                "in-process clips/s (batch = conc.)", "endpoint / in-process", "/ per-member"):
        table.add_column(col, justify="right")
    for c in CONCURRENCY:
        for e in ENDPOINTS:
            acc = results[(e, c)]
            table.add_row(str(c), name(e), f"{rps(e, c):.1f}", f"{percentile(acc['lat'], 50):.1f}",
                          f"{percentile(acc['lat'], 99):.1f}", str(sum(acc["failed"])),
                          f"{sum(acc['clips']) / max(1, sum(acc['forwards'])):.1f}"
                          if e[0] != "fused" or opts.replicas == 1 else "-",
                          f"{local[c]:.1f}" if e == ENDPOINTS[0] else "",
                          f"{rps(e, c) / local[c]:.2f}x",
                          f"{rps(e, c) / rps(per_member, c):.2f}x" if e != per_member else "")
    console.print(table)
    hops = Table(title="where the median request's time goes at concurrency 1 (ms)")
    for col in ("graph, ingress", "client p50", "HTTP client (+ proxy)", "GET /v1/models p50",
                "replica beyond the model", "model in-process", "added by serving (p50 - in-process)"):
        hops.add_column(col, justify="right")
    for e in ENDPOINTS:
        client, server = percentile(results[(e, 1)]["lat"], 50), percentile(results[(e, 1)]["server"], 50)
        hops.add_row(name(e), f"{client:.1f}", f"{client - server:.1f}", f"{floor[e]:.1f}",
                     f"{server - single_ms:.1f}", f"{single_ms:.1f}", f"{client - single_ms:.1f}")
    console.print(hops)
    def model_cpu(c: int) -> float:  # CPU ms per clip in-process (every thread) at batch = concurrency
        return model_cpu_ms[c]

    budget = Table(title=f"fused graph: CPU ms per request ({opts.client} client; {cores} cores)")
    for col in ("concurrency", "ingress", "req/s", "client", "proxy", "front", "replica",
                "model CPU in-process (batch = conc.)",
                "replica beyond the model", "total", "cores busy"):
        budget.add_column(col, justify="right")
    for c in CONCURRENCY:
        for e in ENDPOINTS[:2]:
            acc = results[(e, c)]
            n = max(1, sum(acc["n"]))
            part = {k: 1e3 * sum(acc[f"{k}_cpu"]) / n for k in ("client", "proxy", "front", "replica")}
            total = sum(part.values())
            budget.add_row(str(c), e[1], f"{rps(e, c):.1f}",
                           *(f"{part[k]:.1f}" for k in ("client", "proxy", "front", "replica")),
                           f"{model_cpu(c):.1f}", f"{part['replica'] - model_cpu(c):.1f}", f"{total:.1f}",
                           f"{total * rps(e, c) / 1e3:.2f}")
    console.print(budget)


if __name__ == "__main__":
    main()
