"""A real Ray cluster on this machine (cluster/local.sh: a head with no CPUs plus one worker
node, token auth on), driven only through the `skelray sweep submit|status|logs|stop` CLI.

Teardown is `cluster/local.sh down`, which stops exactly this cluster's processes by id (they
carry a marker in their environment), then a check that none is left. Not `ray stop --force`:
that kills every Ray process on the machine, other people's included.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from skelray.deploy.jobs import ClusterError, Jobs, Token
from skelray.runtime import free_port
from skelray.sweep.results import read_results

pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="local.sh reads /proc")]

REPO = Path(__file__).resolve().parents[2]
LOCAL_SH = REPO / "cluster" / "local.sh"
SECRET = "wandb-test-value-do-not-print-7f3a"


@dataclass
class LocalCluster:
    dir: Path
    address: str
    token: str

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_TOKEN")}
        return {**env, "RAY_AUTH_TOKEN": self.token, **extra}


def _marked_pids(cluster_dir: Path) -> list[int]:
    marker = f"SKELRAY_LOCAL_CLUSTER={cluster_dir}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "environ").read_bytes().split(b"\0"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.fixture(scope="module")
def cluster():
    # A short private folder: Ray's socket paths under it must stay within 107 bytes.
    cluster_dir = Path(tempfile.mkdtemp(prefix="skr-", dir="/tmp"))
    token = secrets.token_hex(24)  # this cluster's own token: nothing from ~/.ray is used or written
    c = LocalCluster(cluster_dir, f"http://127.0.0.1:{free_port()}", token)
    up = subprocess.run([str(LOCAL_SH), "up", "--workers", "1", "--worker-cpus", "2", "--object-store-mb", "100",
                         "--dashboard-port", c.address.rsplit(":", 1)[1], "--dir", str(cluster_dir)],
                        env=c.env(), capture_output=True, text=True, timeout=240)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert c.address in up.stdout and "skelray sweep submit" in up.stdout
        yield c
    finally:
        subprocess.run([str(LOCAL_SH), "down", "--dir", str(cluster_dir)], capture_output=True, timeout=120)
        for pid in _marked_pids(cluster_dir):  # only if `down` missed one: ours, by id
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(cluster_dir, ignore_errors=True)


def skelray(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skelray.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def _sweep_file(cluster: LocalCluster, tiny_sweep, name: str, epochs: int) -> Path:
    path = cluster.dir / f"{name}.yaml"
    spec = tiny_sweep(name, "/not/used", train={"epochs": epochs, "batch_size": 8, "latency_batches": [1]},
                      wandb={"mode": "disabled"})
    path.write_text(yaml.safe_dump(spec))
    return path


def test_client_needs_the_clusters_token(cluster, tmp_path):
    env = {k: v for k, v in cluster.env().items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    out = skelray("sweep", "status", "no-such-job", "--address", cluster.address, env=env, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "requires a token and this client has none" in out.stderr
    assert "RAY_AUTH_TOKEN" in out.stderr and "ray get-auth-token" in out.stderr
    with pytest.raises(ClusterError, match="the token from RAY_AUTH_TOKEN was rejected"):
        Jobs(cluster.address, token=Token("not-the-token", "RAY_AUTH_TOKEN"))
    # With the right token the cluster answers: here, that it has no such job.
    with pytest.raises(ClusterError, match="no job 'no-such-job' on this cluster"):
        Jobs(cluster.address, token=Token(cluster.token, "test")).status("no-such-job")


def test_submitted_sweep_succeeds_and_writes_its_results(cluster, tiny_sweep):
    storage = cluster.dir / "runs"
    sweep = _sweep_file(cluster, tiny_sweep, "jobs_ok", epochs=1)
    env = cluster.env(WANDB_API_KEY=SECRET)
    out = skelray("sweep", "submit", str(sweep), "--address", cluster.address, "--storage", str(storage),
                  "--wait", "--timeout", "240", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert SECRET not in out.stdout + out.stderr and "WANDB_API_KEY=***" in out.stdout
    # The id is printed alone on a line; --wait then prints "<id>: <status>" lines.
    job_id = next(line for line in out.stdout.splitlines() if line.startswith("skelray-jobs-ok-") and ":" not in line)
    assert "SUCCEEDED" in out.stdout

    status = skelray("sweep", "status", job_id, "--address", cluster.address, env=env, timeout=60)
    assert status.returncode == 0 and f"{job_id}: SUCCEEDED" in status.stdout
    # --follow streams over a websocket, which must present the token too; it ends with the job.
    logs = skelray("sweep", "logs", job_id, "--follow", "--address", cluster.address, env=env, timeout=60)
    assert logs.returncode == 0, logs.stderr
    assert "t00000-pa_count=1" in logs.stdout and SECRET not in logs.stdout

    trials, epochs = read_results(str(storage / "jobs_ok"))
    assert trials.num_rows == 2
    assert set(trials.column("status").to_pylist()) == {"TERMINATED"}
    assert epochs.num_rows == 2  # 2 trials x 1 epoch


def test_stop_ends_a_running_sweep(cluster, tiny_sweep):
    sweep = _sweep_file(cluster, tiny_sweep, "jobs_stop", epochs=200)
    env = cluster.env()
    out = skelray("sweep", "submit", str(sweep), "--address", cluster.address, "--storage",
                  str(cluster.dir / "runs"), env=env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    job_id = out.stdout.strip().splitlines()[-1]
    jobs = Jobs(cluster.address, token=Token(cluster.token, "test"))
    deadline = time.monotonic() + 120
    while jobs.status(job_id) != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert jobs.status(job_id) == "RUNNING"

    stop = skelray("sweep", "stop", job_id, "--address", cluster.address, env=env, timeout=120)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert f"{job_id}: STOPPED" in stop.stdout
    status = skelray("sweep", "status", job_id, "--address", cluster.address, env=env, timeout=60)
    assert status.returncode == 1 and f"{job_id}: STOPPED" in status.stdout  # not a success
    logs = skelray("sweep", "logs", job_id, "--address", cluster.address, env=env, timeout=60)
    assert "Running entrypoint for job" in logs.stdout and "jobs_stop" in logs.stdout


def test_down_stops_every_process_of_the_cluster(cluster):
    assert _marked_pids(cluster.dir), "the cluster's processes should carry the marker"
    down = subprocess.run([str(LOCAL_SH), "down", "--dir", str(cluster.dir)], capture_output=True, text=True,
                          timeout=120)
    assert down.returncode == 0, down.stderr
    assert _marked_pids(cluster.dir) == []
