"""Both Serve graphs over real HTTP on 127.0.0.1: answers equal the offline ensemble's, bad
requests get a 4xx naming the problem, concurrent requests are batched and all answered (64
clients for a bounded time: every answer right, none lost), and a killed member replica is
replaced. One Ray for the module, with direct ingress on, serving the fused graph at /fused and
the per-member graph at /per-member side by side; every test that takes ``served`` runs against
each through Serve's proxy, and against the fused graph's ingress replica on its own port through
the front (direct ingress: what ``skelray serve`` gives on a Ray it starts)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest
import ray
from ray import serve

from skelray.data import read_ucla, synthetic
from skelray.export import Bundle, load_bundle
from skelray.runtime import free_port, start_ray
from skelray.serve import ServeArgs, app, direct, front, plan

ARGS = {"num_cpus": 0.4, "max_batch_size": 8, "batch_wait_ms": 10, "health_check_period_s": 1,
        "health_check_timeout_s": 10, "max_body_mb": 1, "max_frames": 300}


GRAPHS = ("fused", "per-member")
# direct: the fused replica's own HTTP server, reached through the front (skelray.serve.front).
ENDPOINTS = (("fused", "proxy"), ("per-member", "proxy"), ("fused", "direct"))


@dataclass
class Served:
    url: str
    bundle: Bundle
    path: Path
    graph: str  # also the Serve application's name
    ingress: str  # proxy: through Serve's HTTP proxy; direct: the ingress replica's own port


@pytest.fixture(scope="module")
def serving(tmp_path_factory) -> tuple[dict[str, str], Path]:
    """Both graphs of the demo bundle on one private Ray: (base URL per ingress, bundle folder)."""
    from _demo import demo_bundle

    # A private Ray, never a cluster someone else left running on this machine; direct ingress
    # on in its processes only.
    start_ray(num_cpus=2, object_store_memory=200 * 2**20, env=direct.environment())
    assert "RAY_SERVE_ENABLE_DIRECT_INGRESS" not in os.environ  # this process's environment is untouched
    try:
        root = tmp_path_factory.getbasetemp() / "skelray-demo"
        root.mkdir(exist_ok=True)
        path = demo_bundle(root)  # trains the demo sweep on this Ray if no earlier module did
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        for graph in GRAPHS:
            serve.run(app({"bundle": str(path), "graph": graph, **ARGS}), name=graph, route_prefix=f"/{graph}")
        # The fused graph's replica behind the front, as `skelray serve` puts it on --port.
        front_port = free_port()
        fronted = front.start("127.0.0.1", front_port, "fused")
        yield {"proxy": f"http://127.0.0.1:{port}", "direct": f"http://127.0.0.1:{front_port}"}, path
        del fronted
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module", params=ENDPOINTS, ids=lambda e: "-".join(e))
def served(request, serving) -> Served:
    urls, path = serving
    graph, ingress = request.param
    return Served(f"{urls[ingress]}/{graph}", load_bundle(path), path, graph, ingress)


@pytest.fixture(scope="module")
def client(served) -> httpx.Client:
    with httpx.Client(base_url=served.url, timeout=120) as c:
        yield c


def clips(n_per_class: int = 3, seed: int = 7, frames: int = 20) -> list[np.ndarray]:
    return [s.keypoints for s in synthetic(4, n_per_class, "kinect_v1_20", frames, seed).sequences]


def assert_same_as_offline(predictions: list[dict], bundle: Bundle, sent: list[np.ndarray]) -> None:
    offline = bundle.predict(sent, k=3)
    assert len(predictions) == len(sent)
    for got, probs, top in zip(predictions, offline["probabilities"], offline["top_k"]):
        assert got["index"] == int(np.argmax(probs))
        assert got["label"] == bundle.manifest.class_names[got["index"]]
        np.testing.assert_allclose(got["probabilities"], probs, rtol=1e-4, atol=1e-6)
        assert [t["index"] for t in got["top_k"]] == [t["index"] for t in top]


def test_endpoint_matches_the_offline_ensemble_on_synthetic_clips(served, client):
    sent = clips()
    r = client.post("/v1/predict", json={"instances": [c.tolist() for c in sent], "top_k": 3})
    assert r.status_code == 200, r.text
    assert_same_as_offline(r.json()["predictions"], served.bundle, sent)


def test_endpoint_matches_the_offline_ensemble_on_nw_ucla(served, client, ucla_path):
    files = [min(ucla_path.glob(f"a{a:02d}_*_v03.json")) for a in (1, 2, 3, 4, 5, 6, 8, 9, 11, 12)]
    sent = [read_ucla(f).sequences[0].keypoints for f in files]
    for clip in sent:  # one sequence per request: the "keypoints" form
        r = client.post("/v1/predict?top_k=3", json={"keypoints": clip.tolist()})
        assert r.status_code == 200, r.text
        assert_same_as_offline(r.json()["predictions"], served.bundle, [clip])


def test_npy_and_arrow_bodies_answer_like_json(served, client):
    sent = clips(n_per_class=1, seed=11)
    sent = [c[:, :12] for c in sent]  # equal lengths, so they stack into one (N, M, T, V, C) array
    buf = io.BytesIO()
    np.save(buf, np.stack(sent))
    r = client.post("/v1/predict?top_k=3", content=buf.getvalue(),
                    headers={"content-type": "application/x-npy"})
    assert r.status_code == 200, r.text
    assert_same_as_offline(r.json()["predictions"], served.bundle, sent)
    table = pa.table({"keypoints": [c.ravel().tolist() for c in sent],
                      "shape": [list(c.shape) for c in sent]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    r = client.post("/v1/predict?top_k=3", content=sink.getvalue().to_pybytes(),
                    headers={"content-type": "application/vnd.apache.arrow.stream"})
    assert r.status_code == 200, r.text
    assert_same_as_offline(r.json()["predictions"], served.bundle, sent)


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_bad_requests_get_4xx_naming_the_problem_and_nothing_crashes(served, client):
    good = clips(n_per_class=1)[0]
    nan = good.copy()
    nan[0, 3, 5, 2] = np.nan
    cases = [
        (b'{"keypoints": [[[1, 2, 3]', "application/json", 400, "not valid JSON"),
        (json.dumps({"keypoints": good[0].tolist()}).encode(), "application/json", 422, "rank 3"),
        (json.dumps({"keypoints": good[:, :, :15].tolist()}).encode(), "application/json", 422,
         "15 joints per frame, the bundle's layout kinect_v1_20 has 20"),
        (json.dumps({"keypoints": nan.tolist()}).encode(), "application/json", 422,
         "NaN or infinite value at person 0, frame 3, joint 5"),
        (_npy(np.concatenate([good, good])), "application/x-npy", 422, "2 persons, at most 1"),
        (_npy(np.zeros((1, 301, 20, 3), np.float32)), "application/x-npy", 422, "301 frames, at most 300"),
        (_npy(np.zeros((1, 5000, 20, 3), np.float32)), "application/x-npy", 413, "more than the 1,048,576"),
        (b"<xml/>", "application/xml", 415, "unsupported Content-Type"),
    ]
    for body, ctype, status, text in cases:
        r = client.post("/v1/predict", content=body, headers={"content-type": ctype})
        assert r.status_code == status, (text, r.text)
        assert text in r.json()["error"], r.json()
    # A body that announces no length (chunked) is still held to the limit.
    r = client.post("/v1/predict", content=iter([b"x" * 600_000, b"x" * 600_000]),
                    headers={"content-type": "application/x-npy"})
    assert r.status_code == 413
    # Every replica survived: a good request after them is answered.
    r = client.post("/v1/predict", json={"keypoints": good.tolist()})
    assert r.status_code == 200
    assert client.get("/healthz").status_code == 200


def test_models_and_health_endpoints(served, client):
    models = client.get("/v1/models")
    assert models.status_code == 200
    assert models.json() == json.loads(json.dumps(served.bundle.manifest.public()))
    health = client.get("/healthz").json()
    assert health["status"] == "ok"
    assert set(health["members"]) == {m.name for m in served.bundle.manifest.members}
    # The running deployments are exactly those `skelray serve build` lists in its config.
    running = set(serve.status().applications[served.graph].deployments)
    assert running == {p.name for p in plan(ServeArgs.parse({"bundle": str(served.path), "graph": served.graph}),
                                            served.bundle.manifest)}


def forwards(served: Served) -> int:
    """Forward passes so far of the first member (per-member graph) or the fused replica."""
    name = "Ingress" if served.graph == "fused" else served.bundle.manifest.members[0].name
    return serve.get_deployment_handle(name, app_name=served.graph).stats.remote().result()["forwards"]


def test_fifty_concurrent_requests_are_batched_and_all_answered(served):
    sent = clips(n_per_class=13, seed=5)[:50]
    before = forwards(served)

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=served.url, timeout=180, limits=limits) as c:
            return await asyncio.gather(*(c.post("/v1/predict?top_k=3", json={"keypoints": x.tolist()})
                                          for x in sent))

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * 50
    assert_same_as_offline([r.json()["predictions"][0] for r in responses], served.bundle, sent)
    # Dynamic batching: the member ran fewer forward passes than it received clips.
    assert forwards(served) - before < 50


def test_sixty_four_clients_for_a_bounded_time_get_every_answer_right_and_none_lost(served):
    pool = clips(n_per_class=8, seed=21)  # 32 distinct clips, their offline answers known
    offline = served.bundle.predict(pool, k=3)["probabilities"]
    bodies = [json.dumps({"keypoints": c.tolist()}) for c in pool]
    sent: list[int] = []
    answers: dict[int, list[float]] = {}
    failures: list[str] = []

    async def client(i: int, c: httpx.AsyncClient, until: float) -> None:
        n = 0
        while time.monotonic() < until:
            k = (i * 7 + n) % len(pool)
            n += 1
            request_id = len(sent)
            sent.append(k)
            r = await c.post("/v1/predict", content=bodies[k], headers={"content-type": "application/json"})
            if r.status_code != 200:
                failures.append(f"{r.status_code}: {r.text[:200]}")
                continue
            (prediction,) = r.json()["predictions"]
            answers[request_id] = prediction["probabilities"]

    async def run() -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=served.url, timeout=120, limits=limits) as c:
            until = time.monotonic() + 8.0
            await asyncio.gather(*(client(i, c, until) for i in range(64)))

    asyncio.run(run())
    assert not failures, failures[:3]
    assert len(answers) == len(sent) >= 64  # every request answered, none lost
    for request_id, k in enumerate(sent):
        np.testing.assert_allclose(answers[request_id], offline[k], rtol=1e-4, atol=1e-6)


def test_a_killed_member_replica_is_replaced_and_requests_succeed_again(served, client):
    # Fused graph: the members live in the Ingress replica, so that is the one killed.
    member = "Ingress" if served.graph == "fused" else served.bundle.manifest.members[-1].name
    replicas = [a for a in ray.util.list_named_actors(all_namespaces=True)
                if a["namespace"] == "serve" and f"{served.graph}#{member}#" in a["name"]]
    assert len(replicas) == 1
    ray.kill(ray.get_actor(replicas[0]["name"], namespace="serve"), no_restart=True)
    sent = clips(n_per_class=1, seed=3)
    deadline = time.monotonic() + 120
    while True:
        try:
            r = client.post("/v1/predict?top_k=3", json={"instances": [c.tolist() for c in sent]})
        except httpx.TransportError:
            # Direct ingress: the front closes the connection it had to the killed replica.
            assert served.ingress == "direct"
            assert time.monotonic() < deadline, "the front did not reach a replica again within 120 s"
            time.sleep(1)
            continue
        if r.status_code == 200:
            break
        # Unavailable while Serve replaces it: Ingress says 503; with Ingress itself gone, the
        # proxy answers (500 or 503) until the new replica is up.
        assert r.status_code in ((503,) if served.graph == "per-member" else (500, 503)), r.text
        assert time.monotonic() < deadline, "the member was not replaced within 120 s"
        time.sleep(1)
    assert_same_as_offline(r.json()["predictions"], served.bundle, sent)
    now = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
           if a["namespace"] == "serve" and f"{served.graph}#{member}#" in a["name"]]
    assert now and replicas[0]["name"] not in now  # a new replica, not the old one come back


def test_process_settings_for_a_ray_already_running_are_refused(serving):
    from skelray.errors import ConfigError

    with pytest.raises(ConfigError, match="already connected"):
        start_ray(env=direct.environment())  # they could not reach its running processes
