"""Shared helpers for the sparsity tests: small inputs, dense models built once per session."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from skelray.models import create_model

LAYOUT = "kinect_v1_20"  # 20 joints: the smallest layout, so every forward is cheap
KWARGS = {"stgcn": {}, "hpigcn_rp": {"pa_count": 1}, "hpigcn_op": {"pa_count": 1}, "esgn": {}}


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread: on a shared, busy machine two spinning OpenMP threads run these small convs
    far slower than one does; results do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def dense_models() -> dict[str, nn.Module]:
    """One dense model per architecture (4 classes, 1 person); tests take deep copies."""
    torch.manual_seed(0)
    return {name: create_model(name, num_classes=4, layout=LAYOUT, num_persons=1, **kw)
            for name, kw in KWARGS.items()}


@pytest.fixture
def fresh(dense_models):
    """``fresh(name)``: a deep copy of the session's dense model, safe to mutate."""
    return lambda name: copy.deepcopy(dense_models[name])


def _clip_batch(n: int = 4, t: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, t, 20, 3, generator=g)


def _sgd_steps(model: nn.Module, x: torch.Tensor, steps: int = 2, lr: float = 0.05) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    target = torch.arange(len(x)) % 4
    model.train()
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.fixture(scope="session")
def clips():
    """``clips(n, t, seed)``: a random (n, 1, t, 20, 3) batch (helpers are fixtures: tests are
    not a package)."""
    return _clip_batch


@pytest.fixture(scope="session")
def sgd_steps():
    """``sgd_steps(model, x, steps, lr)``: a few training steps on one batch, so BN statistics
    and scores move off their starting values."""
    return _sgd_steps
