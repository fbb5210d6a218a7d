"""A sweep over a real multi-node Ray cluster on one machine (head + 2 worker nodes).

Trials spread over both workers, each node loads the dataset once for all its trials, and a
worker node removed mid-sweep costs nothing but a restart from the last checkpoint elsewhere.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from skelray.sweep.results import read_results
from skelray.sweep.runner import run_sweep
from skelray.sweep.spec import load_sweep
from skelray.train.data import cache_stats

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, connect=True,
                head_node_args={"num_cpus": 0, "include_dashboard": False, "object_store_memory": 150 * 2**20})
    workers = [c.add_node(num_cpus=1, object_store_memory=150 * 2**20) for _ in range(2)]
    c.wait_for_nodes()
    yield c, workers
    ray.shutdown()  # the driver must let go of the head before the cluster removes it
    c.shutdown()


def _epochs_by_node(run_dir: Path) -> dict[str, set[str]]:
    """trial name -> node ids it has reported from so far."""
    out: dict[str, set[str]] = {}
    for result in run_dir.glob("t*/result.json"):
        for line in result.read_text().splitlines():
            if line.strip():
                out.setdefault(result.parent.name, set()).add(json.loads(line).get("node_id"))
    return out


def test_sweep_spreads_over_nodes_and_survives_losing_one(cluster, tmp_path, tiny_sweep, monkeypatch):
    monkeypatch.setenv("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Tune runs in a helper thread here
    c, (w1, w2) = cluster
    spec = load_sweep(tiny_sweep(
        "multinode", str(tmp_path), search={"model.kwargs.pa_count": {"grid": [1, 2, 3, 4]}},
        train={"epochs": 3, "batch_size": 8, "latency_batches": [1]}, failure={"max_retries": 2},
        wandb={"mode": "disabled"}))
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("value", run_sweep(spec)), daemon=True)
    thread.start()

    run_dir = tmp_path / "multinode" / "run-0"
    victim = w2.node_id
    loads_seen: dict[str, int] = {}
    deadline = time.monotonic() + 300
    removed = False
    while thread.is_alive() and time.monotonic() < deadline:
        for node, stats in cache_stats().items():
            loads_seen[node] = max(loads_seen.get(node, 0), stats["loads"])
        if not removed and any(victim in nodes for nodes in _epochs_by_node(run_dir).values()):
            c.remove_node(w2, allow_graceful=False)
            removed = True
        time.sleep(0.5)
    thread.join(timeout=120)
    assert removed, "no trial ever reported from the second worker"
    assert "value" in outcome, "the sweep did not finish"

    trials, epochs = read_results(outcome["value"].sweep_dir)
    assert trials.num_rows == 4
    assert set(trials.column("status").to_pylist()) == {"TERMINATED"}
    nodes = set(epochs.column("node_id").to_pylist())
    assert {w1.node_id, w2.node_id} <= nodes
    # The trial that lost its node went on from its checkpoint: every epoch exactly once.
    for name in set(epochs.column("trial_name").to_pylist()):
        assert sorted(r["epoch"] for r in epochs.to_pylist() if r["trial_name"] == name) == [1, 2, 3]
    moved = [n for n, ns in _epochs_by_node(run_dir).items() if {w1.node_id, w2.node_id} <= ns]
    assert moved, "no trial was restarted on the surviving node"
    assert sum(trials.column("failures").to_pylist()) >= 1
    # One load per node, however many trials it ran.
    assert loads_seen and set(loads_seen.values()) == {1}
    assert {w1.node_id, w2.node_id} <= set(loads_seen)
