"""Every registered model learns: a few epochs on synthetic skeletons, well above chance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from skelray.data import get_layout
from skelray.models import create_model, list_models

CLASSES = 4
FRAMES = 12


@pytest.fixture(scope="module")
def synthetic_split(to_batch):
    synthetic = pytest.importorskip("skelray.data.synthetic").synthetic
    layout = get_layout("kinect_v1_20")
    ds = synthetic(CLASSES, 16, layout.name, FRAMES, seed=0)

    def tensors(seqs):
        x = to_batch([s.keypoints for s in seqs], FRAMES, layout.center)
        return x, torch.tensor([s.label for s in seqs])

    return tensors(ds.split("train")), tensors(ds.split("val") + ds.split("test"))


def _recalibrate_bn(model: nn.Module, x: torch.Tensor) -> None:
    """Re-estimate BN statistics over the training set. After only ~18 steps the running
    averages (momentum 0.1) still carry much of their initial values, which would make this a
    test of BN warm-up instead of learning; real training runs long enough not to need it."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a plain average over the batches below
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), 16):
            model(x[i:i + 16])


# The multi-level ensemble trains four full backbones: it runs with the slow tests, and
# tests/sparsity checks it learns on a smaller configuration in the default run.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "sparse_ensemble" else n
                                  for n in list_models()])
def test_model_learns_synthetic_actions_well_above_chance(name: str, synthetic_split) -> None:
    (x_train, y_train), (x_test, y_test) = synthetic_split
    torch.manual_seed(0)
    model = create_model(name, num_classes=CLASSES, layout="kinect_v1_20", num_persons=1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(3):
        model.train()
        for idx in torch.randperm(len(x_train)).split(8):
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    _recalibrate_bn(model, x_train)
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy >= 0.6, f"{name}: held-out accuracy {accuracy:.2f} (chance {1 / CLASSES:.2f})"
