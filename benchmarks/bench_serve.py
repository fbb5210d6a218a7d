"""The Serve graph's throughput and latency over loopback HTTP, measured side by side in one run.

    .venv/bin/python benchmarks/bench_serve.py --quick           # about 2 minutes on 2 cores
    .venv/bin/python benchmarks/bench_serve.py --bundle BUNDLE   # your own bundle

Two copies of the application serve the same bundle at once: one with dynamic batching
(``@serve.batch``, up to 32 clips, 5 ms wait), one without (batches of one). At concurrency 1,
8 and 32 each gets the same bounded number of one-clip JSON requests, in alternating rounds so
drifting load on a shared machine hits both alike; the table gives requests/s, p50 and p99
latency, and the batching on/off ratio. Then the endpoint is compared with the in-process
ensemble (``Bundle.predict``: preprocessing, the fused members, weighted logits) at batch
sizes equal to those concurrency levels, with one torch thread, the thread count each member
replica gets. The client runs on the same machine: on two cores it takes CPU from the server,
so the absolute figures are pessimistic; the ratios are what to read.
Without ``--bundle`` the demo sweep is trained and exported first (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

CONCURRENCY = (1, 8, 32)
console = Console(width=150)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


async def load(url: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    """Send every body with ``concurrency`` requests in flight; (wall seconds, latencies in ms)."""
    import httpx

    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    latencies: list[float] = []
    failures = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while not queue.empty():
            body = queue.get_nowait()
            start = time.perf_counter()
            r = await client.post(url, content=body, headers={"content-type": "application/json"})
            latencies.append((time.perf_counter() - start) * 1e3)
            failures += r.status_code != 200

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{failures} of {len(bodies)} requests to {url} failed")
    return wall, latencies


def in_process(bundle_path: Path, clips: list[np.ndarray], batches: tuple[int, ...],
               seconds: float) -> dict[int, float]:
    """Clips per second of the in-process ensemble at each batch size, one torch thread."""
    import torch

    from skelray.export import load_bundle

    torch.set_num_threads(1)
    bundle = load_bundle(bundle_path)
    out = {}
    for b in batches:
        batch = [clips[i % len(clips)] for i in range(b)]
        bundle.predict(batch)  # warm-up
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or n < 3:
            bundle.predict(batch)
            n += 1
        out[b] = n * b / (time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, help="bundle to serve (default: train and export the demo)")
    parser.add_argument("--quick", action="store_true", help="fewer requests: a smoke run")
    parser.add_argument("--requests", type=int, help="requests per level and mode (default 96, quick 32)")
    parser.add_argument("--frames", type=int, default=40,
                        help="frames per request clip (resampled by the model)")
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

    n_requests = opts.requests or (32 if opts.quick else 96)
    rounds = 1 if opts.quick else 2
    cores = os.cpu_count() or 1
    console.print(f"cores {cores}, load average {os.getloadavg()[0]:.1f} at start, {n_requests} requests "
                  f"per level and mode in {rounds} round(s)")
    ray.init(address="local", num_cpus=cores, include_dashboard=False, logging_level="WARNING",
             log_to_driver=False)
    try:
        bundle = opts.bundle or demo_bundle(Path(tempfile.mkdtemp(prefix="bench-serve-")))
        manifest = read_manifest(bundle)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        # Both apps live at once; members reserve a quarter core each so both fit on two cores
        # (a member replica still runs one torch thread, the figure compared in-process below).
        common = {"bundle": str(bundle), "num_cpus": 0.25, "batch_wait_ms": 5}
        for name, batch in (("on", 32), ("off", 1)):
            serve.run(app({**common, "max_batch_size": batch}), name=name, route_prefix=f"/{name}")
        layout = manifest.layout
        clips = [s.keypoints[:, : opts.frames] for s in synthetic(manifest.num_classes, 8, layout,
                                                                  opts.frames,
                                                                  seed=1).sequences]
        bodies = [json.dumps({"keypoints": clips[i % len(clips)].tolist()}).encode()
                  for i in range(n_requests)]
        urls = {m: f"http://127.0.0.1:{port}/{m}/v1/predict" for m in ("on", "off")}
        for url in urls.values():  # warm-up: first requests pay for connections and lazy imports
            asyncio.run(load(url, bodies[:8], 4))
        results: dict[tuple[str, int], dict[str, list[float]]] = {}
        for c in CONCURRENCY:
            for r in range(rounds):
                for m in (("on", "off") if r % 2 == 0 else ("off", "on")):
                    wall, lat = asyncio.run(load(urls[m], bodies[r::rounds] if rounds > 1 else bodies, c))
                    acc = results.setdefault((m, c), {"wall": [], "lat": [], "n": []})
                    acc["wall"].append(wall)
                    acc["lat"] += lat
                    acc["n"].append(len(lat))
        serve.shutdown()
    finally:
        ray.shutdown()
    local = in_process(Path(bundle), clips, CONCURRENCY, seconds=1.0 if opts.quick else 3.0)

    def rps(m: str, c: int) -> float:
        return sum(results[(m, c)]["n"]) / sum(results[(m, c)]["wall"])

    table = Table(title=f"Serve graph, {len(manifest.members)} member(s), "
                        "one clip per request (loopback HTTP)")
    for col in ("concurrency", "batching", "req/s", "p50 ms", "p99 ms", "on/off req/s",
                "in-process clips/s (batch = conc.)", "endpoint / in-process"):
        table.add_column(col, justify="right")
    for c in CONCURRENCY:
        for m in ("on", "off"):
            lat = results[(m, c)]["lat"]
            table.add_row(str(c), m, f"{rps(m, c):.1f}", f"{statistics.median(lat):.1f}",
                          f"{percentile(lat, 99):.1f}",
                          f"{rps('on', c) / rps('off', c):.2f}x" if m == "on" else "",
                          f"{local[c]:.1f}" if m == "on" else "",
                          f"{rps('on', c) / local[c]:.2f}x" if m == "on" else "")
    console.print(table)


if __name__ == "__main__":
    main()
