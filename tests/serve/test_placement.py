"""Serving never hangs silently: a plan is fitted to the local node, refused on a cluster too
small for it (naming the deployment, what it asks, the largest node, the flag), and a
deployment that fails to start ends `skelray serve` with its name and Ray's reason.

The arithmetic is checked without Ray; then a real one-CPU Ray cluster (``ray.cluster_utils``)
is given plans it cannot hold and a bundle whose replicas cannot load, through the real CLI.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster
from typer.testing import CliRunner

from skelray.cli import app as cli
from skelray.errors import ConfigError
from skelray.export import read_manifest
from skelray.runtime import free_port
from skelray.serve import ServeArgs, plan
from skelray.serve.placement import Node, ServeStartError, asks, check_fits, fit_to_node


def _args(bundle: Path, **kw) -> ServeArgs:
    return ServeArgs.parse({"bundle": str(bundle), **kw})


@pytest.mark.parametrize(("cpus", "replicas", "each"), [(2, 2, 1), (3, 3, 1), (16, 8, 2), (1, 1, 1)])
def test_the_fused_default_runs_a_replica_per_core_of_the_local_node(bundle, cpus, replicas, each):
    manifest = read_manifest(bundle)
    fitted, note = fit_to_node(_args(bundle), manifest, Node(cpus=cpus, gpus=0))
    assert (fitted.replicas, fitted.num_cpus) == (replicas, each)
    if cpus > 1:
        assert f"{replicas} fused replicas of {each} CPU and {each} torch thread(s) each" in note
        check_fits(plan(fitted, manifest), manifest, [Node(cpus, 0)])
    else:
        assert note is None


@pytest.mark.parametrize("given", [{"replicas": 1}, {"num_cpus": 2}, {"graph": "per-member"},
                                   {"autoscaling": {"min_replicas": 1, "max_replicas": 2}}])
def test_a_layout_the_user_gave_is_kept(bundle, given):
    args = _args(bundle, **given)
    fitted, note = fit_to_node(args, read_manifest(bundle), Node(cpus=4, gpus=0))
    assert fitted == args and note is None


def test_a_per_member_plan_too_big_for_the_local_node_is_shared_out(bundle):
    manifest = read_manifest(bundle)
    args = _args(bundle, graph="per-member", replicas=2)  # 2 members x 2 replicas x 1 CPU + 0.3
    fitted, note = fit_to_node(args, manifest, Node(cpus=2, gpus=0))
    assert fitted.num_cpus == pytest.approx(0.42)  # (2 - 3 x 0.1) / 4, rounded down
    assert "asked for 4.3" in note and "4 model replica(s) gets 0.42 CPU and 1 torch thread" in note
    wanted = asks(plan(fitted, manifest), {m.name for m in manifest.members})
    assert sum(a.replicas * a.cpus for a in wanted) <= 2
    check_fits(plan(fitted, manifest), manifest, [Node(2, 0)])  # and it fits


def test_a_replica_larger_than_any_node_is_refused_naming_deployment_and_flag(bundle):
    manifest = read_manifest(bundle)
    with pytest.raises(ConfigError) as info:
        check_fits(plan(_args(bundle, num_cpus=4), manifest), manifest, [Node(2, 0), Node(1, 0)])
    text = str(info.value)
    assert text.startswith("--num-cpus: deployment Ingress asks 4 CPU per replica; the largest node has 2 CPU")
    assert "pass --num-cpus 2 or less" in text
    with pytest.raises(ConfigError, match="--num-gpus: deployment Ingress asks 1 CPU and 1 GPU.*"
                                          "pass --num-gpus 0 or less"):
        fit_to_node(_args(bundle, graph="fused", num_gpus=1), manifest, Node(2, 0))


def test_a_plan_that_fits_no_node_set_in_all_says_what_to_share(bundle):
    manifest = read_manifest(bundle)
    member = manifest.members[0].name
    # The members take both nodes whole: the routing deployment placed after them is left out.
    with pytest.raises(ConfigError, match=r"deployment Ingress \(1 x 0.1 CPU\) does not fit beside the rest.*"
                                          rf"asks 2.3 CPU in all \(Ingress 0.1, .*{member} 1, .*\), "
                                          r"the cluster has 2 on 2 node.*pass --num-cpus 0.85"):
        check_fits(plan(_args(bundle, graph="per-member"), manifest), manifest, [Node(1, 0), Node(1, 0)])


# -- a real Ray cluster that is too small --------------------------------------------------------

@pytest.fixture(scope="module")
def small_cluster():
    c = Cluster(initialize_head=True, connect=False,
                head_node_args={"num_cpus": 1, "include_dashboard": False, "object_store_memory": 150 * 2**20})
    yield c
    if ray.is_initialized():
        ray.shutdown()
    c.shutdown()


def test_a_cluster_too_small_for_the_plan_gets_the_clear_error_within_a_minute(small_cluster, bundle):
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["serve", str(bundle), "--address", small_cluster.address, "--num-cpus",
                                      "2", "--port", str(free_port())], env={"COLUMNS": "200"})
    assert isinstance(result.exception, ConfigError), result.output
    assert "deployment Ingress asks 2 CPU per replica; the largest node has 1 CPU" in str(result.exception)
    assert "--num-cpus 1 or less" in str(result.exception)
    result = CliRunner().invoke(cli, ["serve", str(bundle), "--address", small_cluster.address, "--graph",
                                      "per-member", "--port", str(free_port())], env={"COLUMNS": "200"})
    assert isinstance(result.exception, ConfigError), result.output
    assert "does not fit beside the rest of the plan" in str(result.exception)
    assert "pass --num-cpus 0.35" in str(result.exception)
    assert time.monotonic() - started < 60
    assert not ray.is_initialized()  # the CLI let go of the cluster


def test_a_deployment_that_cannot_start_ends_serve_with_its_name_and_rays_reason(small_cluster, bundle,
                                                                                  tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    weights = broken / read_manifest(broken).members[1].weights_file
    weights.write_bytes(weights.read_bytes()[:-8])  # truncated after export: the replica refuses it
    result = CliRunner().invoke(cli, ["serve", str(broken), "--address", small_cluster.address,
                                      "--port", str(free_port()), "--start-timeout-s", "120"],
                                env={"COLUMNS": "200"})
    assert isinstance(result.exception, ServeStartError), result.output
    text = str(result.exception)
    assert "application skelray is DEPLOY_FAILED" in text
    assert "deployment Ingress is DEPLOY_FAILED" in text and "does not match the manifest's sha256" in text
    assert "Ingress: UPDATING" in result.output  # the states were reported while it tried


# -- `skelray serve` as a user runs it: a 3-member bundle on this machine ------------------------

@pytest.mark.parametrize("flags", [
    pytest.param([], id="no-flags"),
    # The plan that hung before: 3 members x 1 CPU + 0.3 on a 2-CPU node, now shared out.
    pytest.param(["--graph", "per-member", "--local-cpus", "2"], id="per-member-on-2-cpus",
                 marks=pytest.mark.slow),
    pytest.param(["--ingress", "proxy"], id="through-serves-proxy", marks=pytest.mark.slow),
])
def test_serve_a_three_member_bundle_with_no_flags_is_healthy_and_refuses_bad_requests(
        tmp_path_factory, flags):
    import json
    import os
    import re
    import signal
    import subprocess
    import sys
    import threading

    import httpx
    import numpy as np
    from _demo import three_member_bundle

    from skelray.data import synthetic
    from skelray.export import load_bundle

    path = three_member_bundle(tmp_path_factory.getbasetemp() / "skelray-demo")
    port = free_port()
    skelray = Path(sys.executable).with_name("skelray")
    proc = subprocess.Popen([str(skelray), "serve", str(path), "--port", str(port), *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    url = f"http://127.0.0.1:{port}"
    # Its output, read as it comes: the command says it is serving only once every replica runs,
    # while /healthz may answer as soon as the first does.
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, "".join(lines)
            try:
                if (httpx.get(f"{url}/healthz", timeout=5).status_code == 200
                        and any(line.startswith("serving ") for line in lines)):
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "not healthy within 240 s"
            time.sleep(1)
        health = httpx.get(f"{url}/healthz").json()
        assert len(health["members"]) == 3 and set(health["members"].values()) == {"ok"}
        clip = synthetic(4, 1, "kinect_v1_20", 20, seed=3).sequences[0].keypoints
        r = httpx.post(f"{url}/v1/predict?top_k=2", json={"keypoints": clip.tolist()}, timeout=60)
        assert r.status_code == 200, r.text
        offline = load_bundle(path).predict([clip])["probabilities"][0]
        np.testing.assert_allclose(r.json()["predictions"][0]["probabilities"], offline, rtol=1e-4, atol=1e-6)
        for body, ctype, status in [(b"{", "application/json", 400),
                                    (json.dumps({"keypoints": clip[:, :, :3].tolist()}).encode(),
                                     "application/json", 422),
                                    (b"x", "text/plain", 415)]:
            r = httpx.post(f"{url}/v1/predict", content=body, headers={"content-type": ctype}, timeout=60)
            assert r.status_code == status, r.text
            assert r.json()["error"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
    out = "".join(lines)
    assert "Ingress: HEALTHY" in out  # each deployment's state was reported while starting
    # --port forwards straight to the ingress replicas unless the proxy was asked for.
    said = r"through\s+Serve's\s+proxy" if "proxy" in flags else r"forwarded\s+straight\s+to\s+the\s+ingress\s+replica"
    assert re.search(said, out), out
    if "per-member" in flags:
        assert "gets 0.56 CPU and 1 torch thread" in out
    elif (os.cpu_count() or 1) > 1:  # the fused replicas follow the cores
        assert re.search(r"\d+ fused replicas of \d+ CPU", out), out
    assert "stopping" in out


def test_a_deployment_still_not_running_after_the_timeout_is_named(small_cluster):
    from ray import serve

    from skelray.serve.placement import wait_until_running

    @serve.deployment(ray_actor_options={"num_cpus": 0, "resources": {"no-such-node-resource": 1}})
    class Stuck:
        def __call__(self) -> str:
            return "never"

    ray.init(address=small_cluster.address, logging_level="WARNING", log_to_driver=False)
    lines: list[str] = []
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
        serve.run_many([serve.RunTarget(Stuck.bind(), name="stuck", route_prefix=None)],
                       wait_for_ingress_deployment_creation=False, wait_for_applications_running=False)
        started = time.monotonic()
        with pytest.raises(ServeStartError, match=r"application stuck is still DEPLOYING after 4 s; "
                                                  r"deployment Stuck is UPDATING"):
            wait_until_running("stuck", 4, lines.append)
        assert time.monotonic() - started < 30
        assert any(line.startswith("Stuck: UPDATING") for line in lines), lines
    finally:
        serve.shutdown()
        ray.shutdown()
