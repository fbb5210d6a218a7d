"""Every registered model gets the same forward/backward/shape/NaN checks.

Cases cover batch 1 and 8, one and two persons, a single frame and 64 frames, on both
skeletons, without running the costly corner (batch 8 at 64 frames). The single-sample,
single-frame case runs in eval mode: a training-mode BN cannot estimate statistics from one
value per channel, which is PyTorch's rule, not the models'.
"""

from __future__ import annotations

import pytest
import torch

from skelray.data import get_layout
from skelray.models import create_model, list_models

CASES = [  # (N, M, T, layout, train)
    (1, 1, 1, "ntu25", False),
    (8, 2, 1, "kinect_v1_20", True),
    (1, 2, 64, "ntu25", True),
    (1, 1, 64, "kinect_v1_20", True),
]


@pytest.mark.parametrize("case", CASES,
                         ids=lambda c: f"n{c[0]}-m{c[1]}-t{c[2]}-{c[3]}-{'train' if c[4] else 'eval'}")
@pytest.mark.parametrize("name", list_models())
def test_forward_backward_shapes_and_finite(name: str, case: tuple) -> None:
    n, m, t, layout, train = case
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, layout=layout, num_persons=m, dropout=0.1)
    model.train(train)
    v = get_layout(layout).num_joints
    x = torch.randn(n, m, t, v, 3)
    logits = model(x)
    assert logits.shape == (n, 5)
    assert torch.isfinite(logits).all()
    feats = model.features(x)
    assert feats.shape == (n, model.feat_dim)
    logits.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"


@pytest.mark.parametrize("name", list_models())
def test_persons_are_averaged_so_order_does_not_matter(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, layout="kinect_v1_20").eval()
    x = torch.randn(2, 2, 8, 20, 3)
    with torch.no_grad():
        a, b = model(x), model(x.flip(1))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
