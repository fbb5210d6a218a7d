"""The sweep engine's overhead, and what a second worker node buys, measured in one run.

    .venv/bin/python benchmarks/bench_sweep.py            # 16 short trainings
    .venv/bin/python benchmarks/bench_sweep.py --quick    # 4 trainings, a smoke run

1. The same N short trainings (a grid over PA count x seed on synthetic data) run by the
   sweep engine (`run_sweep`: embedded local Ray, Tune, checkpoints every epoch, per-node data
   sharing, W&B offline runs, the Parquet store) and by a plain Python loop calling the same
   training function (`run_trial`) with the data loaded once. Both use both cores: the loop as
   one process with two threads, the sweep as two one-thread trials at a time. The ratio is
   sweep wall time / loop wall time, start-up of Ray included.
2. The same sweep on a `ray.cluster_utils.Cluster` with one worker node (1 CPU) and with two
   (1 CPU each): wall time and speed-up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import ray
import torch
from rich.console import Console
from rich.table import Table

os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")


def sweep_dict(name: str, storage: str, trials: int, epochs: int, wandb: str = "offline") -> dict:
    seeds = max(1, trials // 4)
    return {
        "name": name,
        "data": {"format": "synthetic", "layout": "kinect_v1_20", "num_classes": 4, "num_per_class": 12,
                 "frames": 12, "persons": 1, "split": {"train": "train", "val": "val", "test": "test"}},
        "model": {"name": "hpigcn_rp"},
        "train": {"epochs": epochs, "batch_size": 8, "optimizer": "adamw", "lr": 0.002, "latency_batches": [1]},
        "search": {"model.kwargs.pa_count": {"grid": [1, 2, 3, 4][: min(4, trials)]},
                   "train.seed": {"grid": list(range(seeds))}},
        "resources": {"cpu": 1},
        "storage": storage,
        "wandb": {"mode": wandb},
    }


def plain_loop(spec) -> float:
    """Every configuration of the grid, one after another, in this process."""
    from ray.tune.search.variant_generator import generate_variants

    from skelray.sweep.tune_builders import build_param_space
    from skelray.train.data import load_splits
    from skelray.train.trial import run_trial

    torch.set_num_threads(2)
    start = time.perf_counter()
    configs = [cfg for _, cfg in generate_variants(build_param_space(spec))]
    data = load_splits(spec.trial_config(configs[0]).data)
    for config in configs:
        run_trial(spec.trial_config(config), data=data, report=lambda m, d: None, device="cpu")
    return time.perf_counter() - start


def engine(spec) -> float:
    from skelray.sweep.runner import run_sweep

    start = time.perf_counter()
    run_sweep(spec, console=Console(quiet=True))
    return time.perf_counter() - start


def on_cluster(spec, workers: int) -> float:
    from ray.cluster_utils import Cluster

    from skelray.sweep.runner import run_sweep

    cluster = Cluster(initialize_head=True, connect=True,
                      head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(workers):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        start = time.perf_counter()
        run_sweep(spec, console=Console(quiet=True))
        return time.perf_counter() - start
    finally:
        ray.shutdown()
        cluster.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="4 trials of 1 epoch")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.epochs = 4, 1
    from skelray.sweep.spec import load_sweep

    console = Console()
    root = tempfile.mkdtemp(prefix="skelray-bench-")
    try:
        mk = lambda name, **kw: load_sweep(sweep_dict(name, root, args.trials, args.epochs, **kw))
        loop_s = plain_loop(mk("loop"))
        engine_s = engine(mk("engine"))
        one_s = on_cluster(mk("one_node", wandb="disabled"), 1)
        two_s = on_cluster(mk("two_nodes", wandb="disabled"), 2)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    table = Table(title=f"{args.trials} trainings x {args.epochs} epochs, hpigcn_rp, synthetic kinect_v1_20")
    table.add_column("run")
    table.add_column("wall time (s)", justify="right")
    table.add_column("ratio", justify="right")
    table.add_row("plain Python loop (2 threads)", f"{loop_s:.1f}", "1.00")
    table.add_row("skelray sweep run (local Ray, 2 trials at a time)", f"{engine_s:.1f}",
                  f"{engine_s / loop_s:.2f} x loop")
    table.add_row("cluster, 1 worker node (1 CPU)", f"{one_s:.1f}", "1.00")
    table.add_row("cluster, 2 worker nodes (1 CPU each)", f"{two_s:.1f}", f"{one_s / two_s:.2f} x faster")
    console.print(table)


if __name__ == "__main__":
    main()
