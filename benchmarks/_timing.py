"""Timing shared by the benchmarks: models run in turn on the same input, median of repeats."""

from __future__ import annotations

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
