"""Helpers for the model-zoo tests: NW-UCLA clips as fixed-length batches.

The dataset location comes from the ``ucla_path`` fixture in ``tests/conftest.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch


def _to_batch(keypoints: list[np.ndarray], frames: int, center: int) -> torch.Tensor:
    """(M, T_i, V, C) clips -> (N, M, frames, V, C): frames picked uniformly, each clip moved so
    its centre joint starts at the origin (the usual pre-normalisation)."""
    out = []
    for kp in keypoints:
        idx = np.linspace(0, kp.shape[1] - 1, frames).round().astype(int)
        clip = kp[:, idx]
        out.append(clip - clip[:1, :1, center:center + 1])
    return torch.from_numpy(np.stack(out).astype(np.float32))


@pytest.fixture(scope="session")
def to_batch():
    """The helper that turns clips into a fixed-length batch (a fixture: tests are not a package)."""
    return _to_batch


@pytest.fixture(scope="session")
def ucla_clips(ucla_path: Path) -> list[np.ndarray]:
    """A dozen NW-UCLA clips spread over the actions, each (1, T, 20, 3)."""
    files = sorted(ucla_path.glob("a*_s*_e*_v*.json"))[::120][:12]
    try:
        from skelray.data import read_ucla
    except ImportError:  # the reader is another issue's; the file format is simple enough
        return [np.asarray(json.loads(f.read_text())["skeletons"], dtype=np.float32)[None] for f in files]
    return [read_ucla(f).sequences[0].keypoints for f in files]


@pytest.fixture(autouse=True)
def _one_thread():
    """Run the model tests on one thread. On a shared, busy machine two OpenMP threads that
    spin-wait for each other run these small convs 10-30x slower than one thread does; the
    results do not depend on the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
