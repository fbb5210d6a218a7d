"""Timing shared by the benchmarks: models run in turn on the same input, median of repeats."""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def time_interleaved(models: dict[str, torch.nn.Module], x: torch.Tensor, repeats: int, warmup: int
                     ) -> dict[str, float]:
    """Median seconds per forward of each model."""
    names = list(models)
    times: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode():
        for _ in range(warmup):
            for n in names:
                models[n](x)
        for r in range(repeats):
            order = names[r % len(names):] + names[:r % len(names)]
            for n in order:
                start = time.perf_counter()
                models[n](x)
                times[n].append(time.perf_counter() - start)
    return {n: statistics.median(t) for n, t in times.items()}


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """The input shape and timing flags every model benchmark takes."""
    parser.add_argument("--persons", type=int, default=2, help="persons M per clip")
    parser.add_argument("--frames", type=int, default=64, help="frames T per clip")
    parser.add_argument("--layout", default="ntu25")
    parser.add_argument("--num-classes", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for every model (1 by default: on a shared machine, "
                             "spinning OpenMP threads make multi-thread timings erratic)")
    parser.add_argument("--warmup", type=int, default=1)
