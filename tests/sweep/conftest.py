"""Fixtures for sweep tests."""

from __future__ import annotations

from typing import Any

import pytest


def tiny_sweep(name: str, storage: str, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "data": {"format": "synthetic", "layout": "kinect_v1_20", "num_classes": 4, "num_per_class": 8,
                 "frames": 8, "persons": 1, "split": {"train": "train", "val": "val", "test": "test"}},
        "model": {"name": "hpigcn_rp", "kwargs": {"pa_count": 1}},
        "train": {"epochs": 2, "batch_size": 8, "lr": 0.05, "latency_batches": [1]},
        "search": {"model.kwargs.pa_count": {"grid": [1, 2]}},
        "resources": {"cpu": 1},
        "storage": storage,
        "wandb": {"mode": "offline"},
    }
    for key, value in overrides.items():
        spec[key] = value
    return spec


@pytest.fixture(name="tiny_sweep")
def tiny_sweep_fixture():
    """A sweep small enough to run many times in the test suite (a second or two per epoch)."""
    return tiny_sweep
