"""How much a latency number moves: one measurement per architecture, alone on the node, versus
each trial timing itself while other trials train beside it.

    .venv/bin/python benchmarks/bench_cost.py             # 3 sweeps of 4 identical networks
    .venv/bin/python benchmarks/bench_cost.py --runs 2 --epochs 1   # quicker

Each run is the same tiny sweep (a grid of 4 learning rates over one network, synthetic data,
2 CPUs, two one-CPU trials training at a time) with a cold machine cost cache, so its one
structure is measured afresh (``skelray.sweep.costs``: a task holding both CPUs, blocks of
calls until the last 3 block medians are within 5%). In the same run, every trial also times
its own inference form after every epoch the way trials did before (median of 5 forward passes
after one warm-up, while the other trial trains), and reports it as ``old_latency_ms_bN``.

Printed: per run, the measured latency (median, spread, repeats) and the range of the old
self-timings; then the spread of each across all runs, as max / min ratios and coefficients
of variation. Nothing is asserted: timings depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
os.environ.setdefault("WANDB_SILENT", "true")

OLD = "old_latency_ms_b"


def old_rule_ms(module, shape) -> float:
    """The timing trials used to do: one warm-up, then the median of 5 forward passes."""
    import torch

    x = torch.randn(*shape)
    with torch.inference_mode():
        module(x)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            module(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def self_timing_trainable(config, latencies=None):
    """``tune_trainable`` plus the old self-timing after every epoch, reported beside the metrics."""
    import torch
    from ray import tune

    from skelray.config import TrialConfig
    from skelray.models import inference_form
    from skelray.train.data import node_splits
    from skelray.train.trial import model_from_checkpoint, run_trial

    cfg = TrialConfig.from_tune(config)
    torch.set_num_threads(1)

    def report(metrics, directory):
        model, info = model_from_checkpoint(directory)
        pp = info.preprocess
        deployed = inference_form(model).eval()
        shape = (pp["persons"], pp["frames"], 20, info.model.in_channels)
        old = {f"{OLD}{b}": old_rule_ms(deployed, (b, *shape)) for b in cfg.train.latency_batches}
        tune.report({**metrics, **old}, checkpoint=tune.Checkpoint.from_directory(directory))

    run_trial(cfg, data=node_splits(cfg.data), report=report, device="cpu", latencies=latencies or {})


def sweep_dict(name: str, storage: str, epochs: int, batches: list[int]) -> dict:
    return {
        "name": name,
        "data": {"format": "synthetic", "layout": "kinect_v1_20", "num_classes": 4, "num_per_class": 12,
                 "frames": 32, "persons": 1, "split": {"train": "train", "val": "val", "test": "test"}},
        "model": {"name": "hpigcn_rp", "kwargs": {"pa_count": 2, "width": 0.5}},
        "train": {"epochs": epochs, "batch_size": 8, "latency_batches": batches, "precise_bn_batches": 0},
        "search": {"train.lr": {"grid": [0.01, 0.02, 0.05, 0.1]}},
        "resources": {"cpu": 1}, "storage": storage, "wandb": {"mode": "disabled"},
    }


def ratio(values: list[float]) -> str:
    return f"{max(values) / min(values):.2f}x" if values and min(values) > 0 else "-"


def cv(values: list[float]) -> str:
    return f"{100 * statistics.pstdev(values) / statistics.mean(values):.1f}%" if len(values) > 1 else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()

    import json

    import ray
    from rich.console import Console

    import skelray.train.trial as trial_module
    from skelray import record
    from skelray.runtime import start_ray
    from skelray.sweep import costs
    from skelray.sweep.results import Location, read_results
    from skelray.sweep.runner import run_sweep
    from skelray.sweep.spec import load_sweep

    quiet = Console(quiet=True)
    trial_module.tune_trainable = self_timing_trainable  # the runner looks it up when it builds the Tuner
    root = Path(tempfile.mkdtemp(prefix="bench-cost-"))
    start_ray(num_cpus=2, object_store_memory=300 * 2**20)
    new: dict[int, list[float]] = {b: [] for b in args.batches}
    old_all: dict[int, list[float]] = {b: [] for b in args.batches}
    print(f"{args.runs} runs of a 4-trial sweep of one network (hpigcn_rp width 0.5, 1 person x 32 frames x "
          f"20 joints), {args.epochs} epochs, 2 CPUs, cold machine cache each run")
    try:
        for r in range(args.runs):
            os.environ[costs.CACHE_ENV] = str(root / f"machine-{r}.json")  # cold: measured afresh
            started = time.perf_counter()
            outcome = run_sweep(load_sweep(sweep_dict(f"run{r}", str(root), args.epochs, args.batches)),
                                console=quiet)
            wall = time.perf_counter() - started
            trials, _ = read_results(outcome.sweep_dir)
            table = costs.load_costs(Location.parse(outcome.sweep_dir))
            assert len(table.entries) == 1, "the four trials should share one structure"
            (rec,) = table.entries.values()
            line = [f"run {r}: {trials.num_rows} trials, {len(table.entries)} structure, {wall:.0f} s;"]
            for b in args.batches:
                shown = set(trials.column(record.latency_key(b)).to_pylist())
                assert len(shown) == 1, shown
                t = rec.latency[b]
                new[b].append(t.median_ms)
                old = []
                for row in trials.to_pylist():
                    path = Path(outcome.sweep_dir) / row["run"] / row["trial_name"] / record.RESULT_FILE
                    old += [json.loads(x)[f"{OLD}{b}"] for x in path.read_text().splitlines() if x.strip()]
                old_all[b] += old
                line.append(f" b{b}: measured {t.median_ms:.2f} ms (spread {100 * t.spread:.1f}%, "
                            f"{t.repeats} calls, converged {t.converged}); old self-timing "
                            f"{min(old):.2f}-{max(old):.2f} ms over {len(old)} ({ratio(old)})")
            print("".join(line))
    finally:
        ray.shutdown()
    print("\nacross all runs:")
    for b in args.batches:
        print(f"  batch {b}: measured once per run: {', '.join(f'{v:.2f}' for v in new[b])} ms -> max/min "
              f"{ratio(new[b])}, CV {cv(new[b])};  old per-trial self-timing: {len(old_all[b])} values "
              f"{min(old_all[b]):.2f}-{max(old_all[b]):.2f} ms -> max/min {ratio(old_all[b])}, CV {cv(old_all[b])}")


if __name__ == "__main__":
    main()
