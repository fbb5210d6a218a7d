"""Timing shared by the benchmarks: models run in turn on the same input, median of repeats."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def time_interleaved(models: dict[str, Any], x: torch.Tensor, repeats: int, warmup: int,
                     step: Callable[[Any, torch.Tensor], object] | None = None) -> dict[str, float]:
    """Median seconds per ``step(model, x)`` of each model (by default one forward in inference
    mode), the models taking turns, each round starting from the next one."""
    names = list(models)
    times: dict[str, list[float]] = {n: [] for n in names}
    run = step if step is not None else _forward
    for _ in range(warmup):
        for n in names:
            run(models[n], x)
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            start = time.perf_counter()
            run(models[n], x)
            times[n].append(time.perf_counter() - start)
    return {n: statistics.median(t) for n, t in times.items()}


@torch.inference_mode()
def _forward(model: torch.nn.Module, x: torch.Tensor) -> None:
    model(x)


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
